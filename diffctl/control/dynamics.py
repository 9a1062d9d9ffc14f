"""Dynamics adapters for the planners: linear (time-varying) dynamics and batched Jacobians.

Any callable ``f(x [N, nx], u [N, nu]) -> [N, nx]`` with independent rows plugs in (an ``Env``,
an ``nn.Module``, a function). Jacobians come from the object's analytic
``jacobians(x, u) -> (A [N,nx,nx], B [N,nx,nu])`` when it has one, otherwise from batched
reverse-mode autograd (one vmapped vector-Jacobian product per output, ``batched_grad``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .autodiff import batched_grad
from .lqr import check_finite

__all__ = ["LinearDynamics", "DynamicsAdapter"]


class LinearDynamics:
    """``x_{t+1} = F_t [x_t; u_t] + f_t`` (paper notation).

    Args:
        F: ``[nx, nx + nu]`` shared or ``[T|1, B|1, nx, nx + nu]`` time-varying.
        f: ``[nx]`` or ``[T|1, B|1, nx]``; zero if ``None``.
    Tensors may require grad.
    """

    def __init__(self, F: Tensor, f: Tensor | None = None) -> None:
        if not isinstance(F, Tensor) or not F.is_floating_point():
            raise TypeError(f"F: expected a floating torch.Tensor, got {type(F).__name__}")
        if F.dim() not in (2, 4):
            raise ValueError(f"F: expected [nx, nx+nu] or [T, B, nx, nx+nu], got {list(F.shape)}")
        nx, n = F.shape[-2:]
        if n <= nx:
            raise ValueError(f"F: last dim must be nx + nu > nx = {nx}, got {n}")
        f = F.new_zeros(nx) if f is None else f
        if not isinstance(f, Tensor) or f.dim() not in (1, 3) or f.shape[-1] != nx:
            raise ValueError(f"f: expected [{nx}] or [T, B, {nx}], got {getattr(f, 'shape', f)}")
        check_finite(F, "F")
        check_finite(f, "f")
        self.F = F if F.dim() == 4 else F[None, None]
        self.f = f if f.dim() == 3 else f[None, None]
        self.nx, self.nu = nx, n - nx

    @property
    def time_varying(self) -> bool:
        return self.F.shape[0] > 1 or self.f.shape[0] > 1

    def step(self, t: int, x: Tensor, u: Tensor) -> Tensor:
        """One step at time ``t``; ``x [*S, B, nx]`` broadcasts against ``F_t [B|1, ...]``."""
        Ft = self.F[t if self.F.shape[0] > 1 else 0]
        ft = self.f[t if self.f.shape[0] > 1 else 0]
        tau = torch.cat([x, u], -1)
        return (Ft @ tau.unsqueeze(-1)).squeeze(-1) + ft

    def __call__(self, x: Tensor, u: Tensor) -> Tensor:
        if self.time_varying:
            raise ValueError("F: time-varying dynamics need a time index; use step(t, x, u)")
        return self.step(0, x, u)

    def validate(self, nx: int, T: int, B: int) -> None:
        if self.nx != nx:
            raise ValueError(f"F: expected nx = {nx} rows (from x0), got {self.nx}")
        for t, name in ((self.F, "F"), (self.f, "f")):
            if t.shape[0] not in (1, T) or t.shape[1] not in (1, B):
                raise ValueError(f"{name}: expected [T={T}|1, B={B}|1, ...], got {list(t.shape)}")


class DynamicsAdapter:
    """Uniform view of a dynamics object for the solvers (sequences are time-major)."""

    def __init__(self, dynamics: Any) -> None:
        if not callable(dynamics) and not isinstance(dynamics, LinearDynamics):
            raise TypeError(
                f"dynamics: expected a callable f(x, u) or LinearDynamics, got "
                f"{type(dynamics).__name__}"
            )
        self.obj = dynamics
        self.linear = isinstance(dynamics, LinearDynamics)
        # Envs: call the unchecked implementation in the hot loop (inputs validated by MPC).
        fn: Callable[[Tensor, Tensor], Tensor] = getattr(dynamics, "_dynamics", dynamics)
        self._fn = fn
        self._jac = getattr(dynamics, "jacobians", None)

    def _flat(self, x: Tensor, u: Tensor) -> Tensor:
        S = x.shape[:-1]
        out = self._fn(x.reshape(-1, x.shape[-1]), u.reshape(-1, u.shape[-1]))
        return out.reshape(*S, out.shape[-1])

    def step(self, t: int, x: Tensor, u: Tensor) -> Tensor:
        """``x_{t+1}`` for ``x [*S, nx]``, ``u [*S, nu]``."""
        if self.linear:
            return self.obj.step(t, x, u)
        return self._flat(x, u)

    def seq(self, xs: Tensor, us: Tensor) -> Tensor:
        """``f(x_t, u_t)`` for every ``t``: ``[T, B, nx]`` (one batched call)."""
        if self.linear:
            tau = torch.cat([xs, us], -1)
            return (self.obj.F @ tau.unsqueeze(-1)).squeeze(-1) + self.obj.f
        return self._flat(xs, us)

    def linearize(
        self, xs: Tensor, us: Tensor, create_graph: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Values ``[T, B, nx]`` and Jacobians ``F = [A B]`` ``[T, B, nx, nx + nu]``."""
        T, B, nx = xs.shape
        if self.linear:
            n = self.obj.F.shape[-1]
            return self.seq(xs, us), self.obj.F.expand(T, B, nx, n)
        if self._jac is not None:
            fx = self.seq(xs, us)
            A, Bm = self._jac(xs.reshape(T * B, nx), us.reshape(T * B, -1))
            F = torch.cat([A, Bm], -1).reshape(T, B, nx, -1)
            return fx, F
        with torch.enable_grad():
            xg = xs if (create_graph and xs.requires_grad) else xs.detach().requires_grad_(True)
            ug = us if (create_graph and us.requires_grad) else us.detach().requires_grad_(True)
            fx = self._flat(xg, ug)
            nxo = fx.shape[-1]
            eye = torch.eye(nxo, dtype=fx.dtype, device=fx.device)[:, None, None, :]
            eye = eye.expand(nxo, T, B, nxo)
            gx, gu = batched_grad(fx, (xg, ug), eye, create_graph)
        gx = torch.zeros(nxo, *xs.shape, dtype=xs.dtype, device=xs.device) if gx is None else gx
        gu = torch.zeros(nxo, *us.shape, dtype=us.dtype, device=us.device) if gu is None else gu
        F = torch.cat([gx, gu], -1).movedim(0, -2)  # [T, B, nx, n]
        return (fx if create_graph else fx.detach()), F

    def lagrangian_hessian(self, xs: Tensor, us: Tensor, lam: Tensor) -> Tensor:
        """``d^2/dtau^2 (lam_t . f(x_t, u_t))`` ``[T, B, n, n]`` (exact second-order term)."""
        T, B, nx = xs.shape
        n = nx + us.shape[-1]
        if self.linear:
            return xs.new_zeros(T, B, n, n)
        with torch.enable_grad():
            tau = torch.cat([xs, us], -1).detach().requires_grad_(True)
            lam = lam.detach()
            val = (self._flat(tau[..., :nx], tau[..., nx:]) * lam).sum()
            (g,) = torch.autograd.grad(val, tau, create_graph=True)
            if not g.requires_grad:
                return xs.new_zeros(T, B, n, n)
            eye = torch.eye(n, dtype=xs.dtype, device=xs.device)[:, None, None, :]
            (H,) = batched_grad(g, (tau,), eye.expand(n, T, B, n))
        if H is None:
            return xs.new_zeros(T, B, n, n)
        H = H.movedim(0, -2)
        return 0.5 * (H + H.transpose(-1, -2))
