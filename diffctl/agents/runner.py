"""The env side of training: the batched runner an agent trains on, and on-policy data.

``setup_runner`` turns an env name, ``Env``, ``VecEnv`` or gymnasium runner and a config into
the runner of a training run; ``collect_on_policy`` runs the stochastic policy on it
(``diffctl.data.rollout``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffctl.data import Trajectory, rollout
from diffctl.envs import Env, EnvSpec, VecEnv, as_device, make

from .agent import Agent

__all__ = ["make_runner", "setup_runner", "loop_mode", "check_action_space", "collect_on_policy"]


# --------------------------------------------------------------------------- env handling
def make_runner(
    env: Any, num_envs: int, seed: int, device: str | torch.device | None = None
) -> Any:
    """A batched runner with the ``VecEnv`` API for ``env``.

    ``env`` may be a registered name, an ``Env`` (wrapped in ``VecEnv(num_envs)``), a ``VecEnv``
    or any runner with the same API (``diffctl.envs.from_gymnasium``); runners are used as
    they are (their own ``num_envs`` and device).
    """
    if isinstance(env, str):
        env = make(env)
    if isinstance(env, Env):
        return VecEnv(env, num_envs, device=device, seed=seed, validate=False)
    for attr in ("reset", "step", "spec", "num_envs"):
        if not hasattr(env, attr):
            raise TypeError(
                "env: expected an env name, an Env, a VecEnv or a runner with the VecEnv API "
                f"(missing {attr!r}), got {type(env).__name__}"
            )
    if device is not None and as_device(device) != as_device(env.device):
        raise ValueError(f"device: the runner is on {env.device}, asked for {device}")
    return env


def loop_mode(runner: Any, env: Any, needs_autograd: bool = False) -> Any:
    """The context a training loop runs in: ``torch.inference_mode`` (no autograd dispatch per
    op) when the loop needs no autograd and ``setup_runner`` built ``runner`` from ``env`` (a
    runner passed in keeps normal tensors, which its caller may differentiate); otherwise a
    no-op context."""
    if needs_autograd or runner is env:
        return contextlib.nullcontext()
    return torch.inference_mode()


def setup_runner(
    env: Any,
    config: Any,
    config_type: type,
    default_config: Callable[[str], Any],
    seed: int,
    device: str | torch.device | None,
) -> tuple[Any, Any]:
    """``(runner, config)`` for a training run.

    ``config=None`` takes the tuned preset for the env's name. A name or an ``Env`` is run as
    ``VecEnv(config.num_envs)``; a given runner keeps its own number of envs, which then
    replaces ``config.num_envs`` (re-validated, so a batch it no longer divides is refused).
    """
    if config is not None and not isinstance(config, config_type):
        raise TypeError(f"config: expected a {config_type.__name__}, got {type(config).__name__}")
    if isinstance(env, str):
        env = make(env)
    if isinstance(env, Env):
        cfg = config if config is not None else default_config(env.spec.name)
        return make_runner(env, cfg.num_envs, seed, device), cfg
    runner = make_runner(env, 1, seed, device)
    cfg = config if config is not None else default_config(runner.spec.name)
    if cfg.num_envs != runner.num_envs:
        cfg = dataclasses.replace(cfg, num_envs=runner.num_envs)
    return runner, cfg


def check_action_space(spec: EnvSpec, algo: str, *, discrete: bool, continuous: bool) -> None:
    """Refuse an env whose action space the algorithm does not handle."""
    if spec.discrete and not discrete:
        raise ValueError(
            f"env: {algo} needs continuous actions, but {spec.name!r} has "
            f"{spec.num_actions} discrete actions"
        )
    if not spec.discrete and not continuous:
        raise ValueError(
            f"env: {algo} needs discrete actions, but {spec.name!r} has a continuous "
            f"{spec.act_dim}-dimensional action box"
        )


# --------------------------------------------------------------------------- on-policy data
def collect_on_policy(
    runner: Any, agent: Agent, num_steps: int, generator: torch.Generator
) -> Trajectory:
    """Run the stochastic policy for ``num_steps`` steps of every env of ``runner``, from where
    it stands (``diffctl.data.rollout`` with a policy that normalises, samples and clips).

    The observation normaliser is frozen during the rollout (the caller updates it), so the
    normalised observations kept are exactly what the policy saw. Everything stays on the
    runner's device (no host synchronisation).

    Returns a time-major ``Trajectory`` (``T = num_steps``, ``B = runner.num_envs``): ``obs``
    and ``next_obs`` raw (``next_obs`` before any auto-reset), ``actions`` as stepped (clipped
    to the box), and ``extras``: ``policy_obs [T, B, obs_dim]`` (normalised), ``sample``
    (the unclipped actions drawn) and ``log_prob [T, B]`` (of ``sample``).
    """

    def policy(obs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        o = agent.normalize_obs(obs)
        action, log_prob = agent.actor.sample(o, generator)
        return agent.clip_action(action), {"policy_obs": o, "sample": action, "log_prob": log_prob}

    return rollout(runner, policy, num_steps)
