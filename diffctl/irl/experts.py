"""Expert policies for ``diffctl collect --policy mpc|ppo-checkpoint`` (demonstrations for IRL).

Both are factories with the signature of ``diffctl.cli.collect``'s registry:
``factory(env, *, seed, device, args) -> policy``; ``args`` are the ``--policy-args KEY=VALUE``
strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["mpc_expert", "ppo_checkpoint_expert"]


def _int_arg(args: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(args.get(key, default))
    except ValueError as e:
        raise ValueError(f"policy_args: {key} must be an int, got {args[key]!r}") from e


def _check_keys(name: str, args: Mapping[str, str], known: set[str]) -> None:
    unknown = set(args) - known
    if unknown:
        raise ValueError(
            f"policy_args: policy {name!r} does not take {sorted(unknown)}; known: {sorted(known)}"
        )


def mpc_expert(env: Any, *, seed: int, device: torch.device, args: Mapping[str, str]) -> Any:
    """Differentiable iLQR MPC on the env's own reward (``RewardCost``), receding horizon.

    ``args``: ``horizon`` (default 10), ``iters`` (iLQR iterations, default 10),
    ``warm_start`` (0/1, default 0: every step is planned from zeros, which makes the expert
    reproducible by an imitating MPC).
    """
    from diffctl.control import MPC, MPCConfig, MPCPolicy, RewardCost

    _check_keys("mpc", args, {"horizon", "iters", "warm_start"})
    if env.spec.discrete:
        raise ValueError("policy: 'mpc' needs an env with continuous actions")
    cfg = MPCConfig(horizon=_int_arg(args, "horizon", 10), max_iter=_int_arg(args, "iters", 10))
    return MPCPolicy(
        MPC(env, RewardCost(env), cfg), warm_start=bool(_int_arg(args, "warm_start", 0))
    )


def ppo_checkpoint_expert(
    env: Any, *, seed: int, device: torch.device, args: Mapping[str, str]
) -> Any:
    """A trained agent loaded from ``path=<checkpoint>`` (any ``diffctl.agents`` checkpoint);
    ``deterministic`` (0/1, default 1) takes the policy's mode instead of sampling."""
    from diffctl.agents.checkpoint import load

    _check_keys("ppo-checkpoint", args, {"path", "deterministic"})
    if "path" not in args:
        raise ValueError("policy_args: 'ppo-checkpoint' needs path=<checkpoint file>")
    agent = load(args["path"], map_location=device)
    if (agent.spec.obs_dim, agent.spec.act_dim, agent.spec.discrete) != (
        env.spec.obs_dim,
        env.spec.act_dim,
        env.spec.discrete,
    ):
        raise ValueError(
            f"policy_args: checkpoint {args['path']!r} was trained on "
            f"{agent.spec.name!r}, whose spaces differ from {env.spec.name!r}"
        )
    deterministic = bool(_int_arg(args, "deterministic", 1))
    g = torch.Generator(device=device)
    g.manual_seed(seed)

    def act(obs: Tensor) -> Tensor:
        return (
            agent.act(obs.to(agent.action_dtype), deterministic, g).to(env.dtype)
            if not env.spec.discrete
            else agent.act(obs.to(agent.action_dtype), deterministic, g)
        )

    return act
