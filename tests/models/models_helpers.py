"""Data helpers of the dynamics-model tests (imported by name: tests have no packages)."""

from __future__ import annotations

import torch
from diffctl.envs import Env

from diffctl.data import Trajectory, rollout


def random_policy(env: Env, generator: torch.Generator):
    """Uniform random actions within the env's bounds."""
    lo, hi = env.spec.action_bounds(env.device, env.dtype)

    def policy(obs: torch.Tensor) -> torch.Tensor:
        r = torch.rand(obs.shape[0], env.spec.act_dim, generator=generator, dtype=env.dtype)
        return lo + (hi - lo) * r

    return policy


def random_logs(env: Env, num_traj: int, steps: int, seed: int = 0) -> Trajectory:
    """``num_traj`` trajectories of ``steps`` random-action transitions (states recorded)."""
    g = torch.Generator().manual_seed(seed)
    return rollout(env, random_policy(env, g), steps, num_envs=num_traj, generator=g)


def noisy_state_logs(
    env: Env, num_traj: int, steps: int, noise: float, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random-action logs whose recorded states carry Gaussian measurement noise of standard
    deviation ``noise`` times each component's spread (one noisy sequence per trajectory, so
    ``next_states[t] == states[t + 1]``)."""
    g = torch.Generator().manual_seed(seed)
    tr = rollout(env, random_policy(env, g), steps, num_envs=num_traj, generator=g)
    s = torch.cat([tr.states, tr.next_states[-1:]])
    s = s + noise * s.std((0, 1)) * torch.randn(s.shape, generator=g)
    return {"states": s[:-1], "next_states": s[1:], "actions": tr.actions}
