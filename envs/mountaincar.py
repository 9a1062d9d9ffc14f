"""Continuous mountain car, step-for-step equal to gymnasium's ``MountainCarContinuous-v0``.

State ``x = [position, velocity]``; action ``u = [force]`` clipped to ``[-1, 1]`` in the
dynamics. Velocity is clipped to ``+-0.07`` and position to ``[-1.2, 0.6]`` (hitting the left
wall stops the car). The episode terminates when ``position >= 0.45`` and ``velocity >= 0``;
the reward is ``100`` on that step minus ``0.1 u^2`` of the *unclipped* action, as gymnasium;
999 steps; start ``position ~ U(-0.6, -0.4)``, ``velocity = 0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .base import Env, EnvSpec

__all__ = ["MountainCarContinuous"]

MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
GOAL_POSITION = 0.45
GOAL_VELOCITY = 0.0


class MountainCarContinuous(Env):
    """Gymnasium ``MountainCarContinuous-v0`` in batched torch.

    ``params``: ``power`` (force gain, 0.0015) and ``gravity`` (hill coefficient, 0.0025, in
    ``v += power u - gravity cos(3 p)``).
    """

    default_params = {"power": 0.0015, "gravity": 0.0025}

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        **overrides: Any,
    ) -> None:
        super().__init__({**(params or {}), **overrides}, device=device, dtype=dtype)
        self.spec = EnvSpec(
            name="mountaincar-continuous",
            state_dim=2,
            obs_dim=2,
            act_dim=1,
            action_low=(-1.0,),
            action_high=(1.0,),
            dt=1.0,
            max_steps=999,
        )

    def _initial_state(self, n: int, generator: torch.Generator | None) -> Tensor:
        pos = self._uniform(n, -0.6, -0.4, 1, generator)
        return torch.cat([pos, torch.zeros_like(pos)], dim=-1)

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        position, velocity = x[..., 0], x[..., 1]
        force = u[..., 0].clamp(-1.0, 1.0)
        velocity = velocity + (
            force * self.params["power"] - self.params["gravity"] * torch.cos(3 * position)
        )
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED)
        position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION)
        velocity = torch.where(
            (position == MIN_POSITION) & (velocity < 0), torch.zeros_like(velocity), velocity
        )
        return torch.stack([position, velocity], dim=-1)

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        return 100.0 * self._terminated(x_next).to(x.dtype) - 0.1 * u[..., 0] ** 2

    def _terminated(self, x: Tensor) -> Tensor:
        return (x[..., 0] >= GOAL_POSITION) & (x[..., 1] >= GOAL_VELOCITY)
