"""Convex MPC as a differentiable layer (cvxpylayers, Agrawal et al. 2019).

For linear dynamics ``x_{t+1} = A x_t + B u_t + c`` and a quadratic goal-tracking cost, the
finite-horizon MPC problem is a convex QP:

    minimise   1/2 sum_{t<T} [(x_t - g)' Q (x_t - g) + u_t' R u_t] + 1/2 (x_T - g)' Qf (x_T - g)
    subject to x_0 = x0,  x_{t+1} = A x_t + B u_t + c,
               u_low <= u_t <= u_high          (optional box on the controls)
               G x_t <= h,  t = 1..T           (optional linear state constraints)

``ConvexMPC`` solves a batch of these with cvxpylayers and returns a ``PlanResult`` whose
actions and states are differentiable with respect to every input (x0, A, B, c, Q, R, goal,
Qf, bounds, G, h) by implicit differentiation of the conic program's optimality conditions.

The conic solver is Clarabel (an interior-point method) at tight tolerances, reached through
diffcp: cvxpylayers' default SCS at default tolerances returned ``|u|`` up to 1.29 against a
bound of 1 on a T = 30 problem, while Clarabel keeps the bounds to solver precision. Clarabel
takes interior-point steps of at most 0.8 of the way to the cone boundary (its default is 0.99):
the longer steps stalled off the central path on some problems, with actions off by up to 3e-4.

The layer is a CPU solver (numpy inside): CUDA inputs are solved on the CPU and the results
moved back to their device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import torch
from cvxpylayers.torch import CvxpyLayer
from torch import Tensor, nn

from .base import PlanResult

__all__ = ["ConvexMPCConfig", "ConvexMPC"]

_SOLVERS = ("Clarabel", "SCS", "ECOS")


@dataclass(frozen=True)
class ConvexMPCConfig:
    """Settings of ``ConvexMPC``.

    Attributes:
        horizon: number of controls ``T`` in the plan.
        solver: conic solver used by diffcp: ``"Clarabel"`` (default: accurate, bounds hold),
            ``"SCS"`` or ``"ECOS"``.
        tol: Clarabel's gap and feasibility tolerances (absolute and relative); the quadratic
            cost goes through a second-order cone, so the solution error is about sqrt(tol)
            (1e-10 gives ~1e-5 on a T = 30 problem, 1e-12 ~1e-6 at up to twice the time).
        max_iter: iteration limit of the conic solver.
        psd_jitter: ``Q`` and ``Qf`` are factorised as ``Q + psd_jitter * I = L L'`` (the QP
            uses ``||L' (x - g)||^2`` so that the problem stays DPP); a tiny jitter lets a
            positive *semi*-definite ``Q`` be factorised.
        diff_mode: how diffcp solves the derivative's linear system: ``"dense"`` (exact LU,
            default; the QPs here are small) or ``"lsqr"`` (iterative, cvxpylayers' default,
            which was off by 1% in gradients with active bounds here).
        n_jobs: threads diffcp uses over the batch (forward and backward).
    """

    horizon: int = 30
    solver: str = "Clarabel"
    tol: float = 1e-12
    max_iter: int = 200
    psd_jitter: float = 1e-10
    diff_mode: str = "dense"
    n_jobs: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 1:
            raise ValueError(f"horizon: expected a positive int, got {self.horizon!r}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver: expected one of {_SOLVERS}, got {self.solver!r}")
        if not self.tol > 0:
            raise ValueError(f"tol: expected a positive float, got {self.tol!r}")
        if (
            isinstance(self.max_iter, bool)
            or not isinstance(self.max_iter, int)
            or self.max_iter < 1
        ):
            raise ValueError(f"max_iter: expected a positive int, got {self.max_iter!r}")
        if self.diff_mode not in ("dense", "lsqr", "lsmr"):
            raise ValueError(f"diff_mode: expected dense, lsqr or lsmr, got {self.diff_mode!r}")
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise ValueError(f"n_jobs: expected a positive int, got {self.n_jobs!r}")
        if not self.psd_jitter >= 0:
            raise ValueError(f"psd_jitter: expected a float >= 0, got {self.psd_jitter!r}")


def _check_tensor(name: str, t: Any, shapes: tuple[tuple[int, ...], ...]) -> Tensor:
    """Validate a float tensor against allowed shapes (unbatched first, then batched)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating dtype, got {t.dtype}")
    if tuple(t.shape) not in shapes:
        want = " or ".join(str(list(s)) for s in shapes)
        raise ValueError(f"{name}: expected shape {want}, got {list(t.shape)}")
    if not torch.isfinite(t.detach()).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return t


def _check_psd(name: str, M: Tensor, definite: bool) -> None:
    Md = M.detach()
    scale = Md.abs().amax(dim=(-2, -1)).clamp_min(1.0)
    if not torch.allclose(Md, Md.mT, atol=1e-8 * float(scale.max()), rtol=1e-6):
        raise ValueError(f"{name}: must be symmetric")
    eig_min = torch.linalg.eigvalsh(Md.double()).amin(dim=-1)
    if definite and (eig_min <= 1e-12 * scale.double()).any():
        raise ValueError(
            f"{name}: must be positive definite (smallest eigenvalue {float(eig_min.min()):.3g}); "
            "the QP's solution must be unique to be differentiable"
        )
    if (eig_min < -1e-8 * scale.double()).any():
        raise ValueError(
            f"{name}: must be positive semidefinite (smallest eigenvalue "
            f"{float(eig_min.min()):.3g})"
        )


class ConvexMPC(nn.Module):
    """Differentiable, batched linear-quadratic MPC layer on cvxpylayers (see module docstring).

    The QP for each problem structure (``nx``, ``nu``, whether the controls are boxed, number of
    state-constraint rows) is canonicalised once and cached.

    Example::

        layer = ConvexMPC(ConvexMPCConfig(horizon=30))
        res = layer(x0, A, B, Q, R, u_low=-1.0, u_high=1.0)   # res.actions [30, B, nu]
    """

    def __init__(self, config: ConvexMPCConfig | None = None) -> None:
        super().__init__()
        self.config = config or ConvexMPCConfig()
        self._layers: dict[tuple[int, int, int, bool, int], CvxpyLayer] = {}

    @property
    def horizon(self) -> int:
        return self.config.horizon

    # ------------------------------------------------------------------ problem construction
    def _layer(self, nx: int, nu: int, boxed: bool, m: int) -> CvxpyLayer:
        key = (self.config.horizon, nx, nu, boxed, m)
        if key in self._layers:
            return self._layers[key]
        T = self.config.horizon
        x0 = cp.Parameter(nx)
        A, B, c = cp.Parameter((nx, nx)), cp.Parameter((nx, nu)), cp.Parameter(nx)
        # cost factors: ||LQ x - LQg||^2 with LQ = chol(Q)' and LQg = LQ g keeps the problem DPP
        LQ, LQg = cp.Parameter((nx, nx)), cp.Parameter(nx)
        LQf, LQfg = cp.Parameter((nx, nx)), cp.Parameter(nx)
        LR = cp.Parameter((nu, nu))
        params = [x0, A, B, c, LQ, LQg, LQf, LQfg, LR]
        X, U = cp.Variable((T + 1, nx)), cp.Variable((T, nu))
        cons = [X[0] == x0]
        obj = 0
        if boxed:
            lo, hi = cp.Parameter(nu), cp.Parameter(nu)
            params += [lo, hi]
        if m:
            G, h = cp.Parameter((m, nx)), cp.Parameter(m)
            params += [G, h]
        for t in range(T):
            cons.append(X[t + 1] == A @ X[t] + B @ U[t] + c)
            if boxed:
                cons += [U[t] >= lo, U[t] <= hi]
            if m:
                cons.append(G @ X[t + 1] <= h)
            obj = obj + cp.sum_squares(LR @ U[t])
            if t + 1 < T:
                obj = obj + cp.sum_squares(LQ @ X[t + 1] - LQg)
        obj = obj + cp.sum_squares(LQf @ X[T] - LQfg)
        problem = cp.Problem(cp.Minimize(0.5 * obj), cons)
        cfg = self.config
        args: dict[str, Any] = {"solve_method": cfg.solver}
        if cfg.solver == "Clarabel":
            args.update(
                max_iter=cfg.max_iter,
                tol_gap_abs=cfg.tol,
                tol_gap_rel=cfg.tol,
                tol_feas=cfg.tol,
                tol_ktratio=max(cfg.tol, 1e-8),
                # shorter steps keep the iterates centred: at tol 1e-12 every solve ends
                # AlmostSolved (stalls at the float floor), and with the default 0.99 the stall
                # point was off the central path on 6 of 92 random T = 15 / 30 problems (actions
                # off by up to 2.7e-4; which problems depended on the last bits of the data,
                # e.g. MKL's AVX-512 vs AVX2 Cholesky). At 0.8: max 9e-8 over 212, ~1.5x iters.
                max_step_fraction=0.8,
            )
        else:
            args.update(max_iters=cfg.max_iter)
        layer = CvxpyLayer(problem, parameters=params, variables=[X, U], solver_args=args)
        self._layers[key] = layer
        return layer

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x0: Tensor,
        A: Tensor,
        B: Tensor,
        Q: Tensor,
        R: Tensor,
        *,
        c: Tensor | None = None,
        goal: Tensor | None = None,
        Qf: Tensor | None = None,
        u_low: Tensor | float | None = None,
        u_high: Tensor | float | None = None,
        G: Tensor | None = None,
        h: Tensor | None = None,
    ) -> PlanResult:
        """Solve a batch of linear-quadratic MPC problems.

        Every argument may carry a leading batch dimension ``B`` (or be shared):

        Args:
            x0: start states ``[B, nx]`` (``[nx]`` is a batch of one).
            A: ``[nx, nx]`` or ``[B, nx, nx]``; B: ``[nx, nu]`` or ``[B, nx, nu]``.
            Q: state cost ``[nx, nx]`` / ``[B, nx, nx]``, symmetric PSD.
            R: control cost ``[nu, nu]`` / ``[B, nu, nu]``, symmetric positive definite.
            c: dynamics offset ``[nx]`` / ``[B, nx]`` (default 0).
            goal: target state ``[nx]`` / ``[B, nx]`` (default 0).
            Qf: terminal state cost, like ``Q`` (default ``Q``).
            u_low, u_high: control box (floats, ``[nu]`` or ``[B, nu]``); both or neither.
            G, h: state constraints ``G x_t <= h`` for t = 1..T, ``[m, nx]`` and ``[m]``
                (or batched); both or neither.

        Returns:
            ``PlanResult`` with actions ``[T, B, nu]``, states ``[T + 1, B, nx]``, the cost of
            the plan ``[B]`` (including the constant ``x_0`` term), ``converged`` (all true:
            a failed solve raises ``RuntimeError``) and ``iterations`` (one QP solve each).
        """
        if not isinstance(x0, Tensor):
            raise TypeError(f"x0: expected a torch.Tensor, got {type(x0).__name__}")
        if x0.dim() == 1:
            x0 = x0.unsqueeze(0)
        if x0.dim() != 2:
            raise ValueError(f"x0: expected shape [B, nx] or [nx], got {list(x0.shape)}")
        Bn, nx = x0.shape
        if not isinstance(B, Tensor) or B.dim() not in (2, 3):
            raise ValueError(
                f"B: expected a tensor of shape [nx, nu] or [batch, nx, nu], got "
                f"{list(B.shape) if isinstance(B, Tensor) else type(B).__name__}"
            )
        nu = B.shape[-1]
        dev, dtype = x0.device, x0.dtype

        def shapes(*s: int) -> tuple[tuple[int, ...], ...]:
            return (s, (Bn, *s))

        _check_tensor("x0", x0, ((Bn, nx),))
        _check_tensor("A", A, shapes(nx, nx))
        _check_tensor("B", B, shapes(nx, nu))
        _check_tensor("Q", Q, shapes(nx, nx))
        _check_tensor("R", R, shapes(nu, nu))
        _check_psd("Q", Q, definite=False)
        _check_psd("R", R, definite=True)
        c = torch.zeros(nx, device=dev, dtype=dtype) if c is None else c
        goal = torch.zeros(nx, device=dev, dtype=dtype) if goal is None else goal
        _check_tensor("c", c, shapes(nx))
        _check_tensor("goal", goal, shapes(nx))
        if Qf is None:
            Qf = Q
        else:
            _check_tensor("Qf", Qf, shapes(nx, nx))
            _check_psd("Qf", Qf, definite=False)

        boxed = u_low is not None or u_high is not None
        if boxed:
            if u_low is None or u_high is None:
                raise ValueError("u_low/u_high: give both bounds or neither")
            u_low = torch.as_tensor(u_low, device=dev, dtype=dtype)
            u_high = torch.as_tensor(u_high, device=dev, dtype=dtype)
            u_low = u_low.expand(nu) if u_low.dim() == 0 else u_low
            u_high = u_high.expand(nu) if u_high.dim() == 0 else u_high
            _check_tensor("u_low", u_low, shapes(nu))
            _check_tensor("u_high", u_high, shapes(nu))
            if (u_low.detach() > u_high.detach()).any():
                raise ValueError("u_low: must be <= u_high componentwise")
        m = 0
        if G is not None or h is not None:
            if G is None or h is None:
                raise ValueError("G/h: give both state-constraint tensors or neither")
            if not isinstance(G, Tensor) or G.dim() not in (2, 3):
                raise ValueError("G: expected shape [m, nx] or [B, m, nx]")
            m = G.shape[-2]
            _check_tensor("G", G, shapes(m, nx))
            _check_tensor("h", h, shapes(m))

        jitter = self.config.psd_jitter
        eye = torch.eye(nx, device=dev, dtype=dtype)
        LQ = torch.linalg.cholesky(Q + jitter * eye).mT
        LQf = torch.linalg.cholesky(Qf + jitter * eye).mT
        LR = torch.linalg.cholesky(R).mT
        LQg = (LQ @ goal.unsqueeze(-1)).squeeze(-1)
        LQfg = (LQf @ goal.unsqueeze(-1)).squeeze(-1)
        params = [x0, A, B, c, LQ, LQg, LQf, LQfg, LR]
        if boxed:
            params += [u_low, u_high]
        if m:
            params += [G, h]
        # the QP's batch is x0's: expand parameters batched over a different size is an error
        # caught above; shared ones stay unbatched (cvxpylayers broadcasts them)
        cpu = [p.cpu() for p in params]
        layer = self._layer(nx, nu, boxed, m)
        # diffcp takes the derivative options only when a gradient is needed
        call_args: dict[str, Any] = {"n_jobs_forward": self.config.n_jobs}
        if torch.is_grad_enabled() and any(p.requires_grad for p in cpu):
            call_args.update(mode=self.config.diff_mode, n_jobs_backward=self.config.n_jobs)
        try:
            X, U = layer(*cpu, solver_args=call_args)
        except Exception as e:  # diffcp raises SolverError on infeasible / failed solves
            raise RuntimeError(
                f"ConvexMPC: the conic solver ({self.config.solver}) failed: {e}. "
                "Check that the state constraints G x <= h are feasible from x0."
            ) from e
        X, U = X.to(dev), U.to(dev)
        states, actions = X.transpose(0, 1), U.transpose(0, 1)  # [T+1, B, nx], [T, B, nu]
        cost = self.cost(states, actions, Q, R, goal, Qf)
        ones = torch.ones(Bn, dtype=torch.int64, device=dev)
        return PlanResult(
            actions=actions,
            states=states,
            cost=cost,
            converged=torch.ones(Bn, dtype=torch.bool, device=dev),
            iterations=ones,
            info={"solver": self.config.solver},
        )

    @staticmethod
    def cost(
        states: Tensor, actions: Tensor, Q: Tensor, R: Tensor, goal: Tensor, Qf: Tensor
    ) -> Tensor:
        """Cost of a plan (states ``[T+1, B, nx]``, actions ``[T, B, nu]``) -> ``[B]``."""
        e = states - goal

        def quad(v: Tensor, M: Tensor) -> Tensor:  # v [..., B, n], M [n, n] or [B, n, n]
            return torch.einsum("...bi,...bi->...b", v, (M @ v.unsqueeze(-1)).squeeze(-1))

        return 0.5 * (quad(e[:-1], Q).sum(0) + quad(actions, R).sum(0) + quad(e[-1], Qf))
