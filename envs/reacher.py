"""Torque-driven planar two-link arm reaching a target (no gravity: the arm lies in the plane).

State ``x = [q1, q2, qd1, qd2]`` (shoulder angle from the x axis, elbow angle relative to link
1, and their rates); action ``u = [tau1, tau2]`` joint torques clipped to ``[-2, 2]`` N m.
Uniform rods of mass ``m_i`` and length ``l_i`` (centre of mass ``l_i / 2``, inertia
``m_i l_i^2 / 12``) follow the manipulator equations (Spong, Hutchinson & Vidyasagar, *Robot
Modeling and Control*, 2006, Sec. 7.4)::

    M(q) qdd + C(q, qd) qd = tau - damping * qd

integrated with semi-implicit Euler over ``dt = 0.05`` s (``qd' = qd + dt qdd``, then
``q' = q + dt qd'``). The stage reward of the current state and clipped action is smooth::

    r = -( |tip(q) - target|^2 + 0.01 |tau|^2 )

Observation ``[cos q1, cos q2, sin q1, sin q2, qd1, qd2, tip - target]`` (8 values).
Start: ``q ~ U(-0.1, 0.1)^2``, ``qd ~ U(-0.005, 0.005)^2`` (as MuJoCo's ``Reacher``); no
termination; 100 steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .base import Env, EnvSpec

__all__ = ["Reacher"]

DT = 0.05
MAX_TORQUE = 2.0
CONTROL_WEIGHT = 0.01


class Reacher(Env):
    """Planar two-link arm; ``params``: ``m1``, ``m2``, ``l1``, ``l2``, ``damping`` and
    ``target`` (``[x, y]`` in m)."""

    reward_uses_next_state = False

    default_params = {
        "m1": 1.0,
        "m2": 1.0,
        "l1": 1.0,
        "l2": 1.0,
        "damping": 0.1,
        "target": [1.0, 1.0],
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
        self.spec = EnvSpec(
            name="reacher",
            state_dim=4,
            obs_dim=8,
            act_dim=2,
            action_low=(-MAX_TORQUE, -MAX_TORQUE),
            action_high=(MAX_TORQUE, MAX_TORQUE),
            dt=DT,
            max_steps=100,
        )

    def _initial_state(self, n: int, generator: torch.Generator | None) -> Tensor:
        high = torch.tensor([0.1, 0.1, 0.005, 0.005], device=self.device, dtype=self.dtype)
        return self._uniform(n, -high, high, 4, generator)

    def tip(self, q: Tensor) -> Tensor:
        """End-effector position ``[..., 2]`` of joint angles ``q [..., 2]``."""
        l1, l2 = self.params["l1"], self.params["l2"]
        q1, q12 = q[..., 0], q[..., 0] + q[..., 1]
        return torch.stack(
            [l1 * torch.cos(q1) + l2 * torch.cos(q12), l1 * torch.sin(q1) + l2 * torch.sin(q12)],
            dim=-1,
        )

    def _accelerations(self, x: Tensor, tau: Tensor) -> Tensor:
        p = self.params
        m1, m2, l1, l2, b = p["m1"], p["m2"], p["l1"], p["l2"], p["damping"]
        lc1, lc2 = l1 / 2, l2 / 2
        i1, i2 = m1 * l1**2 / 12, m2 * l2**2 / 12
        q2, qd1, qd2 = x[..., 1], x[..., 2], x[..., 3]
        c2, s2 = torch.cos(q2), torch.sin(q2)
        # inertia matrix M(q) and Coriolis/centrifugal terms C(q, qd) qd (Spong et al., Sec. 7.4)
        m11 = i1 + i2 + m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * c2)
        m12 = i2 + m2 * (lc2**2 + l1 * lc2 * c2)
        m22 = i2 + m2 * lc2**2
        h = m2 * l1 * lc2 * s2
        rhs1 = tau[..., 0] - b * qd1 + h * (2 * qd1 * qd2 + qd2**2)
        rhs2 = tau[..., 1] - b * qd2 - h * qd1**2
        det = m11 * m22 - m12**2
        return torch.stack([(m22 * rhs1 - m12 * rhs2) / det, (m11 * rhs2 - m12 * rhs1) / det], -1)

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        tau = u.clamp(-MAX_TORQUE, MAX_TORQUE)
        qd = x[..., 2:] + DT * self._accelerations(x, tau)
        q = x[..., :2] + DT * qd
        return torch.cat([q, qd], dim=-1)

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        tau = u.clamp(-MAX_TORQUE, MAX_TORQUE)
        d = self.tip(x[..., :2]) - self.params["target"]
        return -((d**2).sum(-1) + CONTROL_WEIGHT * (tau**2).sum(-1))

    def _observe(self, x: Tensor) -> Tensor:
        q = x[..., :2]
        d = self.tip(q) - self.params["target"]
        return torch.cat([torch.cos(q), torch.sin(q), x[..., 2:], d], dim=-1)
