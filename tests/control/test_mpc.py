"""MPC forward: LQ problems against lqr and cvxpy (active bounds), pendulum against mpc.pytorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cvxpy_reference import cvxpy_lq
from diffctl.envs import make

from diffctl.control import (
    MPC,
    FunctionCost,
    LeastSquaresCost,
    LinearDynamics,
    MPCConfig,
    QuadCost,
    RewardCost,
    lqr,
)

torch.set_num_threads(1)
D = torch.float64
TIGHT = dict(u_tol=1e-12, max_iter=100)


def _lq_problem(seed: int, T: int = 6, B: int = 3, nx: int = 3, nu: int = 2):
    gen = torch.Generator().manual_seed(seed)
    n = nx + nu
    L = torch.randn(n, n, generator=gen, dtype=D)
    C = L @ L.T + 0.5 * torch.eye(n, dtype=D)
    c = torch.randn(T, B, n, generator=gen, dtype=D) * 2
    F = torch.randn(nx, n, generator=gen, dtype=D) * 0.6
    f = torch.randn(nx, generator=gen, dtype=D) * 0.1
    x0 = torch.randn(B, nx, generator=gen, dtype=D) * 2
    return x0, C, c, F, f


def test_unconstrained_equals_lqr():
    x0, C, c, F, f = _lq_problem(0)
    sol = lqr(x0, C, c, F, f, T=6)
    res = MPC(LinearDynamics(F, f), QuadCost(C, c), MPCConfig(horizon=6, **TIGHT)).plan(x0)
    assert bool(res.converged.all())
    torch.testing.assert_close(res.actions, sol.actions, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(res.states, sol.states, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(res.cost, sol.cost, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("seed", [1, 2])
def test_box_constrained_lq_equals_cvxpy(seed):
    x0, C, c, F, f = _lq_problem(seed)
    lo, hi = -0.4, 0.3
    cfg = MPCConfig(horizon=6, u_lower=lo, u_upper=hi, **TIGHT)
    res = MPC(LinearDynamics(F, f), QuadCost(C, c), cfg).plan(x0)
    assert bool(res.converged.all())
    active = (res.actions == lo) | (res.actions == hi)
    assert active.any() and (~active).any()  # a genuinely box-constrained problem
    for b in range(x0.shape[0]):
        _, u_ref, val = cvxpy_lq(
            x0[b].numpy(), C.numpy(), c[:, b].numpy(), F.numpy(), f.numpy(), lo=lo, hi=hi
        )
        np.testing.assert_allclose(res.actions[:, b].numpy(), u_ref, atol=1e-4)
        assert abs(res.cost[b].item() - val) <= 1e-4 * (1 + abs(val))


def test_time_varying_dynamics_and_terminal_cost_equal_lqr():
    gen = torch.Generator().manual_seed(3)
    T, B, nx, nu = 5, 2, 2, 1
    F = torch.randn(T, B, nx, nx + nu, generator=gen, dtype=D) * 0.7
    f = torch.randn(T, 1, nx, generator=gen, dtype=D) * 0.1
    Q, R = torch.eye(nx, dtype=D), 0.1 * torch.eye(nu, dtype=D)
    goal = torch.tensor([1.0, -0.5], dtype=D)
    cost = QuadCost.tracking(Q, R, goal, Q_final=10 * Q)
    x0 = torch.randn(B, nx, generator=gen, dtype=D)
    res = MPC(LinearDynamics(F, f), cost, MPCConfig(horizon=T, **TIGHT)).plan(x0)
    sol = lqr(x0, cost.C, cost.c, F, f, C_final=cost.C_final, c_final=cost.c_final, T=T)
    torch.testing.assert_close(res.actions, sol.actions, atol=1e-9, rtol=1e-9)


def test_gauss_newton_and_exact_hessian_reach_the_same_plan():
    env = make("pendulum", dtype=D)

    def residual(x, u):
        return torch.stack([x[:, 0] - math.pi, 0.3 * x[:, 1], 0.1 * u[:, 0]], -1)

    x0 = torch.tensor([[0.3, 0.0], [-0.5, 1.0]], dtype=D)
    out = {}
    for mode in ("exact", "gauss-newton"):
        cfg = MPCConfig(horizon=15, hessian=mode, **TIGHT)
        out[mode] = MPC(env, LeastSquaresCost(residual), cfg).plan(x0)
        assert bool(out[mode].converged.all())
    torch.testing.assert_close(out["exact"].actions, out["gauss-newton"].actions, atol=1e-6, rtol=0)
    # a plain callable cost with the same objective gives the same plan too
    fc = FunctionCost(lambda x, u: 0.5 * residual(x, u).pow(2).sum(-1))
    res = MPC(env, fc, MPCConfig(horizon=15, **TIGHT)).plan(x0)
    torch.testing.assert_close(res.actions, out["exact"].actions, atol=1e-6, rtol=0)


def test_soft_state_constraint_is_respected_approximately():
    # double integrator driven to x=2 but with a soft bound x <= 1
    F = torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1]], dtype=D)
    cost = QuadCost.tracking(
        torch.diag(torch.tensor([1.0, 0.1], dtype=D)),
        0.01 * torch.eye(1, dtype=D),
        torch.tensor([2.0, 0.0], dtype=D),
    )
    x0 = torch.zeros(1, 2, dtype=D)
    free = MPC(LinearDynamics(F), cost, MPCConfig(horizon=40, **TIGHT)).plan(x0)
    cfg = MPCConfig(horizon=40, state_upper=(1.0, math.inf), state_penalty=1e4, **TIGHT)
    soft = MPC(LinearDynamics(F), cost, cfg).plan(x0)
    assert free.states[:, 0, 0].max() > 1.5
    assert soft.states[:, 0, 0].max() < 1.01
    assert bool(soft.converged.all())


def test_warm_start_from_solution_converges_immediately():
    env = make("pendulum", dtype=D)
    mpc = MPC(env, RewardCost(env), MPCConfig(horizon=20, u_tol=1e-8))
    x0 = torch.tensor([[2.0, 0.0]], dtype=D)
    first = mpc.plan(x0)
    again = mpc.plan(x0, warm_start=first.actions)
    assert bool(first.converged.all()) and int(again.iterations[0]) <= 2
    torch.testing.assert_close(again.actions, first.actions, atol=1e-7, rtol=0)


def test_non_convergence_is_reported():
    env = make("pendulum", dtype=D)
    mpc = MPC(env, RewardCost(env), MPCConfig(horizon=30, max_iter=2))
    res = mpc.plan(torch.tensor([[1.0, 0.5]], dtype=D))
    assert not bool(res.converged.any())
    assert int(res.iterations[0]) == 2
    assert len(res.info["history"]) == 2


def _pendulum_dx_problem(T: int, B: int, seed: int):
    mpc_lib = pytest.importorskip("mpc.mpc")
    from mpc.env_dx.pendulum import PendulumDx

    dx = PendulumDx(simple=True)
    dx.params = dx.params.to(D)
    gen = torch.Generator().manual_seed(seed)
    th = (torch.rand(B, generator=gen, dtype=D) * 2 - 1) * math.pi
    thdot = torch.rand(B, generator=gen, dtype=D) * 2 - 1
    x0 = torch.stack([th.cos(), th.sin(), thdot], -1)
    q = torch.cat([dx.goal_weights.to(D), dx.ctrl_penalty * torch.ones(1, dtype=D)])
    px = -torch.sqrt(dx.goal_weights.to(D)) * dx.goal_state.to(D)
    p = torch.cat([px, torch.zeros(1, dtype=D)])
    return mpc_lib, dx, x0, torch.diag(q), p


def test_pendulum_cost_not_worse_than_mpc_pytorch():
    T, B = 20, 8
    mpc_lib, dx, x0, Q, p = _pendulum_dx_problem(T, B, seed=0)
    peer = mpc_lib.MPC(
        3,
        1,
        T,
        u_lower=-2.0,
        u_upper=2.0,
        lqr_iter=50,
        verbose=-1,
        exit_unconverged=False,
        detach_unconverged=False,
        linesearch_decay=dx.linesearch_decay,
        max_linesearch_iter=dx.max_linesearch_iter,
        grad_method=mpc_lib.GradMethods.AUTO_DIFF,
        eps=1e-2,
    )
    Cp = Q.expand(T, B, 4, 4)
    cp_ = p.expand(T, B, 4)
    _, u_peer, _ = peer(x0, mpc_lib.QuadCost(Cp, cp_), dx)
    ours = MPC(dx, QuadCost(Q, p), MPCConfig(horizon=T, u_lower=-2.0, u_upper=2.0, max_iter=50))
    res = ours.plan(x0)
    # evaluate the peer's actions under our rollout and cost (same problem, same numbers)
    cost = QuadCost(Q, p)
    xs = ours._rollout(x0, u_peer.detach())
    peer_cost = cost.total(xs, u_peer.detach())
    assert (res.actions.abs() <= 2.0).all()
    assert bool((res.cost <= peer_cost + 1e-3).all()), (res.cost, peer_cost)


def test_analytic_jacobians_are_used_when_provided():
    env = make("pendulum", dtype=D)
    calls = []

    class WithJac:
        def __call__(self, x, u):
            return env._dynamics(x, u)

        def jacobians(self, x, u):
            calls.append(x.shape[0])
            th, dt = x[:, 0], env.spec.dt
            a = 15.0 * torch.cos(th) * dt  # d thdot' / d th (g = 10, l = 1; no clamp active)
            A = torch.zeros(x.shape[0], 2, 2, dtype=x.dtype)
            A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1] = 1 + a * dt, dt, a, 1.0
            B = torch.zeros(x.shape[0], 2, 1, dtype=x.dtype)
            B[:, 0, 0], B[:, 1, 0] = 3.0 * dt * dt, 3.0 * dt
            return A, B

    x0 = torch.tensor([[0.5, 0.0], [-0.3, 0.2]], dtype=D)
    cfg = MPCConfig(horizon=10, u_lower=-1.0, u_upper=1.0, **TIGHT)
    ours = MPC(WithJac(), RewardCost(env), cfg, nu=1).plan(x0)
    ref = MPC(env, RewardCost(env), cfg).plan(x0)
    assert calls and calls[0] == 10 * 2
    torch.testing.assert_close(ours.actions, ref.actions, atol=1e-8, rtol=0)
