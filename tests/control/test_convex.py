"""ConvexMPC: against a dense KKT solve, a direct cvxpy solve, and active-set gradients."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

from diffctl.control import (
    MPC,
    ConvexMPC,
    ConvexMPCConfig,
    LinearDynamics,
    MPCConfig,
    QuadCost,
    lqr,
)

D = torch.float64
# cvxpylayers passes torch tensors to np.array (numpy 2 deprecation inside the dependency)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _system(nx=4, nu=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.eye(nx, dtype=D) + 0.1 * torch.randn(nx, nx, generator=g, dtype=D)
    B = torch.randn(nx, nu, generator=g, dtype=D)
    c = 0.05 * torch.randn(nx, generator=g, dtype=D)
    M = torch.randn(nx, nx, generator=g, dtype=D)
    Q = M @ M.T / nx + 0.5 * torch.eye(nx, dtype=D)
    R = 0.1 * torch.eye(nu, dtype=D)
    goal = 0.3 * torch.randn(nx, generator=g, dtype=D)
    return A, B, c, Q, R, goal


def _rollout(x0, A, B, c, U):
    xs = [x0]
    for t in range(U.shape[0]):
        xs.append(A @ xs[-1] + B @ U[t] + c)
    return torch.stack(xs)


def _cost(X, U, Q, R, goal, Qf):
    e = X - goal
    return 0.5 * (
        torch.einsum("ti,ij,tj->", e[:-1], Q, e[:-1])
        + torch.einsum("ti,ij,tj->", U, R, U)
        + e[-1] @ Qf @ e[-1]
    )


def _kkt_plan(x0, A, B, c, Q, R, goal, Qf, T, fixed=None, fixed_vals=None):
    """Exact minimiser of the (condensed) QP with some controls fixed, differentiable."""
    nu = B.shape[1]

    def J(u):
        U = u.reshape(T, nu)
        return _cost(_rollout(x0, A, B, c, U), U, Q, R, goal, Qf)

    n = T * nu
    fixed = torch.zeros(n, dtype=torch.bool) if fixed is None else fixed.reshape(n)
    base = torch.zeros(n, dtype=D) if fixed_vals is None else fixed_vals.reshape(n) * fixed
    u0 = base.detach().clone().requires_grad_()
    (g0,) = torch.autograd.grad(J(u0), u0, create_graph=True)
    H = torch.stack([torch.autograd.grad(g0[i], u0, create_graph=True)[0] for i in range(n)])
    free = ~fixed
    u = base.detach().clone()
    u = u.masked_scatter(free, base[free] - torch.linalg.solve(H[free][:, free], g0[free]))
    return u.reshape(T, nu)


def test_unconstrained_equals_kkt_solution():
    A, B, c, Q, R, goal = _system()
    T = 12
    x0 = torch.tensor([[1.0, -2.0, 0.5, 0.3], [0.0, 1.0, -1.0, 2.0]], dtype=D)
    layer = ConvexMPC(ConvexMPCConfig(horizon=T))
    res = layer(x0, A, B, Q, R, c=c, goal=goal)
    assert res.actions.shape == (T, 2, 2) and res.states.shape == (T + 1, 2, 4)
    for b in range(2):
        U = _kkt_plan(x0[b], A, B, c, Q, R, goal, Q, T)
        torch.testing.assert_close(res.actions[:, b], U, atol=1e-5, rtol=1e-5)
        X = _rollout(x0[b], A, B, c, U)
        torch.testing.assert_close(res.states[:, b], X, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(res.cost[b], _cost(X, U, Q, R, goal, Q), atol=1e-5, rtol=1e-5)
    assert res.converged.all()


def test_box_bounds_hold_and_match_direct_cvxpy():
    """nx=4, nu=2, T=30, |u| <= 1 (the issue's problem): bounds hold to 1e-6."""
    A, B, c, Q, R, goal = _system()
    T = 30
    g = torch.Generator().manual_seed(1)
    x0 = 4.0 * torch.randn(3, 4, generator=g, dtype=D)
    res = ConvexMPC(ConvexMPCConfig(horizon=T))(x0, A, B, Q, R, c=c, u_low=-1.0, u_high=1.0)
    assert res.actions.abs().max() <= 1.0 + 1e-6
    assert (res.actions.abs() > 1.0 - 1e-6).any()  # bounds are active
    for b in range(3):
        X, U = cp.Variable((T + 1, 4)), cp.Variable((T, 2))
        An, Bn, cn, Qn, Rn = (t.numpy() for t in (A, B, c, Q, R))
        cons = [X[0] == x0[b].numpy(), cp.abs(U) <= 1]
        cons += [X[t + 1] == An @ X[t] + Bn @ U[t] + cn for t in range(T)]
        obj = sum(cp.quad_form(X[t], Qn) + cp.quad_form(U[t], Rn) for t in range(1, T))
        obj += cp.quad_form(U[0], Rn) + cp.quad_form(X[T], Qn)
        tight = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
        cp.Problem(cp.Minimize(0.5 * obj), cons).solve(solver=cp.CLARABEL, **tight)
        np.testing.assert_allclose(res.actions[:, b].numpy(), U.value, atol=1e-5)
        np.testing.assert_allclose(res.states[:, b].numpy(), X.value, atol=1e-5)


def test_gradients_with_active_bounds_match_active_set_kkt():
    A, B, c, Q, R, goal = _system(seed=3)
    T = 8
    x0 = torch.tensor([2.5, -1.0, 1.5, 0.5], dtype=D)
    layer = ConvexMPC(ConvexMPCConfig(horizon=T))
    w = torch.randn(T, 2, generator=torch.Generator().manual_seed(5), dtype=D)

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in (x0, A, B, Q, goal)]
        U = fn(*leaves)
        return torch.autograd.grad((U * w).sum(), leaves)

    res = layer(x0, A, B, Q, R, c=c, goal=goal, u_low=-0.5, u_high=0.5)
    U0 = res.actions[:, 0]
    active = (U0.abs() > 0.5 - 1e-7).detach()
    assert active.any() and (~active).any()
    ours = grads(
        lambda x, A_, B_, Q_, g_: layer(
            x, A_, B_, Q_, R, c=c, goal=g_, u_low=-0.5, u_high=0.5
        ).actions[:, 0]
    )
    ref = grads(
        lambda x, A_, B_, Q_, g_: _kkt_plan(
            x, A_, B_, c, Q_, R, g_, Q_, T, active, torch.sign(U0) * 0.5
        )
    )
    for name, a, b in zip(("x0", "A", "B", "Q", "goal"), ours, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_equals_lqr_when_unconstrained():
    A, B, c, Q, R, goal = _system(seed=4)
    T = 15
    x0 = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=D)
    res = ConvexMPC(ConvexMPCConfig(horizon=T))(x0, A, B, Q, R, c=c, goal=goal)
    C = torch.block_diag(Q, R)
    cvec = torch.cat([-Q @ goal, torch.zeros(2, dtype=D)])
    ref = lqr(x0, C, cvec, torch.cat([A, B], 1), c, C_final=Q, c_final=-Q @ goal, T=T)
    torch.testing.assert_close(res.actions, ref.actions, atol=1e-5, rtol=0)
    torch.testing.assert_close(res.states, ref.states, atol=1e-5, rtol=0)


def test_equals_box_ddp_mpc_forward_and_gradients():
    """Same plan as our box-DDP MPC with active bounds (1e-4); gradients agree (1e-4)."""
    A, B, c, Q, R, goal = _system(seed=5)
    T = 10
    x0 = 3 * torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=D)
    w = torch.randn(T, 3, 2, generator=torch.Generator().manual_seed(2), dtype=D)

    def grads(solve):
        xl, Al = x0.clone().requires_grad_(), A.clone().requires_grad_()
        u = solve(xl, Al)
        return (u.detach(), *torch.autograd.grad((u * w).sum(), (xl, Al)))

    ours = grads(
        lambda x, A_: (
            ConvexMPC(ConvexMPCConfig(horizon=T))(
                x, A_, B, Q, R, c=c, goal=goal, u_low=-0.5, u_high=0.5
            ).actions
        )
    )
    cfg = MPCConfig(horizon=T, u_lower=-0.5, u_upper=0.5)
    cost = QuadCost.tracking(Q, R, goal, Q_final=Q)
    ref = grads(
        lambda x, A_: MPC(LinearDynamics(torch.cat([A_, B], 1), c), cost, cfg).plan(x).actions
    )
    assert (ours[0].abs() > 0.5 - 1e-6).any()
    for name, a, b in zip(("actions", "x0", "A"), ours, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_state_constraints_hold():
    A, B, c, Q, R, goal = _system(seed=2)
    T = 10
    x0 = torch.tensor([[1.0, 1.0, 1.0, 1.0]], dtype=D)
    G = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=D)
    h = torch.tensor([0.8], dtype=D)
    layer = ConvexMPC(ConvexMPCConfig(horizon=T))
    free = layer(x0, A, B, Q, R, goal=goal + torch.tensor([3.0, 0, 0, 0], dtype=D))
    assert free.states[1:, 0, 0].max() > 0.8 + 1e-3  # the constraint would be violated
    res = layer(x0, A, B, Q, R, goal=goal + torch.tensor([3.0, 0, 0, 0], dtype=D), G=G, h=h)
    assert res.states[1:, 0, 0].max() <= 0.8 + 1e-6


def test_batched_parameters():
    A, B, c, Q, R, goal = _system()
    T = 6
    x0 = torch.randn(2, 4, generator=torch.Generator().manual_seed(0), dtype=D)
    A2 = torch.stack([A, 0.9 * A])
    layer = ConvexMPC(ConvexMPCConfig(horizon=T))
    res = layer(x0, A2, B, Q, R, u_low=-1.0, u_high=1.0)
    for b in range(2):
        one = layer(x0[b], A2[b], B, Q, R, u_low=-1.0, u_high=1.0)
        torch.testing.assert_close(res.actions[:, b], one.actions[:, 0], atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"A": torch.eye(3, dtype=D)}, "A: expected shape"),
        ({"Q": -torch.eye(4, dtype=D)}, "Q: must be positive semidefinite"),
        ({"Q": torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=D).repeat(2, 2)}, "Q: must be symm"),
        ({"R": torch.zeros(2, 2, dtype=D)}, "R: must be positive definite"),
        ({"u_low": 1.0, "u_high": -1.0}, "u_low: must be <= u_high"),
        ({"u_low": 1.0}, "u_low/u_high"),
        ({"x0": torch.tensor([[float("nan"), 0, 0, 0]], dtype=D)}, "x0: contains NaN"),
        ({"c": torch.zeros(3, dtype=D)}, "c: expected shape"),
        ({"G": torch.zeros(1, 4, dtype=D)}, "G/h"),
    ],
)
def test_bad_input(kwargs, match):
    A, B, c, Q, R, goal = _system()
    args = {"x0": torch.zeros(1, 4, dtype=D), "A": A, "B": B, "Q": Q, "R": R, **kwargs}
    layer = ConvexMPC(ConvexMPCConfig(horizon=3))
    with pytest.raises(ValueError, match=match):
        layer(args.pop("x0"), args.pop("A"), args.pop("B"), args.pop("Q"), args.pop("R"), **args)


def test_config_validation():
    with pytest.raises(ValueError, match="horizon"):
        ConvexMPCConfig(horizon=0)
    with pytest.raises(ValueError, match="solver"):
        ConvexMPCConfig(solver="OSQP")


def test_bench_convex_runs_and_agrees():
    from diffctl.bench.convex import run

    result = run(["--batch", "3", "--horizon", "6", "--repeat", "1", "--threads", "1"])
    (row,) = result.rows
    assert row["batch"] == 3 and row["ours_converged"] == 1.0
    assert row["max_du"] < 1e-4 and row["convex_max_|u|-bound"] < 1e-6
    assert row["x_faster_fwd_bwd"] > 0 and any("targets" in n for n in result.notes)
