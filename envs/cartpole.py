"""Cart-pole, step-for-step equal to gymnasium's ``CartPole-v1``, plus a continuous variant.

State ``x = [x, x_dot, theta, theta_dot]`` (theta = 0 is upright, same sign convention as
gymnasium), explicit Euler with ``tau = spec.dt = 0.02`` and the frictionless equations of
motion of Barto, Sutton & Anderson (1983), as in gymnasium.

- ``CartPole`` (``"cartpole"``): discrete actions {0: push left, 1: push right} with force
  ``force_mag``; reward 1 per step (the terminating step included); terminates when
  ``|x| > 2.4`` or ``|theta| > 12 deg``; 500 steps; start uniform in ``[-0.05, 0.05]^4``.
- ``CartPoleContinuous`` (``"cartpole-continuous"``): action ``u in [-1, 1]`` (clipped), force
  ``u * force_mag``. Balance task (default): the same reward, termination and start as
  ``CartPole``. ``swing_up=True``: start hanging (``theta = pi``, all components perturbed by
  ``U(-0.05, 0.05)``), no termination, observation ``[x, x_dot, cos theta, sin theta,
  theta_dot]`` and the smooth reward documented on ``CartPoleContinuous``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.nn.functional import softplus

from .base import Env, EnvSpec

__all__ = ["CartPole", "CartPoleContinuous"]

TAU = 0.02
X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360

# Swing-up reward weights (see ``CartPoleContinuous``).
SWING_X_WEIGHT = 0.1
SWING_THDOT_WEIGHT = 0.01
SWING_U_WEIGHT = 0.01
SWING_WALL_WEIGHT = 10.0
SWING_WALL_SHARPNESS = 20.0


class _CartPoleBase(Env):
    reward_uses_next_state = False

    default_params = {
        "gravity": 9.8,
        "masscart": 1.0,
        "masspole": 0.1,
        "length": 0.5,  # half the pole's length, as in gymnasium
        "force_mag": 10.0,
    }

    def _accelerations(self, x: Tensor, force: Tensor) -> tuple[Tensor, Tensor]:
        p = self.params
        g, mc, mp, length = p["gravity"], p["masscart"], p["masspole"], p["length"]
        total_mass = mc + mp
        polemass_length = mp * length
        theta, theta_dot = x[..., 2], x[..., 3]
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        temp = (force + polemass_length * theta_dot**2 * sintheta) / total_mass
        thetaacc = (g * sintheta - costheta * temp) / (
            length * (4.0 / 3.0 - mp * costheta**2 / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        return xacc, thetaacc

    def _euler(self, x: Tensor, force: Tensor) -> Tensor:
        xacc, thetaacc = self._accelerations(x, force)
        pos, x_dot, theta, theta_dot = x.unbind(-1)
        return torch.stack(
            [
                pos + TAU * x_dot,
                x_dot + TAU * xacc,
                theta + TAU * theta_dot,
                theta_dot + TAU * thetaacc,
            ],
            dim=-1,
        )

    reset_noise_dim = 4

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        # gymnasium: every component ~ U(-0.05, 0.05)
        return -0.05 + 0.1 * u

    def _balance_terminated(self, x: Tensor) -> Tensor:
        pos, theta = x[..., 0], x[..., 2]
        return (
            (pos < -X_THRESHOLD)
            | (pos > X_THRESHOLD)
            | (theta < -THETA_THRESHOLD)
            | (theta > THETA_THRESHOLD)
        )


class CartPole(_CartPoleBase):
    """Gymnasium ``CartPole-v1`` in batched torch (discrete actions, int64 ``[...]``).

    ``params``: ``gravity``, ``masscart``, ``masspole``, ``length`` (half pole length),
    ``force_mag``. The reward is the constant 1 (so its gradient is zero).
    """

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
            name="cartpole",
            state_dim=4,
            obs_dim=4,
            act_dim=0,
            action_low=(),
            action_high=(),
            dt=TAU,
            max_steps=500,
            discrete=True,
            num_actions=2,
        )

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        fm = self.params["force_mag"]
        force = torch.where(u == 1, fm, -fm).to(x.dtype)
        return self._euler(x, force)

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        return torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device)

    def _terminated(self, x: Tensor) -> Tensor:
        return self._balance_terminated(x)


class CartPoleContinuous(_CartPoleBase):
    """Cart-pole with a continuous force ``u * force_mag``, ``u in [-1, 1]`` (clipped).

    Args:
        swing_up: start hanging and swing the pole up (see below) instead of balancing.
        max_steps: episode length (default 500 in both modes: 10 s, enough to swing up).

    Swing-up reward, a stage reward of the current state ``x`` and the clipped action ``u``
    (smooth everywhere, no clipping kink near the goal, so a differentiable MPC can use it
    directly; ``L = 2.4``, ``k = 20``)::

        r = -[ (1 - cos theta) + 0.1 x^2 + 0.01 theta_dot^2 + 0.01 u^2
               + 10 (softplus(k (x - L)) + softplus(k (-x - L))) / k ]

    Its maximum 0 is the pole upright, still, over the centre with no force. The last term is a
    soft track limit: negligible inside ``|x| < L`` and a slope of 10 per metre outside, instead
    of a terminating (non-differentiable) wall.
    """

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        swing_up: bool = False,
        max_steps: int = 500,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        **overrides: Any,
    ) -> None:
        if not isinstance(swing_up, bool):
            raise TypeError(f"swing_up: expected a bool, got {type(swing_up).__name__}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps: expected a positive int, got {max_steps!r}")
        super().__init__({**(params or {}), **overrides}, device=device, dtype=dtype)
        self.swing_up = swing_up
        self.spec = EnvSpec(
            name="cartpole-continuous",
            state_dim=4,
            obs_dim=5 if swing_up else 4,
            act_dim=1,
            action_low=(-1.0,),
            action_high=(1.0,),
            dt=TAU,
            max_steps=max_steps,
            extra={"swing_up": swing_up},
        )

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        x = super()._initial_state_from_uniform(u)
        if self.swing_up:
            x = torch.cat((x[..., :2], x[..., 2:3] + math.pi, x[..., 3:]), -1)  # pole down
        return x

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        force = u[..., 0].clamp(-1.0, 1.0) * self.params["force_mag"]
        return self._euler(x, force)

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        if not self.swing_up:
            return torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device)
        pos, theta, theta_dot = x[..., 0], x[..., 2], x[..., 3]
        a = u[..., 0].clamp(-1.0, 1.0)
        k = SWING_WALL_SHARPNESS
        wall = (softplus(k * (pos - X_THRESHOLD)) + softplus(k * (-pos - X_THRESHOLD))) / k
        cost = (
            (1.0 - torch.cos(theta))
            + SWING_X_WEIGHT * pos**2
            + SWING_THDOT_WEIGHT * theta_dot**2
            + SWING_U_WEIGHT * a**2
            + SWING_WALL_WEIGHT * wall
        )
        return -cost

    def _observe(self, x: Tensor) -> Tensor:
        if not self.swing_up:
            return x
        pos, x_dot, theta, theta_dot = x.unbind(-1)
        return torch.stack([pos, x_dot, torch.cos(theta), torch.sin(theta), theta_dot], dim=-1)

    def _terminated(self, x: Tensor) -> Tensor:
        if self.swing_up:
            return torch.zeros(x.shape[:-1], dtype=torch.bool, device=x.device)
        return self._balance_terminated(x)
