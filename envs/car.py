"""Kinematic bicycle model driving to a goal pose.

State ``x = [px, py, yaw, v]`` (rear-axle position in m, heading in rad, speed in m/s); action
``u = [accel, steer]`` clipped to ``[-2, 2]`` m/s^2 and ``[-0.5, 0.5]`` rad. Forward Euler with
``dt = 0.1`` s of the rear-axle kinematic bicycle (Rajamani, *Vehicle Dynamics and Control*,
2012, Sec. 2.2, with the slip angle at the rear axle)::

    px' = px + dt v cos(yaw)      yaw' = yaw + dt v tan(steer) / wheelbase
    py' = py + dt v sin(yaw)      v'   = v + dt accel

The stage reward of the current state and clipped action is smooth (no kink at the goal)::

    r = -[ |p - g_xy|^2 + 2 (1 - cos(yaw - g_yaw)) + 0.1 v^2 + 0.01 accel^2 + 0.1 steer^2 ]

Observation, in the goal's frame: ``[e_x, e_y, cos(yaw - g_yaw), sin(yaw - g_yaw), v]`` with
``e = Rot(-g_yaw) (p - g_xy)``. Start: ``px, py ~ U(-1, 1)``, ``yaw ~ U(-pi/4, pi/4)``,
``v = 0``; no termination; 150 steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .base import Env, EnvSpec

__all__ = ["Car"]

DT = 0.1
MAX_ACCEL = 2.0
MAX_STEER = 0.5
YAW_WEIGHT = 2.0
SPEED_WEIGHT = 0.1
ACCEL_WEIGHT = 0.01
STEER_WEIGHT = 0.1


class Car(Env):
    """Kinematic bicycle to a goal pose; ``params``: ``wheelbase`` (m) and ``goal``
    (``[gx, gy, gyaw]``)."""

    default_params = {"wheelbase": 2.5, "goal": [5.0, 5.0, math.pi / 2]}
    reward_uses_next_state = False

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
            name="car",
            state_dim=4,
            obs_dim=5,
            act_dim=2,
            action_low=(-MAX_ACCEL, -MAX_STEER),
            action_high=(MAX_ACCEL, MAX_STEER),
            dt=DT,
            max_steps=150,
        )

    def _clip(self, u: Tensor) -> tuple[Tensor, Tensor]:
        return u[..., 0].clamp(-MAX_ACCEL, MAX_ACCEL), u[..., 1].clamp(-MAX_STEER, MAX_STEER)

    def _initial_state(self, n: int, generator: torch.Generator | None) -> Tensor:
        high = torch.tensor([1.0, 1.0, math.pi / 4, 0.0], device=self.device, dtype=self.dtype)
        return self._uniform(n, -high, high, 4, generator)

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        px, py, yaw, v = x.unbind(-1)
        accel, steer = self._clip(u)
        return torch.stack(
            [
                px + DT * v * torch.cos(yaw),
                py + DT * v * torch.sin(yaw),
                yaw + DT * v * torch.tan(steer) / self.params["wheelbase"],
                v + DT * accel,
            ],
            dim=-1,
        )

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        px, py, yaw, v = x.unbind(-1)
        accel, steer = self._clip(u)
        g = self.params["goal"]
        cost = (
            (px - g[0]) ** 2
            + (py - g[1]) ** 2
            + YAW_WEIGHT * (1.0 - torch.cos(yaw - g[2]))
            + SPEED_WEIGHT * v**2
            + ACCEL_WEIGHT * accel**2
            + STEER_WEIGHT * steer**2
        )
        return -cost

    def _observe(self, x: Tensor) -> Tensor:
        px, py, yaw, v = x.unbind(-1)
        g = self.params["goal"]
        dx, dy = px - g[0], py - g[1]
        c, s = torch.cos(g[2]), torch.sin(g[2])
        dyaw = yaw - g[2]
        return torch.stack(
            [c * dx + s * dy, -s * dx + c * dy, torch.cos(dyaw), torch.sin(dyaw), v], dim=-1
        )
