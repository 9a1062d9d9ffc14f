"""The loop shared by the off-policy actor-critics (DDPG, TD3, SAC).

Per vector-env step: act (uniformly random actions for the first ``learning_starts`` env
steps, then the agent's exploratory policy), store ``(o, a, r, o', terminated)`` in a
device-resident ``ReplayBuffer`` (``o'`` is the observation reached before any auto-reset, so
targets bootstrap through time-limit truncations), then take ``updates_per_step`` gradient steps
with the algorithm's ``update``. One history record every ``log_interval`` env steps.

Each algorithm module supplies its config (with the fields read here: ``total_steps``,
``num_envs``, ``buffer_size``, ``batch_size``, ``learning_starts``, ``updates_per_step``,
``log_interval``), ``make_agent``, ``make_optimizers`` and ``update``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffctl.agents.common import (
    Agent,
    Callback,
    FlatAdam,
    IterationLogger,
    TrainResult,
    check_action_space,
    load_checkpoint,
    restore_runner,
    runner_state,
    setup_runner,
)
from diffctl.data import ReplayBuffer

__all__ = ["train_off_policy", "soft_update", "validate_off_policy_config", "adam"]

#: ``update(agent, batch, optimizers, config, generator, n_update) -> dict of scalar tensors``
Update = Callable[
    [Agent, dict[str, Tensor], dict[str, Any], Any, torch.Generator, int], dict[str, Tensor]
]


@torch.no_grad()
def soft_update(pairs: list[tuple[torch.nn.Module, torch.nn.Module]], tau: float) -> None:
    """Polyak averaging ``target <- tau * source + (1 - tau) * target`` (Lillicrap et al. 2016)
    of every ``(target, source)`` pair, as one multi-tensor kernel."""
    targets = [t for target, _ in pairs for t in target.parameters()]
    sources = [s for _, source in pairs for s in source.parameters()]
    torch._foreach_lerp_(targets, sources, tau)


def adam(params: Any, lr: float) -> FlatAdam:
    """Adam over ``params`` as one flat tensor (see ``FlatAdam``)."""
    return FlatAdam(params, lr=lr)


def validate_off_policy_config(cfg: Any) -> None:
    """Checks shared by the off-policy configs (each names the bad field)."""
    for name in (
        "total_steps",
        "num_envs",
        "buffer_size",
        "batch_size",
        "updates_per_step",
        "log_interval",
    ):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if (
        isinstance(cfg.learning_starts, bool)
        or not isinstance(cfg.learning_starts, int)
        or cfg.learning_starts < 0
    ):
        raise ValueError(f"learning_starts: expected an int >= 0, got {cfg.learning_starts!r}")
    for name in ("actor_lr", "critic_lr"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name}: expected > 0, got {getattr(cfg, name)!r}")
    if not 0.0 <= cfg.gamma <= 1.0:
        raise ValueError(f"gamma: expected a value in [0, 1], got {cfg.gamma!r}")
    if not 0.0 < cfg.tau <= 1.0:
        raise ValueError(f"tau: expected a value in (0, 1], got {cfg.tau!r}")
    if cfg.total_steps < cfg.num_envs:
        raise ValueError(f"total_steps: {cfg.total_steps} is less than num_envs {cfg.num_envs}")
    if not cfg.hidden or any(h < 1 for h in cfg.hidden):
        raise ValueError(f"hidden: expected positive layer sizes, got {cfg.hidden!r}")


def train_off_policy(
    algo: str,
    env: Any,
    config: Any,
    config_type: type,
    default_config: Callable[[str], Any],
    make_agent: Callable[..., Agent],
    make_optimizers: Callable[[Agent, Any], dict[str, Any]],
    update: Update,
    seed: int,
    *,
    device: str | torch.device | None,
    checkpoint: str | os.PathLike | None,
    checkpoint_every: int,
    resume: str | os.PathLike | None,
    callback: Callback | None,
) -> TrainResult:
    """Run the off-policy loop (see the module docstring)."""
    runner, cfg = setup_runner(env, config, config_type, default_config, seed, device)
    spec = runner.spec
    check_action_space(spec, algo, discrete=False, continuous=True)
    dev = runner.device
    agent = make_agent(spec, cfg, seed).to(dev)
    optimizers = make_optimizers(agent, cfg)
    buffer = ReplayBuffer(cfg.buffer_size, spec.obs_dim, spec.act_dim, device=dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    low, high = spec.action_bounds(dev)
    obs = runner.reset(seed=seed)
    n = runner.num_envs
    step, n_update, iteration, history, wall = 0, 0, 0, [], 0.0
    if resume is not None:
        saved, ts = load_checkpoint(resume, map_location=dev)
        if ts is None:
            raise ValueError(f"resume: {os.fspath(resume)!r} holds no training state")
        agent.load_state_dict(saved.state_dict())
        for k, opt in optimizers.items():
            opt.load_state_dict(ts["optimizers"][k])
        gen.set_state(ts["generator"])
        restore_runner(runner, ts["runner"])
        buffer.storage = {k: v.to(dev) for k, v in ts["buffer"].items()}
        buffer._ptr, buffer._size = ts["buffer_ptr"], ts["buffer_size"]
        obs = ts["obs"].to(dev)
        step, n_update, iteration = ts["step"], ts["n_update"], ts["iteration"]
        history, wall = ts["history"], ts["wall_time"]
    logger = IterationLogger(runner, checkpoint, checkpoint_every, callback, history, wall)

    def snapshot() -> tuple[Agent, dict[str, Any]]:
        return agent, {
            "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
            "generator": gen.get_state(),
            "runner": runner_state(runner),
            "buffer": buffer.storage,
            "buffer_ptr": buffer._ptr,
            "buffer_size": buffer._size,
            "obs": obs,
            "step": step,
            "n_update": n_update,
            "iteration": iteration,
        }

    acc: dict[str, Tensor] = {}  # sums of the update's scalars since the last record
    counts: dict[str, int] = {}
    total = (cfg.total_steps // n) * n
    while step < total:
        if step < cfg.learning_starts:  # uniform random exploration
            u = torch.rand(n, spec.act_dim, generator=gen, device=dev)
            action = low + (high - low) * u
        else:
            action = agent.act(obs, deterministic=False, generator=gen)
        next_obs, reward, term, _trunc, info = runner.step(action)
        buffer.add(obs, action, reward, info["final_obs"], term)
        obs = next_obs
        step += n
        if step >= cfg.learning_starts and step >= cfg.batch_size:
            for _ in range(cfg.updates_per_step):
                batch = buffer.sample(cfg.batch_size, gen)
                out = update(agent, batch, optimizers, cfg, gen, n_update)
                n_update += 1
                for k, v in out.items():
                    acc[k] = acc[k] + v if k in acc else v
                    counts[k] = counts.get(k, 0) + 1
        if step // cfg.log_interval > (step - n) // cfg.log_interval or step >= total:
            iteration += 1
            losses = {k: v / counts[k] for k, v in acc.items()}
            acc, counts = {}, {}
            if not logger.log(step, iteration, losses, snapshot, last=step >= total):
                break
    return TrainResult(agent, logger.history)
