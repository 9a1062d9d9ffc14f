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
PI_2PI = (math.pi, 2 * math.pi)  # angle_normalize's constants


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
            name="pendulum",
            state_dim=2,
            obs_dim=3,
            act_dim=1,
            action_low=(-MAX_TORQUE,),
            action_high=(MAX_TORQUE,),
            dt=0.05,
            max_steps=200,
        )

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        # gymnasium: theta ~ U(-pi, pi), theta_dot ~ U(-1, 1)
        # (no torch.tensor here: a host-to-device copy per step would synchronise a GPU loop)
        x = 2 * u - 1
        return torch.stack((x[..., 0] * math.pi, x[..., 1]), -1)

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        th, thdot = x.unbind(-1)
        return torch.stack(self._next(th, thdot, self._torque(u)), dim=-1)

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        th, thdot = x.unbind(-1)
        return self._reward_of(th, thdot, self._torque(u))

    def _observe(self, x: Tensor) -> Tensor:
        th, thdot = x.unbind(-1)
        return torch.stack([torch.cos(th), torch.sin(th), thdot], dim=-1)

    def _transition(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # the three above sharing the split state, the clipped torque and the next angle, with
        # the parameters' coefficients and angle_normalize's constants made once (_constants)
        th, thdot = x.unbind(-1)
        u = self._torque(u)
        k = self._constants()
        newth, newthdot = self._next(th, thdot, u, k)
        x1 = torch.stack([newth, newthdot], dim=-1)
        obs = torch.stack([torch.cos(newth), torch.sin(newth), newthdot], dim=-1)
        return x1, self._reward_of(th, thdot, u, k), obs

    def _constants(self) -> tuple[Tensor, ...]:
        """``3 / (m l^2)``, ``g / l``, ``pi`` and ``2 pi`` as tensors (the values the ops of
        ``_next`` and ``angle_normalize`` compute or wrap on every call), kept until a parameter
        is replaced or changed in place; made anew while a parameter needs a gradient."""
        ps = self.params["g"], self.params["m"], self.params["l"]
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in ps)
        if grad or any(p.is_inference() for p in ps):  # (inference: no version counters)
            return self._make_constants()
        versions = tuple(p._version for p in ps)
        cached = getattr(self, "_cached_constants", None)
        if cached is not None and all(a is b for a, b in zip(cached[0], ps)):
            if cached[1] == versions:
                return cached[2]
        k = self._make_constants()
        self._cached_constants = (ps, versions, k)
        return k

    def _make_constants(self) -> tuple[Tensor, ...]:
        g, m, l = self.params["g"], self.params["m"], self.params["l"]
        pi, two_pi = (torch.full((), c, dtype=g.dtype, device=g.device) for c in PI_2PI)
        return 3.0 / (m * l * l), g / l, pi, two_pi

    @staticmethod
    def _torque(u: Tensor) -> Tensor:
        return u[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)

    def _next(
        self, th: Tensor, thdot: Tensor, u: Tensor, k: tuple[Tensor, ...] | None = None
    ) -> tuple[Tensor, Tensor]:
        if k is None:
            g, m, l = self.params["g"], self.params["m"], self.params["l"]
            k = (3.0 / (m * l * l), g / l)
        dt = self.spec.dt
        # gymnasium: thdot + (3 g / (2 l) sin(th) + 3 / (m l^2) u) dt, in fewer (scalar) ops
        accel = torch.addcmul(u * k[0], torch.sin(th), k[1], value=1.5)
        newthdot = torch.add(thdot, accel, alpha=dt).clamp(-MAX_SPEED, MAX_SPEED)
        return torch.add(th, newthdot, alpha=dt), newthdot

    @staticmethod
    def _reward_of(
        th: Tensor, thdot: Tensor, u: Tensor, k: tuple[Tensor, ...] | None = None
    ) -> Tensor:
        # -(angle_normalize(th)^2 + 0.1 thdot^2 + 0.001 u^2)
        if k is None:
            angle = angle_normalize(th)
        else:  # angle_normalize with its constants as tensors
            angle = torch.remainder(th + k[2], k[3]) - k[2]
        cost = torch.addcmul(angle.square(), thdot, thdot, value=0.1)
        return torch.addcmul(cost, u, u, value=0.001).neg()
