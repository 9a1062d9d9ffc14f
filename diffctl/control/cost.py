"""Costs for the MPC planners: quadratic (``QuadCost``), any differentiable callable
(``FunctionCost``), least squares (``LeastSquaresCost``, Gauss-Newton capable), an env's reward
(``RewardCost``) and a soft state-box penalty (``StatePenalty``).

Every cost works on time-major sequences: ``stage_seq(xs [T, *S, nx], us [T, *S, nu]) -> [T, *S]``
(``S`` ends with the batch dimension ``B``), ``terminal(x [*S, nx]) -> [*S]``, and
``quadratize(xs [T,B,nx], us [T,B,nu], xT [B,nx], hessian, create_graph)`` returning the
second-order expansion at the point: Hessians ``C [T,B,n,n]``, gradients ``g [T,B,n]``,
``C_T [B,nx,nx]``, ``g_T [B,nx]`` (``n = nx + nu``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .autodiff import batched_grad
from .lqr import check_finite

__all__ = [
    "Cost",
    "QuadCost",
    "FunctionCost",
    "LeastSquaresCost",
    "RewardCost",
    "StatePenalty",
    "as_cost",
]


def _flat_call(fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
    """Call ``fn`` on 2-D ``[N, d]`` views of ``[*S, d]`` inputs; returns ``[*S, ...]``."""
    S = args[0].shape[:-1]
    out = fn(*(a.reshape(-1, a.shape[-1]) for a in args))
    return out.reshape(*S, *out.shape[1:])


def _autograd_quadratize(
    fn: Callable[[Tensor], Tensor], z: Tensor, create_graph: bool
) -> tuple[Tensor, Tensor]:
    """Gradient ``[*S, n]`` and exact Hessian ``[*S, n, n]`` of a row-wise scalar function."""
    n = z.shape[-1]
    with torch.enable_grad():
        zz = z if (create_graph and z.requires_grad) else z.detach().requires_grad_(True)
        val = fn(zz).sum()
        if not val.requires_grad:  # constant (e.g. no terminal cost)
            return torch.zeros_like(z), torch.zeros(*z.shape, n, dtype=z.dtype, device=z.device)
        (g,) = torch.autograd.grad(val, zz, create_graph=True, allow_unused=True)
        if g is None:
            return torch.zeros_like(z), torch.zeros(*z.shape, n, dtype=z.dtype, device=z.device)
        if not g.requires_grad:  # the cost is linear in z
            return g, torch.zeros(*z.shape, n, dtype=z.dtype, device=z.device)
        eye = torch.eye(n, dtype=z.dtype, device=z.device)
        eye = eye.reshape(n, *([1] * (z.dim() - 1)), n).expand(n, *z.shape)
        (H,) = batched_grad(g, (zz,), eye, create_graph)
    if H is None:
        H = torch.zeros(n, *z.shape, dtype=z.dtype, device=z.device)
    H = H.movedim(0, -1)
    H = 0.5 * (H + H.transpose(-1, -2))
    return (g if create_graph else g.detach()), H


class Cost:
    """Base class: subclasses implement ``stage_seq`` and ``terminal``; ``quadratize`` defaults
    to autograd (exact Hessian)."""

    #: whether the cost can produce a Gauss-Newton Hessian.
    supports_gauss_newton: bool = False

    def stage_seq(self, xs: Tensor, us: Tensor) -> Tensor:
        raise NotImplementedError

    def terminal(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)

    def total(self, xs: Tensor, us: Tensor) -> Tensor:
        """Total cost ``[*S]`` of states ``[T+1, *S, nx]`` and actions ``[T, *S, nu]``."""
        return self.stage_seq(xs[:-1], us).sum(0) + self.terminal(xs[-1])

    def quadratize(
        self, xs: Tensor, us: Tensor, xT: Tensor, hessian: str = "exact", create_graph: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        nx = xs.shape[-1]
        tau = torch.cat([xs, us], -1)
        g, C = _autograd_quadratize(
            lambda z: self.stage_seq(z[..., :nx], z[..., nx:]), tau, create_graph
        )
        gT, CT = _autograd_quadratize(self.terminal, xT, create_graph)
        return C, g, CT, gT

    def validate(self, nx: int, nu: int, T: int, B: int) -> None:
        """Check shapes against the problem; raise ``ValueError`` naming the bad tensor."""


class QuadCost(Cost):
    """``sum_t 1/2 tau_t' C_t tau_t + c_t' tau_t + 1/2 x_T' C_T x_T + c_T' x_T`` (paper notation).

    Args:
        C: ``[n, n]`` shared or ``[T|1, B|1, n, n]`` (``n = nx + nu``), positive semidefinite.
        c: ``[n]`` or ``[T|1, B|1, n]``.
        C_final: terminal Hessian ``[nx, nx]`` or ``[B|1, nx, nx]`` (PSD), optional.
        c_final: terminal gradient ``[nx]`` or ``[B|1, nx]``, optional.
    Tensors may require grad (MPC differentiates w.r.t. them).
    """

    supports_gauss_newton = True

    def __init__(
        self,
        C: Tensor,
        c: Tensor | None = None,
        C_final: Tensor | None = None,
        c_final: Tensor | None = None,
    ) -> None:
        if not isinstance(C, Tensor) or not C.is_floating_point():
            raise TypeError(f"C: expected a floating torch.Tensor, got {type(C).__name__}")
        if C.dim() not in (2, 4) or C.shape[-1] != C.shape[-2]:
            raise ValueError(f"C: expected [n, n] or [T, B, n, n], got {list(C.shape)}")
        n = C.shape[-1]
        c = torch.zeros(n, dtype=C.dtype, device=C.device) if c is None else c
        if not isinstance(c, Tensor) or not c.is_floating_point():
            raise TypeError(f"c: expected a floating torch.Tensor, got {type(c).__name__}")
        if c.dim() not in (1, 3) or c.shape[-1] != n:
            raise ValueError(f"c: expected [{n}] or [T, B, {n}], got {list(c.shape)}")
        check_finite(C, "C")
        check_finite(c, "c")
        self._check_psd(C, "C")
        self.C = C if C.dim() == 4 else C[None, None]
        self.c = c if c.dim() == 3 else c[None, None]
        self.n = n
        self.C_final = self.c_final = None
        if C_final is not None:
            if not isinstance(C_final, Tensor) or C_final.dim() not in (2, 3):
                raise ValueError("C_final: expected a tensor [nx, nx] or [B, nx, nx]")
            if C_final.shape[-1] != C_final.shape[-2]:
                raise ValueError(f"C_final: expected square matrices, got {list(C_final.shape)}")
            check_finite(C_final, "C_final")
            self._check_psd(C_final, "C_final")
            self.C_final = C_final if C_final.dim() == 3 else C_final[None]
        if c_final is not None:
            if not isinstance(c_final, Tensor) or c_final.dim() not in (1, 2):
                raise ValueError("c_final: expected a tensor [nx] or [B, nx]")
            check_finite(c_final, "c_final")
            self.c_final = c_final if c_final.dim() == 2 else c_final[None]

    @staticmethod
    def _check_psd(M: Tensor, name: str) -> None:
        Ms = 0.5 * (M + M.transpose(-1, -2)).detach()
        ev = torch.linalg.eigvalsh(Ms.double())
        scale = ev.abs().amax().clamp_min(1.0)
        if (ev.amin() < -1e-8 * scale).item():
            raise ValueError(
                f"{name}: quadratic cost must be positive semidefinite; smallest eigenvalue "
                f"{ev.amin().item():.3g}"
            )

    @classmethod
    def tracking(
        cls,
        Q: Tensor,
        R: Tensor,
        goal: Tensor | None = None,
        *,
        Q_final: Tensor | None = None,
        u_ref: Tensor | None = None,
    ) -> QuadCost:
        """Goal tracking ``1/2 (x-goal)'Q(x-goal) + 1/2 (u-u_ref)'R(u-u_ref)`` (+ terminal
        ``1/2 (x_T-goal)'Q_final(x_T-goal)``), up to constants. ``Q [nx,nx]``, ``R [nu,nu]``,
        ``goal [nx]`` or ``[B, nx]``, ``u_ref [nu]`` or ``[B, nu]``."""
        for t, name in ((Q, "Q"), (R, "R")):
            if not isinstance(t, Tensor) or t.dim() != 2 or t.shape[0] != t.shape[1]:
                raise ValueError(f"{name}: expected a square matrix tensor")
        nx, nu = Q.shape[0], R.shape[0]
        zx = Q.new_zeros(nx, nu)
        C = torch.cat([torch.cat([Q, zx], 1), torch.cat([zx.T, R], 1)], 0)
        goal = Q.new_zeros(nx) if goal is None else goal
        u_ref = Q.new_zeros(nu) if u_ref is None else u_ref
        if goal.shape[-1] != nx:
            raise ValueError(f"goal: expected [..., {nx}], got {list(goal.shape)}")
        if u_ref.shape[-1] != nu:
            raise ValueError(f"u_ref: expected [..., {nu}], got {list(u_ref.shape)}")
        goal_b, u_b = torch.broadcast_tensors(goal[..., :1], u_ref[..., :1])
        goal = goal.expand(*goal_b.shape[:-1], nx)
        u_ref = u_ref.expand(*u_b.shape[:-1], nu)
        c = -torch.cat([goal @ Q.T, u_ref @ R.T], -1)
        if c.dim() == 2:
            c = c[None]
        c_final = None
        if Q_final is not None:
            c_final = -(goal @ Q_final.T)
        return cls(C, c, Q_final, c_final)

    def _C_for(self, S: int) -> tuple[Tensor, Tensor]:
        """``C, c`` shaped ``[T|1, 1.., B|1, n, n]`` for ``S`` sample dims (last is ``B``)."""
        C, c = self.C, self.c
        for _ in range(S - 1):
            C, c = C.unsqueeze(1), c.unsqueeze(1)
        return C, c

    def stage_seq(self, xs: Tensor, us: Tensor) -> Tensor:
        tau = torch.cat([xs, us], -1)
        C, c = self._C_for(tau.dim() - 2)
        quad = (tau.unsqueeze(-2) @ C @ tau.unsqueeze(-1)).squeeze(-1).squeeze(-1)
        return 0.5 * quad + (tau * c).sum(-1)

    def terminal(self, x: Tensor) -> Tensor:
        out = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        if self.C_final is not None:
            out = out + 0.5 * (x.unsqueeze(-2) @ self.C_final @ x.unsqueeze(-1))[..., 0, 0]
        if self.c_final is not None:
            out = out + (x * self.c_final).sum(-1)
        return out

    def quadratize(
        self, xs: Tensor, us: Tensor, xT: Tensor, hessian: str = "exact", create_graph: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        T, B, nx = xs.shape
        n = self.n
        tau = torch.cat([xs, us], -1)
        C = self.C.expand(T, B, n, n)
        C = 0.5 * (C + C.transpose(-1, -2))  # the quadratic form only sees the symmetric part
        g = (C @ tau.unsqueeze(-1)).squeeze(-1) + self.c
        if self.C_final is not None:
            CT = self.C_final.expand(B, nx, nx)
            CT = 0.5 * (CT + CT.transpose(-1, -2))
        else:
            CT = xT.new_zeros(B, nx, nx)
        gT = (CT @ xT.unsqueeze(-1)).squeeze(-1)
        if self.c_final is not None:
            gT = gT + self.c_final
        return C, g, CT, gT

    def validate(self, nx: int, nu: int, T: int, B: int) -> None:
        if self.n != nx + nu:
            raise ValueError(f"C: expected size nx + nu = {nx + nu}, got {self.n}")
        if self.C.shape[0] not in (1, T) or self.C.shape[1] not in (1, B):
            raise ValueError(f"C: expected [T={T}|1, B={B}|1, n, n], got {list(self.C.shape)}")
        if self.c.shape[0] not in (1, T) or self.c.shape[1] not in (1, B):
            raise ValueError(f"c: expected [T={T}|1, B={B}|1, n], got {list(self.c.shape)}")
        for t, name in ((self.C_final, "C_final"), (self.c_final, "c_final")):
            if t is not None and (t.shape[0] not in (1, B) or t.shape[1] != nx):
                raise ValueError(f"{name}: expected [B={B}|1, nx={nx}, ...], got {list(t.shape)}")


class FunctionCost(Cost):
    """Any differentiable stage cost ``stage(x [N,nx], u [N,nu]) -> [N]`` (rows independent)
    and optional ``terminal(x [N,nx]) -> [N]``; quadraticised with its exact Hessian.
    Parameters captured by the callables (e.g. an ``nn.Module``'s weights) get gradients."""

    def __init__(
        self,
        stage: Callable[[Tensor, Tensor], Tensor],
        terminal: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if not callable(stage):
            raise TypeError(f"stage: expected a callable, got {type(stage).__name__}")
        if terminal is not None and not callable(terminal):
            raise TypeError(f"terminal: expected a callable, got {type(terminal).__name__}")
        self._stage = stage
        self._terminal = terminal

    def stage_seq(self, xs: Tensor, us: Tensor) -> Tensor:
        return _flat_call(self._stage, xs, us)

    def terminal(self, x: Tensor) -> Tensor:
        if self._terminal is None:
            return super().terminal(x)
        return _flat_call(self._terminal, x)


class LeastSquaresCost(Cost):
    """``1/2 ||r(x, u)||^2`` per step (+ ``1/2 ||r_T(x_T)||^2``): with
    ``hessian='gauss-newton'`` the Hessian is ``J'J`` (``J`` the residual Jacobian)."""

    supports_gauss_newton = True

    def __init__(
        self,
        residual: Callable[[Tensor, Tensor], Tensor],
        terminal_residual: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if not callable(residual):
            raise TypeError(f"residual: expected a callable, got {type(residual).__name__}")
        self._res = residual
        self._res_T = terminal_residual

    def stage_seq(self, xs: Tensor, us: Tensor) -> Tensor:
        return 0.5 * _flat_call(self._res, xs, us).pow(2).sum(-1)

    def terminal(self, x: Tensor) -> Tensor:
        if self._res_T is None:
            return super().terminal(x)
        return 0.5 * _flat_call(self._res_T, x).pow(2).sum(-1)

    @staticmethod
    def _gn(fn: Callable[[Tensor], Tensor], z: Tensor, create_graph: bool) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            zz = z if (create_graph and z.requires_grad) else z.detach().requires_grad_(True)
            r = fn(zz)
            m = r.shape[-1]
            eye = torch.eye(m, dtype=z.dtype, device=z.device)
            eye = eye.reshape(m, *([1] * (r.dim() - 1)), m).expand(m, *r.shape)
            (J,) = batched_grad(r, (zz,), eye, create_graph)
        J = J.movedim(0, -2)  # [*S, m, n]
        r = r if create_graph else r.detach()
        g = (J.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1)
        return g, J.transpose(-1, -2) @ J

    def quadratize(
        self, xs: Tensor, us: Tensor, xT: Tensor, hessian: str = "exact", create_graph: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if hessian == "exact":
            return super().quadratize(xs, us, xT, hessian, create_graph)
        nx = xs.shape[-1]
        tau = torch.cat([xs, us], -1)
        g, C = self._gn(
            lambda z: _flat_call(self._res, z[..., :nx], z[..., nx:]), tau, create_graph
        )
        if self._res_T is None:
            return C, g, xT.new_zeros(*xT.shape, nx), torch.zeros_like(xT)
        gT, CT = self._gn(lambda z: _flat_call(self._res_T, z), xT, create_graph)
        return C, g, CT, gT


class RewardCost(Cost):
    """``cost(x, u) = -env.reward(x, u, env.dynamics(x, u))`` (plus an optional terminal
    callable): use an env's reward as the planning cost where it is smooth."""

    def __init__(self, env: Any, terminal: Callable[[Tensor], Tensor] | None = None) -> None:
        if not (hasattr(env, "_reward") and hasattr(env, "_dynamics")):
            raise TypeError(f"env: expected a diffctl Env, got {type(env).__name__}")
        self.env = env
        self._terminal = terminal

    def stage_seq(self, xs: Tensor, us: Tensor) -> Tensor:
        return -self.env._reward(xs, us, self.env._dynamics(xs, us))

    def terminal(self, x: Tensor) -> Tensor:
        if self._terminal is None:
            return super().terminal(x)
        return _flat_call(self._terminal, x)


class StatePenalty(Cost):
    """Soft state box ``lower <= x <= upper`` added to ``base`` as
    ``weight * sum(relu(x - upper)^2 + relu(lower - x)^2)`` on every state after ``x_0``."""

    def __init__(
        self, base: Cost, lower: Tensor | None, upper: Tensor | None, weight: float
    ) -> None:
        if lower is None and upper is None:
            raise ValueError("lower/upper: give at least one state bound")
        if not (weight > 0):
            raise ValueError(f"weight: expected > 0, got {weight!r}")
        if lower is not None and upper is not None and bool((lower > upper).any()):
            raise ValueError("lower: state lower bound exceeds upper bound")
        self.base, self.lower, self.upper, self.weight = base, lower, upper, float(weight)
        self.supports_gauss_newton = base.supports_gauss_newton

    def _pen(self, x: Tensor) -> Tensor:
        p = torch.zeros_like(x)
        if self.upper is not None:
            p = p + torch.relu(x - self.upper) ** 2
        if self.lower is not None:
            p = p + torch.relu(self.lower - x) ** 2
        return self.weight * p.sum(-1)

    def _pen_grad_hess(self, x: Tensor) -> tuple[Tensor, Tensor]:
        g = torch.zeros_like(x)
        h = torch.zeros_like(x)
        if self.upper is not None:
            g = g + 2 * torch.relu(x - self.upper)
            h = h + (x > self.upper).to(x.dtype)
        if self.lower is not None:
            g = g - 2 * torch.relu(self.lower - x)
            h = h + (x < self.lower).to(x.dtype)
        return self.weight * g, torch.diag_embed(2 * self.weight * h)

    def stage_seq(self, xs: Tensor, us: Tensor) -> Tensor:
        return self.base.stage_seq(xs, us) + self._pen(xs)

    def terminal(self, x: Tensor) -> Tensor:
        return self.base.terminal(x) + self._pen(x)

    def quadratize(
        self, xs: Tensor, us: Tensor, xT: Tensor, hessian: str = "exact", create_graph: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        C, g, CT, gT = self.base.quadratize(xs, us, xT, hessian, create_graph)
        nx = xs.shape[-1]
        pg, ph = self._pen_grad_hess(xs)
        pgT, phT = self._pen_grad_hess(xT)
        C = C.clone()
        C[..., :nx, :nx] = C[..., :nx, :nx] + ph
        g = torch.cat([g[..., :nx] + pg, g[..., nx:]], -1)
        return C, g, CT + phT, gT + pgT

    def validate(self, nx: int, nu: int, T: int, B: int) -> None:
        self.base.validate(nx, nu, T, B)


def as_cost(cost: Any) -> Cost:
    """A ``Cost`` as is; a plain callable ``cost(x, u) -> [N]`` becomes a ``FunctionCost``."""
    if isinstance(cost, Cost):
        return cost
    if callable(cost):
        return FunctionCost(cost)
    raise TypeError(f"cost: expected a Cost or a callable cost(x, u), got {type(cost).__name__}")
