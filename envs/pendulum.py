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
        # the parameters' coefficients, the clip bounds and angle_normalize's constants made
        # once (_constants): an op with a tensor operand costs less than one with a Python
        # number. A step from the state the previous call returned (unchanged, without a
        # gradient: VecEnv's eager loop) reuses that call's angle, speed and sine of the angle.
        k = self._constants()
        last = self.__dict__.get("_last_transition")
        if last is not None and x is last[0] and x._version == last[1] and not x.requires_grad:
            th, thdot, sin_th = last[2:]
        else:
            th, thdot = x.unbind(-1)
            sin_th = torch.sin(th)
        u = u[..., 0].clamp(k[4], k[5])
        newth, newthdot = self._next(th, thdot, u, k, sin_th)
        x1 = torch.stack([newth, newthdot], dim=-1)
        sin_newth = torch.sin(newth)
        obs = torch.stack([torch.cos(newth), sin_newth, newthdot], dim=-1)
        if not x1.is_inference():  # (inference tensors keep no version counter)
            self._last_transition = (x1, x1._version, newth, newthdot, sin_newth)
        return x1, self._reward_of(th, thdot, u, k), obs

    def _constants(self) -> tuple[Tensor, ...]:
        """``3 / (m l^2)``, ``g / l``, ``pi``, ``2 pi``, the torque's and the speed's bounds
        and ``-0.0`` as tensors (the values the ops of ``_next``, ``angle_normalize`` and the
        clips compute or wrap on every call), kept until a parameter is replaced or changed in
        place; made anew while a parameter needs a gradient."""
        params = self.params
        g, m, l = params["g"], params["m"], params["l"]
        if (g.requires_grad or m.requires_grad or l.requires_grad) and torch.is_grad_enabled():
            return self._make_constants()
        if g.is_inference() or m.is_inference() or l.is_inference():  # no version counters
            return self._make_constants()
        versions = (g._version, m._version, l._version)
        cached = self.__dict__.get("_cached_constants")
        if cached is not None and cached[0] is g and cached[1] is m and cached[2] is l:
            if cached[3] == versions:
                return cached[4]
        # normal tensors even when first made under inference mode (which may use them): the
        # env outlives that mode, and autograd cannot save an inference tensor for backward
        with torch.inference_mode(False):
            k = self._make_constants()
        self._cached_constants = (g, m, l, versions, k)
        return k

    def _make_constants(self) -> tuple[Tensor, ...]:
        g, m, l = self.params["g"], self.params["m"], self.params["l"]
        values = (*PI_2PI, -MAX_TORQUE, MAX_TORQUE, -MAX_SPEED, MAX_SPEED, -0.0)
        pi, two_pi, *bounds = (torch.full((), c, dtype=g.dtype, device=g.device) for c in values)
        return 3.0 / (m * l * l), g / l, pi, two_pi, *bounds

    @staticmethod
    def _torque(u: Tensor) -> Tensor:
        return u[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)

    def _next(
        self,
        th: Tensor,
        thdot: Tensor,
        u: Tensor,
        k: tuple[Tensor, ...] | None = None,
        sin_th: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if k is None:
            g, m, l = self.params["g"], self.params["m"], self.params["l"]
            k0, k1, speed = 3.0 / (m * l * l), g / l, (-MAX_SPEED, MAX_SPEED)
        else:
            k0, k1, speed = k[0], k[1], k[6:8]
        dt = self.spec.dt
        # gymnasium: thdot + (3 g / (2 l) sin(th) + 3 / (m l^2) u) dt, in fewer (scalar) ops
        sin_th = torch.sin(th) if sin_th is None else sin_th
        accel = torch.addcmul(u * k0, sin_th, k1, value=1.5)
        newthdot = torch.add(thdot, accel, alpha=dt).clamp(*speed)
        return torch.add(th, newthdot, alpha=dt), newthdot

    @staticmethod
    def _reward_of(
        th: Tensor, thdot: Tensor, u: Tensor, k: tuple[Tensor, ...] | None = None
    ) -> Tensor:
        # -(angle_normalize(th)^2 + 0.1 thdot^2 + 0.001 u^2)
        if k is None:
            cost = torch.addcmul(angle_normalize(th).square(), thdot, thdot, value=0.1)
            return torch.addcmul(cost, u, u, value=0.001).neg()
        # angle_normalize with its constants as tensors and the negation taken by the terms:
        # -angle = pi - remainder(th + pi, 2 pi) is exact, -0.0 + p = p and round to nearest
        # is symmetric, so every rounding (a fused multiply-add's too) is the negated one of
        # the sums above, in the same order: the same numbers
        neg_angle = torch.sub(k[2], torch.remainder(th + k[2], k[3]))
        neg_cost = torch.addcmul(k[8], neg_angle, neg_angle, value=-1.0)
        neg_cost = torch.addcmul(neg_cost, thdot, thdot, value=-0.1)
        return torch.addcmul(neg_cost, u, u, value=-0.001)
