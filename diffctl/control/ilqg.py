"""iLQG on a MuJoCo model with finite-difference Jacobians: MJPC's gradient planner for the
humanoid stand.

``ILQG`` is the iterative LQR of Li & Todorov (2004, "Iterative Linear Quadratic Regulator
Design for Nonlinear Biological Movement Systems") in the receding-horizon form of Tassa, Erez
& Todorov (2012, "Synthesis and Stabilization of Complex Behaviors through Online Trajectory
Optimization"; MJPC's iLQG), with the box-constrained backward pass of Tassa, Mansard & Todorov
(2014, "Control-Limited Differential Dynamic Programming"). Each plan:

1. Roll the warm-started controls ``u_0..u_{T-1}`` out open-loop from the measured state on the
   planning model (a copy of the env's model with one Euler step of ``env.spec.dt`` per control
   step, as ``PredictiveSampling``'s default planning model: the true model's RK4 at 0.015 s is
   unstable), giving ``x_0..x_T``.
2. Linearise: ``dx_{t+1} = A_t dx_t + B_t du_t`` by ``mujoco.mjd_transitionFD`` (forward
   differences, in MuJoCo's tangent space: ``dx = [dq (nv), dv (nv)]``, the quaternion
   perturbed by a rotation), at every ``jacobian_stride``-th knot (the knots between reuse the
   last one's ``A, B``); the same call gives the sensor Jacobians ``C_t`` the cost reads.
3. Quadratise the cost by Gauss-Newton (``StandCostGN``): the stand cost is ``rho(r(x))``, a
   convex function ``rho`` of low-dimensional features ``r`` (torso roll and pitch, height,
   centre of mass, its velocity, the feet, the coordinates), so ``l_x = J' g`` and
   ``l_xx = J' H J`` with ``J = dr/dx`` (central differences along the tangent space, the
   sensors moved along ``C_t``), ``g = rho'`` by autograd and ``H = rho''`` by central
   differences of ``g``; ``H`` is positive semi-definite, so ``l_xx`` is.
4. Backward pass (the Riccati recursion of DDP without the dynamics' second derivatives):
   ``Q_u = l_u + B'V_x``, ``Q_uu = l_uu + B'V_xx B + mu I``, ``Q_ux = B'V_xx A``; the step is
   ``k = argmin_{lo <= u+k <= hi} k'Q_u + k'Q_uu k / 2`` (unconstrained Cholesky solve when it
   stays inside the box, else projected Newton, Tassa 2014 Alg. 3), the gain
   ``K = -Q_uu,ff^{-1} Q_ux,f`` on the free controls (zero rows for the clamped ones), and
   ``V_x, V_xx`` from the quadratic model at ``(k, K)``.
5. Forward pass: closed-loop rollouts ``u_t = clip(u_t + alpha k_t + K_t (x_t (-) xbar_t))`` for
   ``alpha`` in ``line_search`` until the cost decreases; Levenberg-Marquardt ``mu`` shrinks
   after a success and grows tenfold after a failure (or a non-positive-definite ``Q_uu``).

Receding horizon (``act``): re-plan every ``replan_every`` control steps from the plan shifted by
the steps elapsed (warm start); between re-plans apply the nominal plus the feedback
``K_t (x (-) xbar_t)`` around the plan's nominal trajectory (iLQG's local policy).

The cost is ``HumanoidStandCost`` itself (the torch function ``PredictiveSampling`` plans with),
evaluated on each state's own sensors (``mj_forward`` at ``x_t``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .humanoid import HumanoidStandCost, StandCostConfig

__all__ = ["ILQGConfig", "ILQG", "StandCostGN"]


@dataclass(frozen=True)
class ILQGConfig:
    """Settings of ``ILQG`` (defaults: the humanoid stand on one CPU thread).

    The defaults come from the balance run (``diffctl.control.humanoid.balance``; ``diffctl bench
    humanoid --planners ilqg`` measures them). In scratch runs, re-planning every 2nd step with
    the feedback gains in between kept 0 of 3 starts (they sagged below 1.0 m after 3-6 pushes),
    and 1 of 2 with 2 iterations or with a 24-step horizon; ``jacobian_stride=2`` halved the
    linearisation at no measured loss (3 of 3).

    Attributes:
        horizon: planning horizon in control steps (16 x 0.015 s = 0.24 s).
        iterations: iLQR iterations per plan (each: linearise, backward, line search).
        replan_every: control steps between re-plans in ``act``.
        jacobian_stride: linearise at every ``jacobian_stride``-th knot.
        fd_eps: finite-difference step of ``mjd_transitionFD``.
        mu_init, mu_min, mu_max: Levenberg-Marquardt regularisation of ``Q_uu``.
        line_search: step sizes tried in order.
        feedback: between re-plans, add ``K_t (x (-) xbar_t)`` to the nominal control.
    """

    horizon: int = 16
    iterations: int = 1
    replan_every: int = 1
    jacobian_stride: int = 2
    fd_eps: float = 1e-6
    mu_init: float = 1e-2
    mu_min: float = 1e-6
    mu_max: float = 1e6
    line_search: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1)
    feedback: bool = True

    def __post_init__(self) -> None:
        for name in ("horizon", "iterations", "replan_every", "jacobian_stride"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if not self.line_search or any(not 0 < a <= 1 for a in self.line_search):
            raise ValueError(f"line_search: expected steps in (0, 1], got {self.line_search!r}")
        if not 0 < self.mu_min <= self.mu_init <= self.mu_max:
            raise ValueError("mu_min <= mu_init <= mu_max, all > 0, expected")


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    w2, x2, y2, z2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        -1,
    )


class StandCostGN:
    """``HumanoidStandCost`` on MuJoCo trajectories (positions ``Q [T+1, nq]``, velocities
    ``V [T+1, nv]``, sensors ``S [T+1, ns]`` at each state, controls ``U [T, nu]``) with its
    Gauss-Newton quadratisation in MuJoCo's tangent space.

    The state cost is ``rho(r(x))``: ``r = cost.features(x)`` and ``rho = cost.state_cost``,
    convex in ``r``. Gauss-Newton keeps ``rho``'s curvature and drops the features':
    ``l_x = J' g``, ``l_xx = J' H J`` with ``J = dr/dx`` by central differences of the feature
    map along the tangent space (the quaternion rotated, the sensors moved along their
    Jacobians ``C``), ``g = drho/dr`` by autograd and ``H`` by central differences of ``g``
    (all perturbations of all knots in one call each). The control cost goes the same way.

    Args:
        cost: the torch stand cost (its sensors index the planning model's ``sensordata``).
        nu: controls.
        fd_eps: the central differences' step (in ``x``'s and ``r``'s units).
    """

    def __init__(self, cost: HumanoidStandCost, nu: int, fd_eps: float = 1e-5) -> None:
        self.cost, self.nq, self.nv, self.nu, self.eps = cost, cost.nq, cost.nv, nu, fd_eps

    def _states(self, Q: np.ndarray, V: np.ndarray, S: np.ndarray) -> Tensor:
        return torch.from_numpy(np.concatenate([Q, V, S], axis=-1))

    def value(self, Q: np.ndarray, V: np.ndarray, S: np.ndarray, U: np.ndarray) -> float:
        x = self._states(Q, V, S)[None]
        u = torch.from_numpy(np.concatenate([U, np.zeros((1, self.nu))]))[None]  # none at T
        return float(self.cost(x, u))

    def _grad_hess(self, f: Any, r: Tensor) -> tuple[Tensor, Tensor]:
        """``(df/dr [K, F], d2f/dr2 [K, F, F])`` of ``f(r [K, F]) -> [K]``: the gradient by
        autograd, the Hessian by central differences of it."""
        k, n = r.shape
        e = self.eps * torch.eye(n, dtype=r.dtype)
        with torch.inference_mode(False), torch.enable_grad():  # ``balance`` runs in inference
            rows = torch.cat([r[:, None], r[:, None] + e, r[:, None] - e], 1).requires_grad_()
            (grad,) = torch.autograd.grad(f(rows).sum(), rows)
        hess = (grad[:, 1 : n + 1] - grad[:, n + 1 :]) / (2 * self.eps)  # [K, F (column), F]
        return grad[:, 0], 0.5 * (hess + hess.transpose(1, 2))

    def quadratize(
        self, Q: np.ndarray, V: np.ndarray, S: np.ndarray, U: np.ndarray, C: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(l_x [T+1, 2nv], l_xx [T+1, 2nv, 2nv], l_u [T, nu], l_uu [nu, nu])``; ``C [T+1,
        ns, 2nv]`` the sensor Jacobians."""
        nv, e = self.nv, self.eps
        n = 2 * nv
        # the states moved by +-e along each tangent direction: [T+1, 2, n, nx]
        Qp = np.repeat(np.repeat(Q[:, None, None], 2, 1), n, 2)
        Vp = np.repeat(np.repeat(V[:, None, None], 2, 1), n, 2)
        Sp = (
            S[:, None, None]
            + np.stack([e, -e])[None, :, None, None] * C.transpose(0, 2, 1)[:, None]
        )
        for sign, h in ((0, e), (1, -e)):
            for i in range(nv):
                if 3 <= i < 6:  # the free joint's rotation about its own axis i - 3
                    dq = np.zeros(4)
                    dq[0], dq[i - 2] = 1.0, 0.5 * h
                    Qp[:, sign, i, 3:7] = _qmul(Q[:, 3:7], dq)
                else:
                    Qp[:, sign, i, i + (i >= 6)] += h
                Vp[:, sign, nv + i, i] += h
        r0 = self.cost.features(self._states(Q, V, S))
        rp = self.cost.features(self._states(Qp, Vp, Sp))
        J = ((rp[:, 0] - rp[:, 1]) / (2 * e)).transpose(1, 2)  # [T+1, F, n]
        g, H = self._grad_hess(self.cost.state_cost, r0)
        w = torch.ones(len(g), 1, 1, dtype=g.dtype)
        w[-1] = self.cost.config.terminal
        Jt = w * J.transpose(1, 2)
        lx = (Jt @ g[:, :, None])[:, :, 0]
        lxx = Jt @ H @ J
        control = self.cost.config.control
        gu, Hu = self._grad_hess(lambda u: control * u.square().sum(-1), torch.from_numpy(U))
        return lx.numpy(), lxx.numpy(), gu.numpy(), Hu[0].numpy()


def _box_qp(
    H: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray, x0: np.ndarray, iters: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """``argmin 0.5 x'Hx + g'x`` over ``lo <= x <= hi`` by projected Newton (Tassa et al. 2014,
    Alg. 3), ``H`` positive definite; returns ``x`` and the mask of free coordinates."""

    def f(z: np.ndarray) -> float:
        return float(0.5 * z @ H @ z + g @ z)

    x = np.clip(x0, lo, hi)
    for _ in range(iters):
        grad = g + H @ x
        free = ~(((x <= lo) & (grad > 0)) | ((x >= hi) & (grad < 0)))
        if not free.any():
            break
        L = np.linalg.cholesky(H[np.ix_(free, free)])
        step = np.zeros_like(x)
        step[free] = -np.linalg.solve(L.T, np.linalg.solve(L, grad[free]))
        if np.abs(step).max() < 1e-8:
            break
        fx, a = f(x), 1.0
        xn = x
        while a > 1e-3:
            xn = np.clip(x + a * step, lo, hi)
            if f(xn) < fx + 0.1 * grad @ (xn - x):
                break
            a *= 0.5
        x = xn
    grad = g + H @ x
    return x, ~(((x <= lo) & (grad > 0)) | ((x >= hi) & (grad < 0)))


class ILQG:
    """iLQG MPC on a ``MujocoEnv``'s model (see the module docstring); ``act``, ``reset``,
    ``history`` and ``close`` as ``PredictiveSampling``, so ``balance`` drives either.

    Args:
        env: a ``MujocoEnv`` with the stand sensors (``humanoid_env()``).
        cost: ``StandCostConfig`` of the stand cost (default weights if ``None``).
        config: ``ILQGConfig``.
    """

    def __init__(
        self, env: Any, cost: StandCostConfig | None = None, config: ILQGConfig | None = None
    ) -> None:
        import mujoco

        self.mujoco = mujoco
        self.config = cfg = config or ILQGConfig()
        if not isinstance(cfg, ILQGConfig):
            raise TypeError(f"config: expected an ILQGConfig, got {type(cfg).__name__}")
        m = copy.copy(env.model)
        m.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER
        m.opt.timestep = env.spec.dt
        if m.na:
            raise ValueError("ILQG: models with actuator activations are not supported")
        self.env, self.model, self.data = env, m, mujoco.MjData(m)
        self.nq, self.nv, self.nu = m.nq, m.nv, m.nu
        self.lo = m.actuator_ctrlrange[:, 0].copy()
        self.hi = m.actuator_ctrlrange[:, 1].copy()
        self.cost = StandCostGN(HumanoidStandCost(env, cost), self.nu)
        self.history: list[dict[str, Any]] = []
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Zero warm start (``seed`` is accepted for ``balance``: the planner is
        deterministic)."""
        self.us = np.zeros((self.config.horizon, self.nu))
        self.mu = self.config.mu_init
        self.steps = 0
        self.since_plan = 0
        self.nominal: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.gains: np.ndarray | None = None

    def close(self) -> None:
        """Nothing to release (one ``MjData``)."""

    def _sync_params(self) -> None:
        """The env model's physical parameters (what ``env.params`` writes) into the copy."""
        src = self.env.model
        for name in ("body_mass", "dof_damping", "actuator_gear", "geom_friction"):
            getattr(self.model, name)[:] = getattr(src, name)

    # ------------------------------------------------------------------ model
    def _rollout(
        self,
        qpos: np.ndarray,
        qvel: np.ndarray,
        us: np.ndarray,
        ref: tuple[np.ndarray, np.ndarray] | None = None,
        K: np.ndarray | None = None,
        k: np.ndarray | None = None,
        alpha: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        mj, m, d, T = self.mujoco, self.model, self.data, self.config.horizon
        Q, V = np.empty((T + 1, self.nq)), np.empty((T + 1, self.nv))
        S, U = np.empty((T + 1, m.nsensordata)), np.empty((T, self.nu))
        d.qpos[:], d.qvel[:] = qpos, qvel
        d.qacc_warmstart[:] = 0
        dx = np.empty(2 * self.nv)
        for t in range(T):
            u = us[t]
            if ref is not None:
                mj.mj_differentiatePos(m, dx[: self.nv], 1.0, ref[0][t], d.qpos)
                dx[self.nv :] = d.qvel - ref[1][t]
                u = u + alpha * k[t] + K[t] @ dx  # type: ignore[index,operator]
            U[t] = np.clip(u, self.lo, self.hi)
            Q[t], V[t] = d.qpos, d.qvel
            d.ctrl[:] = U[t]
            mj.mj_step(m, d)
            S[t] = d.sensordata  # computed at Q[t], V[t] before the integration
            if not np.isfinite(d.qpos).all():
                return None
        Q[T], V[T] = d.qpos, d.qvel
        mj.mj_forward(m, d)
        S[T] = d.sensordata
        return Q, V, S, U

    def _linearize(
        self, Q: np.ndarray, V: np.ndarray, U: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mj, m, d, T = self.mujoco, self.model, self.data, self.config.horizon
        n, stride = 2 * self.nv, self.config.jacobian_stride
        A, B = np.zeros((T, n, n)), np.zeros((T, n, self.nu))
        C, D = np.zeros((T + 1, m.nsensordata, n)), np.zeros((m.nsensordata, self.nu))
        for t in [*range(0, T, stride), T]:
            d.qpos[:], d.qvel[:], d.ctrl[:] = Q[t], V[t], U[min(t, T - 1)]
            d.qacc_warmstart[:] = 0
            if t < T:
                mj.mjd_transitionFD(m, d, self.config.fd_eps, 0, A[t], B[t], C[t], D)
            else:
                mj.mjd_transitionFD(m, d, self.config.fd_eps, 0, None, None, C[t], None)
        for t in range(T):
            if t % stride:
                s = t - t % stride
                A[t], B[t], C[t] = A[s], B[s], C[s]
        return A, B, C

    def _backward(
        self,
        A: np.ndarray,
        B: np.ndarray,
        lx: np.ndarray,
        lxx: np.ndarray,
        lu: np.ndarray,
        luu: np.ndarray,
        U: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        T, nu, n = self.config.horizon, self.nu, A.shape[1]
        eye = np.eye(nu)
        while self.mu <= self.config.mu_max:
            Vx, Vxx = lx[T].copy(), lxx[T].copy()
            Ks, ks = np.zeros((T, nu, n)), np.zeros((T, nu))
            try:
                for t in range(T - 1, -1, -1):
                    At, Bt = A[t], B[t]
                    VB = Vxx @ Bt
                    Qx, Qu = lx[t] + At.T @ Vx, lu[t] + Bt.T @ Vx
                    Qxx, Quu, Qux = lxx[t] + At.T @ Vxx @ At, luu + Bt.T @ VB, VB.T @ At
                    Quu_r = Quu + self.mu * eye
                    L = np.linalg.cholesky(Quu_r)
                    sol = -np.linalg.solve(L.T, np.linalg.solve(L, np.c_[Qu, Qux]))
                    k, K = sol[:, 0], sol[:, 1:]
                    if (U[t] + k > self.hi).any() or (U[t] + k < self.lo).any():
                        k0 = ks[t + 1] if t + 1 < T else np.zeros(nu)
                        k, free = _box_qp(Quu_r, Qu, self.lo - U[t], self.hi - U[t], k0)
                        K = np.zeros((nu, n))
                        if free.any():
                            Lf = np.linalg.cholesky(Quu_r[np.ix_(free, free)])
                            K[free] = -np.linalg.solve(Lf.T, np.linalg.solve(Lf, Qux[free]))
                    Ks[t], ks[t] = K, k
                    Vx = Qx + K.T @ Quu @ k + K.T @ Qu + Qux.T @ k
                    Vxx = Qxx + K.T @ Quu @ K + K.T @ Qux + Qux.T @ K
                    Vxx = 0.5 * (Vxx + Vxx.T)
                return Ks, ks
            except np.linalg.LinAlgError:
                self.mu *= 10
        return None

    def plan_from(self, qpos: np.ndarray, qvel: np.ndarray) -> float:
        """Improve the warm-started plan from ``(qpos, qvel)`` (``config.iterations`` iLQR
        iterations); returns the plan's cost."""
        cfg = self.config
        self._sync_params()
        out = self._rollout(qpos, qvel, self.us)
        if out is None:  # the warm start diverged: restart from zero controls
            out = self._rollout(qpos, qvel, np.zeros_like(self.us))
        assert out is not None
        Q, V, S, U = out
        J = self.cost.value(Q, V, S, U)
        K = np.zeros((cfg.horizon, self.nu, 2 * self.nv))
        for _ in range(cfg.iterations):
            A, B, C = self._linearize(Q, V, U)
            step = self._backward(A, B, *self.cost.quadratize(Q, V, S, U, C), U)
            if step is None:
                self.mu = cfg.mu_max
                break
            K, k = step
            accepted = None
            for alpha in cfg.line_search:
                new = self._rollout(qpos, qvel, U, (Q, V), K, k, alpha)
                if new is not None and (Jn := self.cost.value(*new)) < J:
                    accepted = (new, Jn)
                    break
            if accepted is None:
                self.mu = min(10 * self.mu, cfg.mu_max)
                break
            (Q, V, S, U), J = accepted
            self.mu = max(self.mu / 3, cfg.mu_min)
        self.us, self.nominal, self.gains = U, (Q, V, U), K
        return J

    def act(self, x: Tensor) -> Tensor:
        """The control ``[1, nu]`` for state ``x [1, nx]`` (re-plans every ``replan_every``
        calls; in between, the nominal plus the feedback gains)."""
        t0 = time.perf_counter()
        cfg = self.config
        xs = x.detach().reshape(-1).to("cpu", torch.float64).numpy()
        qpos, qvel = xs[: self.nq], xs[self.nq : self.nq + self.nv]
        planned = self.steps % cfg.replan_every == 0 or self.nominal is None
        if planned:
            cost = self.plan_from(qpos, qvel)
            self.since_plan = 0
            u = self.us[0]
        else:
            self.since_plan += 1
            j = self.since_plan
            Q, V, U = self.nominal  # type: ignore[misc]
            u = U[j]
            if cfg.feedback and self.gains is not None:
                dx = np.empty(2 * self.nv)
                self.mujoco.mj_differentiatePos(self.model, dx[: self.nv], 1.0, Q[j], qpos)
                dx[self.nv :] = qvel - V[j]
                u = np.clip(u + self.gains[j] @ dx, self.lo, self.hi)
            cost = float("nan")
        self.steps += 1
        if self.steps % cfg.replan_every == 0:  # warm start: the plan shifted
            s = cfg.replan_every
            self.us = np.concatenate([self.us[s:], np.repeat(self.us[-1:], s, 0)])
        self.history.append(
            {
                "step": len(self.history),
                "solve_time": time.perf_counter() - t0,
                "planned": planned,
                "cost": cost,
                "mu": self.mu,
            }
        )
        return torch.as_tensor(u, dtype=x.dtype, device=x.device).reshape(1, -1)
