"""Pendulum swing-up, step-for-step equal to gymnasium's ``Pendulum-v1``.

State ``x = [theta, theta_dot]`` (theta = 0 is upright), action ``u = [torque]`` clipped to
``[-2, 2]``, observation ``[cos theta, sin theta, theta_dot]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .base import Env, EnvSpec, angle_normalize

MAX_SPEED = 8.0
MAX_TORQUE = 2.0


class Pendulum(Env):
    """Gymnasium ``Pendulum-v1`` in batched torch; ``params``: ``g``, ``m``, ``l``."""

    default_params = {"g": 10.0, "m": 1.0, "l": 1.0}
    reward_uses_next_state = False
    reset_noise_dim = 2

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
            name="pendulum", state_dim=2, obs_dim=3, act_dim=1, dt=0.05, max_steps=200,
            action_low=(-MAX_TORQUE,), action_high=(MAX_TORQUE,),
        )  # fmt: skip

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        # theta ~ U(-pi, pi), theta_dot ~ U(-1, 1): [n, 2] from u [n, 2]
        x = 2 * u - 1
        return torch.stack([x[..., 0] * math.pi, x[..., 1]], dim=-1)

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        g, m, l = self.params["g"], self.params["m"], self.params["l"]
        th, thdot = x[..., 0], x[..., 1]
        u = u[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)
        newthdot = thdot + (3 * g / (2 * l) * torch.sin(th) + 3.0 / (m * l**2) * u) * self.spec.dt
        newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED)
        newth = th + newthdot * self.spec.dt
        return torch.stack([newth, newthdot], dim=-1)

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        th, thdot = x[..., 0], x[..., 1]
        u = u[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)
        return -(angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2)

    def _observe(self, x: Tensor) -> Tensor:
        th, thdot = x[..., 0], x[..., 1]
        return torch.stack([torch.cos(th), torch.sin(th), thdot], dim=-1)
