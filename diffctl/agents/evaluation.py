"""``evaluate``: the returns of an agent's policy over whole episodes."""

from __future__ import annotations

import math
from typing import Any

import torch

from diffctl.envs import Env

from .agent import Agent
from .runner import make_runner

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    agent: Agent,
    env: Any,
    episodes: int = 10,
    *,
    seed: int = 0,
    deterministic: bool = True,
) -> dict[str, Any]:
    """Mean, std and list of the undiscounted returns of ``episodes`` episodes.

    ``env`` is a name or an ``Env`` (run as ``VecEnv(env, episodes)``, one episode per copy),
    or a ``VecEnv`` / runner (reset with ``seed``, ``ceil(episodes / N)`` episodes per copy).
    """
    if not isinstance(agent, Agent):
        raise TypeError(f"agent: expected a diffctl Agent, got {type(agent).__name__}")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes: expected a positive int, got {episodes!r}")
    runner = make_runner(
        env, episodes, seed, device=None if not isinstance(env, (str, Env)) else agent.device
    )
    if runner.spec.discrete != agent.spec.discrete or (
        runner.spec.obs_dim != agent.spec.obs_dim or runner.spec.act_dim != agent.spec.act_dim
    ):
        raise ValueError(
            f"env: {runner.spec.name!r} does not match the agent's env {agent.spec.name!r} "
            "(observation/action spaces differ)"
        )
    n = runner.num_envs
    per_env = math.ceil(episodes / n)
    max_steps = int(getattr(runner, "max_steps", runner.spec.max_steps))
    gen = torch.Generator(device=runner.device)
    gen.manual_seed(seed)
    obs = runner.reset(seed=seed)
    dtype = agent.action_dtype
    returns = torch.full((per_env, n), float("nan"), dtype=torch.float64, device=runner.device)
    count = torch.zeros(n, dtype=torch.int64, device=runner.device)
    running = torch.zeros(n, dtype=torch.float64, device=runner.device)
    cols = torch.arange(n, device=runner.device)
    for _ in range(per_env * max_steps):
        action = agent.act(obs.to(agent.device, dtype), deterministic, gen).to(runner.device)
        obs, reward, term, trunc, _ = runner.step(action)
        running = running + reward.to(torch.float64)
        done = term | trunc
        write = done & (count < per_env)
        rows = count.clamp(max=per_env - 1)
        returns[rows, cols] = torch.where(write, running, returns[rows, cols])
        count = count + write.to(torch.int64)
        running = torch.where(done, torch.zeros_like(running), running)
    flat = returns.T.reshape(-1)
    flat = flat[~torch.isnan(flat)][:episodes].tolist()
    runner.episode_statistics(clear=True)
    mean = sum(flat) / len(flat)
    std = (sum((r - mean) ** 2 for r in flat) / len(flat)) ** 0.5
    return {"mean_return": mean, "std_return": std, "returns": flat}
