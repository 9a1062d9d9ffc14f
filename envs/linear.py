"""Discrete-time linear system with quadratic reward: the system where LQR is exact.

``x' = A x + B u`` and ``r(x, u) = -(x^T Q x + u^T R u)`` (a stage reward of the current state
and action; no terminal term). The default is the double integrator sampled with zero-order hold
at ``dt = 0.1``: ``A = [[1, dt], [0, 1]]``, ``B = [[dt^2 / 2], [dt]]``, ``Q = I``, ``R = 0.1 I``.
Any ``A [nx, nx]``, ``B [nx, nu]``, ``Q [nx, nx]``, ``R [nu, nu]`` may be given; the dimensions
are read from ``A`` and ``B``. Actions are bounded by ``[-10, 10]`` per component unless
``action_low`` / ``action_high`` say otherwise (finite bounds, so the gymnasium ``Box`` of
``to_gymnasium`` passes SB3's ``check_env``; pass ``-math.inf`` / ``math.inf`` for an unbounded
system); the dynamics and reward use the clipped action.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .base import Env, EnvSpec

__all__ = ["Linear", "DEFAULT_ACTION_BOUND"]

#: Default action bound of every component: wide enough that LQR from the default start
#: states never reaches it, finite so that gymnasium's ``Box`` (and SB3's ``check_env``) accept
#: the action space and random policies sample uniformly in it.
DEFAULT_ACTION_BOUND = 10.0


def _matrix(name: str, value: Any, shape: tuple[int | None, int | None]) -> Tensor:
    """``value`` as a 2-D float64 CPU tensor with the given shape (``None``: any size)."""
    try:
        t = torch.as_tensor(value).detach()
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name}: expected a matrix (tensor or nested list), got {value!r}") from e
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name}: expected real numbers, got dtype {t.dtype}")
    want = tuple("n" if s is None else s for s in shape)
    if t.dim() != 2 or any(s is not None and t.shape[i] != s for i, s in enumerate(shape)):
        raise ValueError(f"{name}: expected a matrix of shape {want}, got {tuple(t.shape)}")
    return t.to(device="cpu", dtype=torch.float64)


def _bounds(name: str, value: float | Sequence[float] | None, nu: int, default: float) -> tuple:
    if value is None:
        return (default,) * nu
    t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if t.numel() == 1:
        t = t.expand(nu)
    if t.numel() != nu:
        raise ValueError(f"{name}: expected a float or {nu} values, got {t.numel()}")
    if torch.isnan(t).any():
        raise ValueError(f"{name}: contains NaN")
    return tuple(float(v) for v in t)


class Linear(Env):
    """``x' = A x + B u``, ``r = -(x^T Q x + u^T R u)``; ``params``: ``A``, ``B``, ``Q``, ``R``.

    Args:
        params / overrides: ``A``, ``B``, ``Q``, ``R`` (see module docstring). ``Q`` must be
            symmetric positive semi-definite and ``R`` symmetric positive definite; when only
            ``A`` (or ``B``) changes the dimensions, ``Q`` / ``R`` default to ``I`` / ``0.1 I``.
        dt: sampling time of the default double integrator (also ``spec.dt``).
        action_low, action_high: action bounds (float or ``nu`` values; default
            ``-DEFAULT_ACTION_BOUND`` / ``DEFAULT_ACTION_BOUND``; infinities for none).
        max_steps: episode length (default 200).
        init_scale: start states are ``U(-init_scale, init_scale)^nx``.
    """

    reward_uses_next_state = False

    default_params: dict[str, Any] = {}

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        dt: float = 0.1,
        action_low: float | Sequence[float] | None = None,
        action_high: float | Sequence[float] | None = None,
        max_steps: int = 200,
        init_scale: float = 1.0,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        **overrides: Any,
    ) -> None:
        given = {**(params or {}), **overrides}
        unknown = sorted(set(given) - {"A", "B", "Q", "R"})
        if unknown:
            raise ValueError(
                f"{unknown[0]}: unknown parameter of Linear; known: ['A', 'B', 'Q', 'R']"
            )
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt: expected a positive float, got {dt!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps: expected a positive int, got {max_steps!r}")
        if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale)):
            raise ValueError(f"init_scale: expected a finite float, got {init_scale!r}")
        if init_scale < 0:
            raise ValueError(f"init_scale: expected a non-negative float, got {init_scale!r}")
        if "A" in given:
            A = _matrix("A", given["A"], (None, None))
            if A.shape[0] != A.shape[1]:
                raise ValueError(f"A: expected a square matrix, got shape {tuple(A.shape)}")
        else:
            A = torch.tensor([[1.0, dt], [0.0, 1.0]], dtype=torch.float64)
        nx = A.shape[0]
        if "B" in given:
            B = _matrix("B", given["B"], (nx, None))
        elif nx == 2:
            B = torch.tensor([[0.5 * dt**2], [dt]], dtype=torch.float64)
        else:
            raise ValueError(f"B: required when A is not 2 x 2 (got A of shape {(nx, nx)})")
        nu = B.shape[1]
        if nu < 1:
            raise ValueError(f"B: expected at least one column, got shape {tuple(B.shape)}")
        Q = _matrix("Q", given["Q"], (nx, nx)) if "Q" in given else torch.eye(nx).double()
        R = _matrix("R", given["R"], (nu, nu)) if "R" in given else 0.1 * torch.eye(nu).double()
        for name, M in (("A", A), ("B", B), ("Q", Q), ("R", R)):
            if not torch.isfinite(M).all():
                raise ValueError(f"{name}: contains NaN or inf")
        for name, M, strict in (("Q", Q, False), ("R", R, True)):
            if not torch.allclose(M, M.T):
                raise ValueError(f"{name}: expected a symmetric matrix")
            lo = torch.linalg.eigvalsh(M).min()
            if lo < -1e-10 * max(1.0, float(M.abs().max())) or (strict and lo <= 0):
                kind = "positive definite" if strict else "positive semi-definite"
                raise ValueError(f"{name}: expected a {kind} matrix (min eigenvalue {lo:.3g})")
        super().__init__(None, device=device, dtype=dtype)
        self.params = {
            k: v.to(device=self.device, dtype=dtype)
            for k, v in {"A": A, "B": B, "Q": Q, "R": R}.items()
        }
        # keep the caller's tensors (and autograd graphs) where they already match
        self._set_params({k: v for k, v in given.items() if isinstance(v, Tensor)})
        low = _bounds("action_low", action_low, nu, -DEFAULT_ACTION_BOUND)
        high = _bounds("action_high", action_high, nu, DEFAULT_ACTION_BOUND)
        self._bounded = any(math.isfinite(v) for v in (*low, *high))
        self._u_low = torch.tensor(low, device=self.device, dtype=dtype)
        self._u_high = torch.tensor(high, device=self.device, dtype=dtype)
        self.init_scale = float(init_scale)
        self.spec = EnvSpec(
            name="linear",
            state_dim=nx,
            obs_dim=nx,
            act_dim=nu,
            action_low=low,
            action_high=high,
            dt=float(dt),
            max_steps=max_steps,
        )

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Linear:
        new = super().to(device, dtype)
        new._u_low = self._u_low.to(device=new.device, dtype=new.dtype)
        new._u_high = self._u_high.to(device=new.device, dtype=new.dtype)
        return new

    def _clip(self, u: Tensor) -> Tensor:
        if not self._bounded:
            return u
        return torch.maximum(torch.minimum(u, self._u_high), self._u_low)

    def _initial_state(self, n: int, generator: torch.Generator | None) -> Tensor:
        s = self.init_scale
        return self._uniform(n, -s, s, self.spec.state_dim, generator)

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        u = self._clip(u)
        return x @ self.params["A"].mT + u @ self.params["B"].mT

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        u = self._clip(u)
        Q, R = self.params["Q"], self.params["R"]
        return -(((x @ Q) * x).sum(-1) + ((u @ R) * u).sum(-1))
