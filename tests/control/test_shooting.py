"""Gradient shooting: reaches the LQR optimum; unrolled gradients match finite differences."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import make

from diffctl.control import ConvexMPC, ConvexMPCConfig, Shooting, ShootingConfig, lqr
from diffctl.control.cost import QuadCost

D = torch.float64
# cvxpylayers passes torch tensors to np.array (numpy 2 deprecation inside the dependency)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _lq(seed=0, nx=4, nu=2):
    g = torch.Generator().manual_seed(seed)
    A = torch.eye(nx, dtype=D) + 0.1 * torch.randn(nx, nx, generator=g, dtype=D)
    A = 0.95 * A / torch.linalg.eigvals(A).abs().max()
    B = 0.5 * torch.randn(nx, nu, generator=g, dtype=D)
    Q, R = torch.eye(nx, dtype=D), 0.1 * torch.eye(nu, dtype=D)
    x0 = torch.randn(3, nx, generator=g, dtype=D)
    return A, B, Q, R, x0


def _lqr_plan(A, B, Q, R, x0, T):
    nx, nu = B.shape
    C = torch.block_diag(Q, R)
    return lqr(x0, C, torch.zeros(nx + nu, dtype=D), torch.cat([A, B], 1), C_final=Q, T=T)


@pytest.mark.parametrize(
    "optimizer, iterations, lr, atol", [("lbfgs", 60, 1.0, 1e-4), ("adam", 400, 0.05, 1e-4)]
)
def test_reaches_lqr_optimum(optimizer, iterations, lr, atol):
    A, B, Q, R, x0 = _lq()
    T = 10
    ref = _lqr_plan(A, B, Q, R, x0, T)
    cfg = ShootingConfig(horizon=T, optimizer=optimizer, iterations=iterations, lr=lr, tol=1e-6)
    planner = Shooting(
        lambda x, u: x @ A.T + u @ B.T, QuadCost.tracking(Q, R, Q_final=Q), nu=2, config=cfg
    )
    res = planner.plan(x0)
    assert res.actions.shape == (T, 3, 2) and res.states.shape == (T + 1, 3, 4)
    torch.testing.assert_close(res.actions, ref.actions, atol=atol, rtol=0)
    torch.testing.assert_close(res.cost, ref.cost, atol=1e-6, rtol=1e-6)


def test_box_bounds_projection_and_tanh_match_convex_mpc():
    A, B, Q, R, x0 = _lq(seed=1)
    x0 = 4 * x0
    T = 8
    ref = ConvexMPC(ConvexMPCConfig(horizon=T))(x0, A, B, Q, R, u_low=-0.5, u_high=0.5)
    assert (ref.actions.abs() > 0.5 - 1e-6).any()
    dyn = lambda x, u: x @ A.T + u @ B.T  # noqa: E731
    cost = QuadCost.tracking(Q, R, Q_final=Q)
    for bounds, opt, its in (("clamp", "adam", 600), ("tanh", "lbfgs", 200)):
        cfg = ShootingConfig(
            horizon=T,
            optimizer=opt,
            iterations=its,
            lr=0.05 if opt == "adam" else 1.0,
            bounds=bounds,
            tol=1e-7,
        )
        res = Shooting(dyn, cost, action_low=-0.5, action_high=0.5, nu=2, config=cfg).plan(x0)
        assert res.actions.abs().max() <= 0.5
        torch.testing.assert_close(res.actions, ref.actions, atol=2e-3, rtol=0)


def test_unrolled_gradient_matches_finite_differences():
    """d(planned cost)/d(pendulum mass, cost weight, x0) through 20 unrolled Adam steps."""
    env = make("pendulum", dtype=D)
    T = 5
    x0 = torch.tensor([[2.5, 0.3], [-1.0, 0.5]], dtype=D)

    def planned_cost(m, w, x):
        e = env.replace(m=m)
        cost = lambda x, u: w * x[:, 0] ** 2 + 0.1 * x[:, 1] ** 2 + 0.01 * u[:, 0] ** 2  # noqa: E731
        cfg = ShootingConfig(
            horizon=T, optimizer="adam", iterations=20, lr=0.2, unrolled=True, tol=0.0
        )
        res = Shooting(e, cost, action_low=-2.0, action_high=2.0, nu=1, config=cfg).plan(x)
        return res.cost.sum()

    m = torch.tensor(1.0, dtype=D, requires_grad=True)
    w = torch.tensor(1.0, dtype=D, requires_grad=True)
    x = x0.clone().requires_grad_()
    gm, gw, gx = torch.autograd.grad(planned_cost(m, w, x), (m, w, x))
    eps = 1e-6
    with torch.no_grad():
        fd_m = (planned_cost(m + eps, w, x0) - planned_cost(m - eps, w, x0)) / (2 * eps)
        fd_w = (planned_cost(m, w + eps, x0) - planned_cost(m, w - eps, x0)) / (2 * eps)
        e0 = torch.zeros_like(x0)
        e0[0, 1] = eps
        fd_x = (planned_cost(m, w, x0 + e0) - planned_cost(m, w, x0 - e0)) / (2 * eps)
    torch.testing.assert_close(gm, fd_m, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gw, fd_w, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gx[0, 1], fd_x, rtol=1e-5, atol=1e-7)
    # the unrolled plan differs from a plan without gradient tracking only in the graph
    assert gm.abs() > 0


def test_converged_mask_per_example():
    A, B, Q, R, x0 = _lq()
    x0 = torch.cat([torch.zeros(1, 4, dtype=D), 10 * x0[:1]])  # at the optimum / far away
    cfg = ShootingConfig(horizon=6, optimizer="adam", iterations=5, lr=0.01, tol=1e-6)
    res = Shooting(lambda x, u: x @ A.T + u @ B.T, QuadCost.tracking(Q, R), nu=2, config=cfg).plan(
        x0
    )
    assert res.converged.tolist() == [True, False]
    assert res.iterations.tolist() == [0, 5]


def test_reward_objective_and_warm_start():
    env = make("pendulum")
    cfg = ShootingConfig(horizon=10, iterations=30, lr=0.3)
    planner = Shooting(env, reward=env.reward, action_low=(-2.0,), action_high=(2.0,), config=cfg)
    x0 = torch.tensor([[0.5, 0.0]])
    res = planner.plan(x0)
    # cost is minus the summed reward of the planned rollout
    xs, us = res.states, res.actions
    r = env.reward(xs[:-1].reshape(-1, 2), us.reshape(-1, 1), xs[1:].reshape(-1, 2))
    torch.testing.assert_close(res.cost, -r.reshape(10, 1).sum(0))
    zero_cost, _ = planner.objective(x0, torch.zeros(10, 1, 1))
    assert res.cost < zero_cost
    warm = planner.plan(x0, warm_start=res.actions)  # starting at a stationary point
    assert warm.iterations.tolist() == [0] and warm.converged.all()
    torch.testing.assert_close(warm.actions, res.actions)


def test_bad_input():
    env = make("pendulum")
    with pytest.raises(ValueError, match="cost/reward"):
        Shooting(env, nu=1)
    with pytest.raises(ValueError, match="action_low: must be <= action_high"):
        Shooting(env, reward=env.reward, action_low=1.0, action_high=-1.0, nu=1)
    with pytest.raises(ValueError, match="nu"):
        Shooting(lambda x, u: x, reward=env.reward)  # no env spec, no bounds: unknown nu
    with pytest.raises(ValueError, match="bounds"):
        Shooting(
            env,
            reward=env.reward,
            action_low=-2.0,
            action_high=2.0,
            nu=1,
            config=ShootingConfig(optimizer="lbfgs"),
        )
    with pytest.raises(ValueError, match="unrolled"):
        ShootingConfig(optimizer="lbfgs", unrolled=True)
    with pytest.raises(ValueError, match="optimizer"):
        ShootingConfig(optimizer="sgd")
    planner = Shooting(
        env,
        reward=env.reward,
        action_low=-2.0,
        action_high=2.0,
        nu=1,
        config=ShootingConfig(horizon=4, iterations=2),
    )
    with pytest.raises(ValueError, match="x0: contains NaN"):
        planner.plan(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match=r"x0: expected shape \[B, 2\]"):
        planner.plan(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="warm_start: expected shape"):
        planner.plan(torch.zeros(1, 2), warm_start=torch.zeros(3, 1, 1))
