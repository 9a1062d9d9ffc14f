"""Acrobot swing-up, step-for-step equal to gymnasium's ``Acrobot-v1``.

State ``x = [theta1, theta2, dtheta1, dtheta2]`` (theta1 = 0 hanging down, theta2 relative to
link 1), discrete torque on the second joint {0: -1, 1: 0, 2: +1} N m. One step integrates the
"book" dynamics (Sutton & Barto, 1998, Sec. 11.3; Spong, 1995) over ``dt = 0.2`` s with one
classical RK4 step (gymnasium's ``rk4`` over ``[0, dt]``), wraps both angles to ``[-pi, pi]``
and clips the velocities to ``4 pi`` / ``9 pi``. Reward -1 per step and 0 on the step that
reaches the goal (tip height ``-cos theta1 - cos(theta1 + theta2) > 1``), which terminates;
500 steps. Observation ``[cos theta1, sin theta1, cos theta2, sin theta2, dtheta1, dtheta2]``.

``AcrobotContinuous`` (``"acrobot-continuous"``) is the same task with a continuous torque
``u in [-1, 1]`` (clipped) instead of the three discrete ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .base import Env, EnvSpec

__all__ = ["Acrobot", "AcrobotContinuous"]

DT = 0.2
MAX_VEL_1 = 4 * math.pi
MAX_VEL_2 = 9 * math.pi


def _wrap(x: Tensor) -> Tensor:
    """Gymnasium's ``wrap(x, -pi, pi)``: values inside ``[-pi, pi]`` are left bit-exact."""
    two_pi = math.pi - (-math.pi)
    y = torch.where(x > math.pi, x - two_pi, torch.where(x < -math.pi, x + two_pi, x))
    outside = (y > math.pi) | (y < -math.pi)  # more than one turn: reduce in one go
    return torch.where(outside, torch.remainder(y + math.pi, two_pi) - math.pi, y)


class Acrobot(Env):
    """Gymnasium ``Acrobot-v1`` in batched torch (discrete actions, int64 ``[...]``).

    ``params``: ``m1``, ``m2`` (link masses), ``l1`` (length of link 1), ``lc1``, ``lc2``
    (positions of the centres of mass), ``I1``, ``I2`` (moments of inertia), ``g``.
    """

    _continuous = False

    default_params = {
        "m1": 1.0,
        "m2": 1.0,
        "l1": 1.0,
        "lc1": 0.5,
        "lc2": 0.5,
        "I1": 1.0,
        "I2": 1.0,
        "g": 9.8,
    }

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        **overrides: Any,
    ) -> None:
        super().__init__({**(params or {}), **overrides}, device=device, dtype=dtype)
        cont = self._continuous
        self.spec = EnvSpec(
            name="acrobot-continuous" if cont else "acrobot",
            state_dim=4,
            obs_dim=6,
            act_dim=1 if cont else 0,
            action_low=(-1.0,) if cont else (),
            action_high=(1.0,) if cont else (),
            dt=DT,
            max_steps=500,
            discrete=not cont,
            num_actions=0 if cont else 3,
        )

    def _initial_state(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self._uniform(n, -0.1, 0.1, 4, generator)

    def _dsdt(self, s: Tensor, a: Tensor) -> Tensor:
        """Time derivative of ``s = [theta1, theta2, dtheta1, dtheta2]`` under torque ``a``
        (the "book" equations, in gymnasium's operation order)."""
        p = self.params
        m1, m2, l1, lc1, lc2 = p["m1"], p["m2"], p["l1"], p["lc1"], p["lc2"]
        I1, I2, g = p["I1"], p["I2"], p["g"]
        theta1, theta2, dtheta1, dtheta2 = s.unbind(-1)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * torch.cos(theta2)) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * torch.cos(theta2)) + I2
        phi2 = m2 * lc2 * g * torch.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * dtheta2**2 * torch.sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * torch.sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * torch.cos(theta1 - math.pi / 2)
            + phi2
        )
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * torch.sin(theta2) - phi2) / (
            m2 * lc2**2 + I2 - d2**2 / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return torch.stack([dtheta1, dtheta2, ddtheta1, ddtheta2], dim=-1)

    def _integrate(self, x: Tensor, torque: Tensor) -> Tensor:
        """One RK4 step over ``[0, dt]`` then angle wrapping and velocity clipping."""
        dt, dt2 = DT, DT / 2.0
        k1 = self._dsdt(x, torque)
        k2 = self._dsdt(x + dt2 * k1, torque)
        k3 = self._dsdt(x + dt2 * k2, torque)
        k4 = self._dsdt(x + dt * k3, torque)
        ns = x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        return torch.stack(
            [
                _wrap(ns[..., 0]),
                _wrap(ns[..., 1]),
                ns[..., 2].clamp(-MAX_VEL_1, MAX_VEL_1),
                ns[..., 3].clamp(-MAX_VEL_2, MAX_VEL_2),
            ],
            dim=-1,
        )

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        return self._integrate(x, (u - 1).to(x.dtype))

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        return self._terminated(x_next).to(x.dtype) - 1.0

    def _observe(self, x: Tensor) -> Tensor:
        t1, t2, d1, d2 = x.unbind(-1)
        return torch.stack(
            [torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2), d1, d2], dim=-1
        )

    def _terminated(self, x: Tensor) -> Tensor:
        t1, t2 = x[..., 0], x[..., 1]
        return -torch.cos(t1) - torch.cos(t2 + t1) > 1.0


class AcrobotContinuous(Acrobot):
    """``Acrobot`` with a continuous torque ``u [..., 1]`` clipped to ``[-1, 1]`` N m (same
    dynamics, reward, termination and start as ``Acrobot-v1``)."""

    _continuous = True

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        return self._integrate(x, u[..., 0].clamp(-1.0, 1.0))
