"""Differentiable box-constrained iLQR MPC (Amos et al. 2018, "Differentiable MPC for
End-to-end Planning and Control").

Forward: iLQR / box-DDP (Tassa, Mansard & Todorov 2014): each iteration linearises the dynamics
and quadraticises the cost along the current trajectory, runs a Riccati backward pass whose
control step at every time is a box QP (``box_qp``: exact active-set enumeration up to three
controls, projected Newton beyond), then a line search over several step sizes evaluated in
parallel, with per-example Levenberg-Marquardt
regularisation, convergence masks and at most one host synchronisation per iteration.

Backward (default): implicit differentiation at the fixed point (paper Sec. 4). With the KKT
residual ``r(tau, lambda; theta)`` of the problem restricted to the free controls, the adjoint
``w = K^{-T} grad`` is one more LQR solve over the free controls (exact Lagrangian Hessian,
including the dynamics' second-order term), and autograd then propagates ``-w . dr/dtheta`` to
every tensor the cost and dynamics depend on: ``x0``, ``C``, ``c``, ``F``, ``f``, env
parameters, network weights. ``unroll=True`` differentiates through the iterations instead.

Linear dynamics with a ``QuadCost``: the problem is one convex QP in the controls, and
``MPCConfig.solver`` (``"auto"``, the default) solves it condensed instead (``condensed.py``:
states eliminated, a batched interior-point + active-set solve of the box QP in the ``T nu``
controls, one differentiable solve over the final free set for the gradients) when the problem
is small enough (``CONDENSED_MAX_WORK`` on the CPU, ``CONDENSED_MAX_CUDA_ENTRIES`` on CUDA).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from diffctl.configs.control import Bound, MPCConfig

from .base import PlanResult, timed
from .boxqp import box_qp
from .condensed import box_qp as dense_box_qp
from .condensed import condense, face_solve
from .cost import Cost, QuadCost, StatePenalty, as_cost
from .dynamics import DynamicsAdapter, LinearDynamics
from .lqr import check_finite, riccati_sweep, rollout_linear

__all__ = ["MPCConfig", "MPC", "CONDENSED_MAX_WORK", "CONDENSED_MAX_CUDA_ENTRIES"]

#: ``solver="auto"`` on the CPU condenses an LQ problem when ``B (T nu)^3`` is at most this:
#: the dense solver's work grows as ``B (T nu)^3``, the box-DDP's as ``T`` (per-op overhead)
#: times its iterations. Measured on 1 CPU thread, float64, nx=4 (``diffctl bench convex``
#: problem with a stable ``A``, box-DDP converging in ~5-8 iterations), condensed/DDP time of
#: fwd+bwd: B=64, T nu=60: 1/6.7; B=512, 60: 1/1.5; B=1, 500: 1/1.2; B=2048, 60: 1;
#: B=64, 200: 1/1.1; B=512, 120: 1.7; B=64, 300: 1.6. (With an unstable ``A`` the box-DDP
#: needs more iterations or does not converge, and the condensed solver wins by more.)
CONDENSED_MAX_WORK = 4e8
#: On CUDA the batched factorisations are cheap and memory is the limit: ``solver="auto"``
#: condenses when ``B (T nu)^2`` (entries of one batched Hessian) is at most this. H100,
#: float64, same problems: condensed/DDP time 1/8 to 1/14 for B=64..4096, T nu=60..600
#: (1024 x 600: 0.79 s vs 6.1 s, 18 GB peak).
CONDENSED_MAX_CUDA_ENTRIES = 5e7


class _Implicit(torch.autograd.Function):
    """Zeros whose backward is the implicit-function adjoint: ``grad -> -K^{-T} grad``."""

    @staticmethod
    def forward(ctx: Any, solver: _Adjoint, r_x: Tensor, r_u: Tensor, r_lam: Tensor):  # type: ignore[override]
        ctx.solver = solver
        return torch.zeros_like(r_x), torch.zeros_like(r_u)

    @staticmethod
    def backward(ctx: Any, gx: Tensor, gu: Tensor):  # type: ignore[override]
        dx, du, dlam = ctx.solver.solve(gx, gu)
        return None, -dx, -du, -dlam


@dataclass
class _Adjoint:
    """The fixed point and what the adjoint LQR over the free controls needs."""

    xs: Tensor
    us: Tensor
    lam: Tensor
    F: Tensor
    free: Tensor
    dyn: DynamicsAdapter
    cost: Cost

    def solve(self, gx: Tensor, gu: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        xs, us, lam, F, free = self.xs, self.us, self.lam, self.F, self.free
        nx = xs.shape[-1]
        gx = torch.zeros_like(xs) if gx is None else gx
        gu = torch.zeros_like(us) if gu is None else gu
        # Hessian of the Lagrangian: exact cost Hessian + lambda' d2f (Newton-KKT system).
        H, _, HT, _ = self.cost.quadratize(xs[:-1], us, xs[-1], "exact", False)
        H = H + self.dyn.lagrangian_hessian(xs[:-1], us, lam[1:])
        c = -torch.cat([gx[:-1], gu * free], -1)
        f0 = torch.zeros_like(xs[1:])
        K, k, _, _, bad = riccati_sweep(H, c, F, f0, HT, -gx[-1], u_free=free)
        dx, du = rollout_linear(torch.zeros_like(xs[0]), K, k, F, f0)
        nan = torch.where(bad, float("nan"), 0.0).to(xs.dtype)  # visible, not silent
        dx, du = dx + nan[:, None], du + nan[:, None]
        # adjoint multipliers (stationarity in x of the adjoint QP)
        dlam = [(HT @ dx[-1].unsqueeze(-1)).squeeze(-1) - gx[-1]]
        for t in range(us.shape[0] - 1, -1, -1):
            tau = torch.cat([dx[t], du[t]], -1)
            Hx = (H[t, :, :nx, :] @ tau.unsqueeze(-1)).squeeze(-1)
            Fx = F[t, :, :, :nx]
            dlam.append(Hx - gx[t] + (Fx.transpose(-1, -2) @ dlam[-1].unsqueeze(-1)).squeeze(-1))
        return dx, du * free, torch.stack(dlam[::-1])


def _psd(M: Tensor) -> Tensor:
    """Nearest symmetric PSD matrix (eigenvalues clipped at zero), batched."""
    w, V = torch.linalg.eigh(0.5 * (M + M.transpose(-1, -2)))
    return (V * w.clamp_min(0).unsqueeze(-2)) @ V.transpose(-1, -2)


def _bound_tensor(
    b: Bound | Tensor, nu: int, dtype: torch.dtype, device: torch.device, name: str, fill: float
) -> Tensor:
    if b is None:
        return torch.full((nu,), fill, dtype=dtype, device=device)
    if isinstance(b, Tensor):
        t = b.to(device=device, dtype=dtype)
    else:
        t = torch.as_tensor(b, dtype=dtype, device=device)
    if t.dim() == 0:
        t = t.expand(nu)
    if t.shape[-1] != nu:
        raise ValueError(f"{name}: expected {nu} entries (nu), got shape {list(t.shape)}")
    if torch.isnan(t).any():
        raise ValueError(f"{name}: contains NaN")
    return t


def _known_nu(dynamics: Any, spec: Any) -> tuple[int | None, str]:
    """The control dimension a dynamics object states (and what states it), if any:
    ``LinearDynamics``, an env's ``spec.act_dim``, a learned model's ``act_dim``."""
    if isinstance(dynamics, LinearDynamics):
        return dynamics.nu, "LinearDynamics F"
    if spec is not None and getattr(spec, "act_dim", 0) > 0:
        return int(spec.act_dim), getattr(spec, "name", "the env")
    act_dim = getattr(dynamics, "act_dim", None)
    if isinstance(act_dim, int) and not isinstance(act_dim, bool) and act_dim > 0:
        return act_dim, type(dynamics).__name__
    return None, ""


class MPC:
    """Differentiable box-constrained iLQR planner (see the module docstring).

    Args:
        dynamics: ``f(x [N,nx], u [N,nu]) -> [N,nx]`` (an ``Env``, an ``nn.Module``, a
            function; rows independent) or ``LinearDynamics(F, f)``. An analytic
            ``jacobians(x, u)`` method is used when present.
        cost: a ``Cost`` (``QuadCost``, ``FunctionCost``, ``LeastSquaresCost``, ``RewardCost``)
            or a callable ``cost(x, u) -> [N]``.
        config: ``MPCConfig``.
        nu: control dimension, when it cannot be inferred (from an env's ``spec.act_dim``,
            ``LinearDynamics``, a learned model's ``act_dim``, a ``QuadCost`` or tuple bounds);
            refused when it differs from what the dynamics states.
        u_lower, u_upper: tensor bounds ``[nu]`` or ``[T|1, B|1, nu]`` overriding the config.

    ``plan(x0 [B,nx], warm_start [T,B,nu] | None) -> PlanResult``; ``info`` holds ``history``
    (one dict per iteration), ``free`` (controls not at a bound), ``reg`` (the final
    regularisation; zero for the condensed solver, which needs none) and ``solver``
    (``"ddp"`` or ``"condensed"``, see ``MPCConfig.solver``).
    """

    def __init__(
        self,
        dynamics: Any,
        cost: Any,
        config: MPCConfig | None = None,
        *,
        nu: int | None = None,
        u_lower: Tensor | None = None,
        u_upper: Tensor | None = None,
    ) -> None:
        config = MPCConfig() if config is None else config
        if not isinstance(config, MPCConfig):
            raise TypeError(f"config: expected MPCConfig, got {type(config).__name__}")
        self.config = config
        self.dyn = DynamicsAdapter(dynamics)
        cost = as_cost(cost)
        if config.hessian == "gauss-newton" and not cost.supports_gauss_newton:
            raise ValueError(
                "hessian: 'gauss-newton' needs a LeastSquaresCost (residual form) or a QuadCost, "
                f"got {type(cost).__name__}"
            )
        self._base_cost = cost
        if config.solver == "condensed":
            why = [
                msg
                for bad, msg in (
                    (not isinstance(dynamics, LinearDynamics), "LinearDynamics dynamics"),
                    (not isinstance(cost, QuadCost), "a QuadCost"),
                    (config.unroll, "unroll=False"),
                    (
                        config.state_lower is not None or config.state_upper is not None,
                        "no state bounds",
                    ),
                )
                if bad
            ]
            if why:
                raise ValueError(f"solver: 'condensed' needs {', '.join(why)}")
        spec = getattr(dynamics, "spec", None)
        if spec is not None and getattr(spec, "discrete", False):
            raise ValueError(
                f"dynamics: {getattr(spec, 'name', 'the env')} has discrete actions; "
                "MPC needs continuous controls (use its continuous variant)"
            )
        known, source = _known_nu(dynamics, spec)
        if nu is not None and (isinstance(nu, bool) or not isinstance(nu, int) or nu < 1):
            raise ValueError(f"nu: expected a positive int, got {nu!r}")
        if nu is not None and known is not None and nu != known:
            raise ValueError(f"nu: expected {known} (the controls of {source}), got {nu}")
        self._nu = nu if nu is not None else known
        lo, hi = config.u_lower, config.u_upper
        if spec is not None and getattr(spec, "act_dim", 0) > 0:
            lo = spec.action_low if lo is None else lo
            hi = spec.action_high if hi is None else hi
        for b in (lo, hi):
            if self._nu is None and isinstance(b, tuple) and len(b) > 1:
                self._nu = len(b)
        self._lo, self._hi = (
            (u_lower if u_lower is not None else lo),
            (u_upper if u_upper is not None else hi),
        )
        for name, b in (("u_lower", u_lower), ("u_upper", u_upper)):
            if b is not None:
                if not isinstance(b, Tensor):
                    raise TypeError(f"{name}: expected a torch.Tensor, got {type(b).__name__}")
                check_finite(b, name)
        if isinstance(self._lo, Tensor) and isinstance(self._hi, Tensor):
            if (self._lo > self._hi).any():
                raise ValueError("u_lower: lower bound exceeds u_upper")

    @property
    def horizon(self) -> int:
        return self.config.horizon

    # ------------------------------------------------------------------ setup
    def _setup(self, x0: Tensor, warm_start: Tensor | None) -> tuple[Cost, Tensor, Tensor, Tensor]:
        if not isinstance(x0, Tensor):
            raise TypeError(f"x0: expected a torch.Tensor, got {type(x0).__name__}")
        if not x0.is_floating_point():
            raise TypeError(f"x0: expected a floating dtype, got {x0.dtype}")
        if x0.dim() != 2:
            raise ValueError(f"x0: expected shape [B, nx], got {list(x0.shape)}")
        dev_obj = getattr(self.dyn.obj, "device", None)
        if isinstance(dev_obj, torch.device) and x0.device != dev_obj:
            raise ValueError(f"x0: tensor is on {x0.device}, the dynamics is on {dev_obj}")
        check_finite(x0, "x0")
        B, nx = x0.shape
        T = self.config.horizon
        nu = self._nu
        cost = self._base_cost
        if nu is None and isinstance(cost, QuadCost):
            nu = cost.n - nx
        if nu is None and warm_start is not None:
            nu = warm_start.shape[-1]
        if nu is None or nu < 1:
            raise ValueError("nu: cannot infer the control dimension; pass MPC(..., nu=...)")
        if isinstance(self.dyn.obj, LinearDynamics):
            self.dyn.obj.validate(nx, T, B)
            if self.dyn.obj.nu != nu:
                raise ValueError(
                    f"F: expected nx + nu = {nx + nu} columns, got {self.dyn.obj.F.shape[-1]}"
                )
        cost.validate(nx, nu, T, B)
        spec = getattr(self.dyn.obj, "spec", None)
        if spec is not None and getattr(spec, "state_dim", nx) != nx:
            raise ValueError(f"x0: expected nx = {spec.state_dim} for {spec.name}, got {nx}")
        state_dim = getattr(self.dyn.obj, "state_dim", None)
        if spec is None and isinstance(state_dim, int) and state_dim != nx:
            raise ValueError(
                f"x0: expected nx = {state_dim} for {type(self.dyn.obj).__name__}, got {nx}"
            )

        dt, dev = x0.dtype, x0.device
        lo = _bound_tensor(self._lo, nu, dt, dev, "u_lower", -math.inf)
        hi = _bound_tensor(self._hi, nu, dt, dev, "u_upper", math.inf)
        if (lo > hi).any():
            raise ValueError("u_lower: lower bound exceeds u_upper")
        lo, hi = lo.expand(T, B, nu), hi.expand(T, B, nu)
        if warm_start is None:
            u0 = torch.zeros(T, B, nu, dtype=dt, device=dev)
        else:
            if not isinstance(warm_start, Tensor):
                raise TypeError(
                    f"warm_start: expected a torch.Tensor, got {type(warm_start).__name__}"
                )
            if tuple(warm_start.shape) != (T, B, nu):
                raise ValueError(
                    f"warm_start: expected shape [T={T}, B={B}, nu={nu}], "
                    f"got {list(warm_start.shape)}"
                )
            check_finite(warm_start, "warm_start")
            u0 = warm_start.to(dt).detach()
        u0 = torch.minimum(torch.maximum(u0, lo), hi)
        c = self.config
        if c.state_lower is not None or c.state_upper is not None:
            sl = (
                None
                if c.state_lower is None
                else _bound_tensor(c.state_lower, nx, dt, dev, "state_lower", -math.inf)
            )
            su = (
                None
                if c.state_upper is None
                else _bound_tensor(c.state_upper, nx, dt, dev, "state_upper", math.inf)
            )
            cost = StatePenalty(cost, sl, su, c.state_penalty)
        return cost, lo, hi, u0

    def _rollout(self, x0: Tensor, us: Tensor) -> Tensor:
        xs = [x0]
        for t in range(us.shape[0]):
            xs.append(self.dyn.step(t, xs[-1], us[t]))
        return torch.stack(xs)

    # ------------------------------------------------------------------ iLQR
    def _backward_pass(
        self,
        F: Tensor,
        C: Tensor,
        g: Tensor,
        CT: Tensor,
        gT: Tensor,
        du_lo: Tensor,
        du_hi: Tensor,
        reg: Tensor,
        k_prev: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Box-DDP backward pass in delta coordinates (Tassa et al. 2014, Alg. 2).

        Works on augmented matrices over ``z = [dx; 1]`` and ``tau = [dx; 1; du]`` so that the
        Riccati step (paper Eq. 3-4) is a few batched matmuls per time step:
        ``Q = C~ + F~' V~ F~``, value ``V~ = Q_zz + K~'(Q_uz + Q_uu K~) + Q_uz' K~`` with
        ``K~ = [K k]`` (Tassa et al. 2014, Eq. 25). Returns ``K [T,B,nu,nx]``, ``k [T,B,nu]``,
        the predicted decrease terms ``dV1 = sum k'q_u``, ``dV2 = sum 1/2 k'Q_uu k`` ``[B]``
        and ``ok [B]`` (``Q_uu`` positive definite at every step).
        """
        T, B, nx, n = F.shape
        nu = n - nx
        nz = nx + 1
        dt, dev = F.dtype, F.device
        zeros = partial(torch.zeros, dtype=dt, device=dev)
        # C~ over [x, 1, u] and F~ = [[F_x, 0, F_u], [0, 1, 0]] (f = 0 in delta coordinates)
        gx, gu = g[..., :nx].unsqueeze(-1), g[..., nx:].unsqueeze(-1)
        Ca = torch.cat(
            [
                torch.cat([C[..., :nx, :nx], gx, C[..., :nx, nx:]], -1),
                torch.cat([gx.transpose(-1, -2), zeros(T, B, 1, 1), gu.transpose(-1, -2)], -1),
                torch.cat([C[..., nx:, :nx], gu, C[..., nx:, nx:]], -1),
            ],
            -2,
        )
        Fa = torch.cat(
            [
                torch.cat([F[..., :nx], zeros(T, B, nx, 1), F[..., nx:]], -1),
                torch.cat(
                    [
                        zeros(T, B, 1, nx),
                        torch.ones(T, B, 1, 1, dtype=dt, device=dev),
                        zeros(T, B, 1, nu),
                    ],
                    -1,
                ),
            ],
            -2,
        )
        Va = torch.cat(
            [
                torch.cat([CT, gT.unsqueeze(-1)], -1),
                torch.cat([gT.unsqueeze(-2), zeros(B, 1, 1)], -1),
            ],
            -2,
        )
        eye = torch.eye(nu, dtype=dt, device=dev)
        regI = reg[:, None, None] * eye
        ok = torch.ones(B, dtype=torch.bool, device=dev)
        Kas, Quus, qus = [None] * T, [None] * T, [None] * T
        for t in range(T - 1, -1, -1):
            Fat = Fa[t]
            Q = Ca[t] + Fat.transpose(-1, -2) @ Va @ Fat
            Quz, Quu = Q[:, nz:, :nz], Q[:, nz:, nz:]
            H = Quu + regI
            # control step: box QP on du in [lo - u, hi - u] (Tassa et al. 2014, Eq. 15-16)
            if nu == 1:  # closed form: clamped minimiser of a parabola
                h = H[:, :, 0]
                okt = h[:, 0] > 0
                Ka = Quz / torch.where(okt[:, None, None], -H, -torch.ones_like(H))
                k = torch.clamp(Ka[:, :, nx], du_lo[t], du_hi[t])
                qu = Quz[:, :, nx]
                grad = h * k + qu
                free = ~(((k <= du_lo[t]) & (grad > 0)) | ((k >= du_hi[t]) & (grad < 0)))
                Ka = torch.cat([Ka[:, :, :nx] * free.unsqueeze(-1), k.unsqueeze(-1)], -1)
                Ka = Ka * okt[:, None, None]
            else:
                qu = Quz[:, :, nx]
                k, free, L, okt = box_qp(
                    H, qu, du_lo[t], du_hi[t], k_prev[t], self.config.boxqp_iters
                )
                K = -torch.cholesky_solve(Quz[:, :, :nx] * free.unsqueeze(-1).to(dt), L)
                Ka = torch.cat([K, k.unsqueeze(-1)], -1) * okt[:, None, None]
            ok = ok & okt
            # value update (Tassa et al. 2014, Eq. 25b-c) on the augmented state
            KtM = Ka.transpose(-1, -2) @ (Quz + Quu @ Ka)
            Va = Q[:, :nz, :nz] + KtM + Quz.transpose(-1, -2) @ Ka
            Va = 0.5 * (Va + Va.transpose(-1, -2))
            Kas[t], Quus[t], qus[t] = Ka, Quu, qu
        Ka = torch.stack(Kas)
        K, k = Ka[..., :nx], Ka[..., nx]
        Quu, qu = torch.stack(Quus), torch.stack(qus)
        dV1 = (k * qu).sum((0, 2))
        dV2 = 0.5 * (k.unsqueeze(-2) @ Quu @ k.unsqueeze(-1)).sum((0, 2, 3))
        return K, k, dV1, dV2, ok

    @staticmethod
    def _costate(F: Tensor, g: Tensor, gT: Tensor) -> Tensor:
        """Adjoint costate ``lambda_T = g_T``, ``lambda_t = g_x,t + F_x,t' lambda_{t+1}``:
        ``[T+1, B, nx]`` (the gradient of the total cost w.r.t. each state of a rollout)."""
        nx = gT.shape[-1]
        lam = [gT]
        for t in range(F.shape[0] - 1, -1, -1):
            Fx = F[t, :, :, :nx]
            lam.append(g[t, :, :nx] + (Fx.transpose(-1, -2) @ lam[-1].unsqueeze(-1)).squeeze(-1))
        return torch.stack(lam[::-1])

    def _line_search(
        self, cost: Cost, xs: Tensor, us: Tensor, K: Tensor, k: Tensor, lo: Tensor, hi: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Roll out every step size at once: states ``[T+1,A,B,nx]``, actions, cost ``[A,B]``."""
        c = self.config
        A = c.max_linesearch_iter
        alphas = c.linesearch_decay ** torch.arange(A, dtype=us.dtype, device=us.device)
        u_ff = us.unsqueeze(1) + alphas.view(1, A, 1, 1) * k.unsqueeze(1)  # [T, A, B, nu]
        x = xs[0].expand(A, *xs[0].shape)
        xs_c, us_c = [x], []
        for t in range(us.shape[0]):
            u = u_ff[t] + (K[t] @ (x - xs[t]).unsqueeze(-1)).squeeze(-1)
            u = torch.clamp(u, lo[t], hi[t])
            x = self.dyn.step(t, x, u)
            xs_c.append(x)
            us_c.append(u)
        xs_c, us_c = torch.stack(xs_c), torch.stack(us_c)
        return xs_c, us_c, cost.total(xs_c, us_c), alphas

    def _solve(
        self, cost: Cost, x0: Tensor, u0: Tensor, lo: Tensor, hi: Tensor, create_graph: bool
    ) -> dict[str, Any]:
        c = self.config
        T, B, nu = u0.shape
        us = u0
        xs = self._rollout(x0, us)
        if xs.shape[-1] != x0.shape[-1] or xs.shape[:2] != (T + 1, B):
            raise ValueError(
                f"dynamics: expected next states of shape [B={B}, nx={x0.shape[-1]}], "
                f"got {list(xs.shape[2:])}"
            )
        J = cost.total(xs, us)
        reg = torch.full((B,), c.reg_init, dtype=x0.dtype, device=x0.device)
        growth = torch.ones_like(reg)
        # project the cost Hessian onto the PSD cone unless it is a validated QuadCost (or
        # penalised one) or we differentiate through the iterations (eigh is not smooth there)
        base = cost.base if isinstance(cost, StatePenalty) else cost
        project = not create_graph and not isinstance(base, QuadCost)
        done = torch.zeros(B, dtype=torch.bool, device=x0.device)
        iters = torch.zeros(B, dtype=torch.int64, device=x0.device)
        k_prev = torch.zeros_like(us)
        history: list[dict[str, Any]] = []
        t_start = time.perf_counter()
        for it in range(c.max_iter):
            iters = iters + (~done).long()
            _, F = self.dyn.linearize(xs[:-1], us, create_graph)
            C, g, CT, gT = cost.quadratize(xs[:-1], us, xs[-1], c.hessian, create_graph)
            if project:  # a non-convex cost: keep the quadratic model convex (same fixed point)
                C, CT = _psd(C), _psd(CT)
            K, k, dV1, dV2, ok = self._backward_pass(F, C, g, CT, gT, lo - us, hi - us, reg, k_prev)
            k_prev = k.detach()
            xs_c, us_c, J_c, alphas = self._line_search(cost, xs, us, K, k, lo, hi)
            expected = -(alphas[:, None] * dV1 + alphas[:, None] ** 2 * dV2)  # [A, B]
            # Armijo test; a decrease below round-off level (near the optimum) counts as one
            noise = 16 * torch.finfo(J.dtype).eps * (1 + J.abs())
            # (steps at which Q_uu was not positive definite contribute no change; the rest of
            # the step is still a candidate the line search may accept)
            accept = (J - J_c >= c.armijo * expected - noise) & torch.isfinite(J_c)
            first = torch.argmax(accept.to(torch.int8), dim=0)
            acc = accept.any(0) & ~done
            pick = first.view(1, 1, B, 1)
            x_new = xs_c.gather(1, pick.expand(T + 1, 1, B, xs.shape[-1])).squeeze(1)
            u_new = us_c.gather(1, pick.expand(T, 1, B, nu)).squeeze(1)
            J_new = J_c.gather(0, first.view(1, B)).squeeze(0)
            xs = torch.where(acc[None, :, None], x_new, xs)
            us = torch.where(acc[None, :, None], u_new, us)
            J = torch.where(acc, J_new, J)
            # converged: the full (box-projected) Newton step on the controls is tiny
            # (not merely shrunk by a large regularisation after failed steps)
            small = k.detach().abs().amax(dim=(0, 2)) <= c.u_tol
            done = done | (ok & small & (reg <= 1.0))
            # Levenberg-Marquardt schedule of Tassa et al. 2012 (Sec. II-F): the factor itself
            # grows while steps keep failing, so a badly non-convex start recovers quickly
            fail = (~acc | ~ok) & ~done
            growth = torch.where(
                fail,
                torch.clamp_min(growth * c.reg_factor, c.reg_factor),
                torch.full_like(growth, 1.0 / c.reg_factor),
            )
            reg = torch.where(
                ~fail,
                (reg / c.reg_factor).clamp_min(c.reg_min),
                torch.where(fail, (reg * growth).clamp_max(c.reg_max), reg),
            )
            # one host synchronisation per iteration: progress log + stopping test
            all_done, n_done, mean_cost = torch.stack(
                [done.all().to(J.dtype), done.sum().to(J.dtype), J.detach().mean()]
            ).tolist()
            history.append(
                {
                    "iteration": it + 1,
                    "cost": mean_cost,
                    "converged": int(n_done),
                    "time": time.perf_counter() - t_start,
                }
            )
            if all_done:
                break
        return {
            "xs": xs,
            "us": us,
            "J": J,
            "done": done,
            "iters": iters,
            "reg": reg,
            "history": history,
        }

    # ------------------------------------------------------------------ public
    @timed
    def plan(self, x0: Tensor, warm_start: Tensor | None = None) -> PlanResult:
        """Plan from ``x0 [B, nx]`` (optionally warm-started with actions ``[T, B, nu]``).

        Returns ``PlanResult`` with ``actions [T,B,nu]``, ``states [T+1,B,nx]``, ``cost [B]``,
        ``converged [B]``, ``iterations [B]``; ``actions``/``states``/``cost`` are
        differentiable w.r.t. ``x0`` and everything the cost and dynamics depend on.
        """
        cost, lo, hi, u0 = self._setup(x0, warm_start)
        c = self.config
        if c.solver == "condensed" or (
            c.solver == "auto"
            and not c.unroll
            and isinstance(self.dyn.obj, LinearDynamics)
            and isinstance(cost, QuadCost)  # (a StatePenalty when there are state bounds)
            and self._condensing_pays(*u0.shape, x0.device)
        ):
            res = self._plan_condensed(cost, x0, u0, lo, hi, warm_start is not None)
            if c.solver == "condensed" or (res is not None and bool(res.converged.all())):
                return res
            if res is not None:  # "auto": box-DDP finishes, from the rows the dense solve got
                u0 = torch.where(res.converged[None, :, None], res.actions.detach(), u0)
        if self.config.unroll:
            with torch.enable_grad():
                out = self._solve(cost, x0, u0, lo, hi, create_graph=True)
            xs, us, J = out["xs"], out["us"], out["J"]
        else:
            with torch.no_grad():
                out = self._solve(cost, x0.detach(), u0, lo, hi, create_graph=False)
            xs, us = out["xs"], out["us"]
            if torch.is_grad_enabled():
                xs, us = self._attach_implicit(cost, x0, xs, us, lo, hi)
            J = cost.total(xs, us) if xs.requires_grad or us.requires_grad else out["J"]
        free = (us.detach() > lo) & (us.detach() < hi)
        return PlanResult(
            actions=us,
            states=xs,
            cost=J,
            converged=out["done"],
            iterations=out["iters"],
            info={"history": out["history"], "free": free, "reg": out["reg"], "solver": "ddp"},
        )

    @staticmethod
    def _condensing_pays(T: int, B: int, nu: int, device: torch.device) -> bool:
        """``solver="auto"``'s size rule (``CONDENSED_MAX_WORK``, ``..._CUDA_ENTRIES``)."""
        N = T * nu
        if device.type == "cuda":
            return B * N * N <= CONDENSED_MAX_CUDA_ENTRIES
        return B * N**3 <= CONDENSED_MAX_WORK

    def _plan_condensed(
        self, cost: QuadCost, x0: Tensor, u0: Tensor, lo: Tensor, hi: Tensor, warm: bool
    ) -> PlanResult | None:
        """The LQ problem as one box QP in the controls (``condensed.py``); ``None`` when
        ``solver="auto"`` and the condensed Hessian is not positive definite (box-DDP then)."""
        # (``plan`` also hands a batch with an unconverged row to box-DDP under "auto")
        c = self.config
        T, B, nu = u0.shape

        def flat(u: Tensor) -> Tensor:  # [T, B, nu] -> [B, T nu] (u_0 first), in float64
            return u.transpose(0, 1).reshape(B, T * nu).to(torch.float64)

        # float64 whatever the input dtype: condensing squares the conditioning (an unstable
        # 30-step system gave cond(H) ~ 3e5, too much for float32's active-set tests)
        qp = condense(self.dyn.obj, cost, x0, T, torch.float64)  # tracked when grad is on
        H, g = qp.H.detach(), qp.g.detach()
        pd = (torch.linalg.cholesky_ex(H)[1] == 0).expand(B)
        if c.solver == "auto" and not bool(pd.all()):
            return None
        lo_f, hi_f = flat(lo), flat(hi)
        with torch.no_grad():
            out = dense_box_qp(
                H, g, lo_f, hi_f, flat(u0), c.max_iter, pd, warm, offset=qp.k.detach()
            )
        # one solve over the final face on the tracked H, g: exact value + implicit gradient
        U, ok = face_solve(qp.H, qp.g, lo_f, hi_f, out["at_lower"], out["at_upper"], pd)
        U = torch.minimum(torch.maximum(U, lo_f), hi_f)  # round-off at a converged solution
        us = U.reshape(B, T, nu).transpose(0, 1).to(x0.dtype)
        xs = qp.states(U).to(x0.dtype)
        free = (us.detach() > lo) & (us.detach() < hi)
        return PlanResult(
            actions=us,
            states=xs,
            cost=cost.total(xs, us),
            converged=out["converged"] & ok,
            iterations=out["iterations"],
            info={
                "history": out["history"],
                "free": free,
                "reg": torch.zeros(B, dtype=x0.dtype, device=x0.device),
                "solver": "condensed",
            },
        )

    def _attach_implicit(
        self, cost: Cost, x0: Tensor, xs: Tensor, us: Tensor, lo: Tensor, hi: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Wire the implicit gradient (paper Sec. 4) into ``xs, us`` when anything needs it."""
        free = (us > lo) & (us < hi)
        with torch.enable_grad():
            # residual of the dynamics constraints at the fixed point, with its graph to theta
            fx = self.dyn.seq(xs[:-1], us)
            r_lam = torch.cat([(x0 - xs[0]).unsqueeze(0), fx - xs[1:]], 0)
            cost_dep = cost.total(xs, us)
            if not (r_lam.requires_grad or cost_dep.requires_grad):
                return xs, us
            # costate lambda* from stationarity in x (lambda_T = dl_T/dx, backward recursion)
            _, F = self.dyn.linearize(xs[:-1], us, False)
            _, g, _, gT = cost.quadratize(xs[:-1], us, xs[-1], "exact", False)
            lam = self._costate(F, g, gT).detach()
            # stationarity residual of the Lagrangian, differentiable in theta (create_graph)
            xl = xs.detach().requires_grad_(True)
            ul = us.detach().requires_grad_(True)
            Lag = cost.total(xl, ul).sum() + (lam[1:] * (self.dyn.seq(xl[:-1], ul) - xl[1:])).sum()
            Lag = Lag - (lam[0] * xl[0]).sum()
            r_x, r_u = torch.autograd.grad(Lag, (xl, ul), create_graph=True)
            r_u = r_u * free
            adj = _Adjoint(xs=xs, us=us, lam=lam, F=F.detach(), free=free, dyn=self.dyn, cost=cost)
            zx, zu = _Implicit.apply(adj, r_x, r_u, r_lam)
        return xs + zx, us + zu
