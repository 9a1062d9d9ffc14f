"""MPC backward: implicit gradients (gradcheck in float64, active bounds) and unroll agreement."""

from __future__ import annotations

import torch
from diffctl.envs import angle_normalize, make

from diffctl.control import MPC, FunctionCost, LinearDynamics, MPCConfig, QuadCost

torch.set_num_threads(1)
D = torch.float64
TIGHT = dict(u_tol=1e-13, max_iter=200)


def _lq(seed: int):
    gen = torch.Generator().manual_seed(seed)
    T, B, nx, nu = 4, 2, 2, 2
    n = nx + nu
    L = torch.randn(n, n, generator=gen, dtype=D)
    C = L @ L.T + torch.eye(n, dtype=D)
    c = torch.randn(T, B, n, generator=gen, dtype=D) * 2
    F = torch.randn(nx, n, generator=gen, dtype=D) * 0.6
    f = torch.randn(nx, generator=gen, dtype=D) * 0.1
    x0 = torch.randn(B, nx, generator=gen, dtype=D)
    return T, x0, C, c, F, f


def _lq_plan(T, unroll=False):
    cfg = MPCConfig(horizon=T, u_lower=-0.5, u_upper=0.4, unroll=unroll, **TIGHT)

    def fn(x0, C, c, F, f):
        res = MPC(LinearDynamics(F, f), QuadCost(C, c), cfg).plan(x0)
        return res.actions, res.states, res.cost

    return fn


def test_lq_gradcheck_with_active_bounds():
    T, x0, C, c, F, f = _lq(0)
    acts = _lq_plan(T)(x0, C, c, F, f)[0]
    active = (acts == -0.5) | (acts == 0.4)
    assert active.any() and (~active).any()
    args = tuple(t.clone().requires_grad_(True) for t in (x0, C, c, F, f))
    assert torch.autograd.gradcheck(_lq_plan(T), args, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_lq_implicit_equals_unroll():
    T, x0, C, c, F, f = _lq(1)
    grads = []
    for unroll in (False, True):
        args = tuple(t.clone().requires_grad_(True) for t in (x0, C, c, F, f))
        acts, states, cost = _lq_plan(T, unroll)(*args)
        w = torch.linspace(-1, 1, acts.numel(), dtype=D).view_as(acts)
        loss = (acts * w).sum() + states.pow(2).sum() + cost.sum()
        grads.append(torch.autograd.grad(loss, args))
    for gi, gu in zip(*grads):
        torch.testing.assert_close(gi, gu, atol=1e-8, rtol=1e-7)


def _pendulum_plan(unroll=False, T=8):
    cfg = MPCConfig(horizon=T, u_lower=-1.0, u_upper=1.0, unroll=unroll, **TIGHT)

    def fn(x0, m, w):
        env = make("pendulum", dtype=D).replace(m=m)

        def stage(x, u):
            return w[0] * angle_normalize(x[:, 0]) ** 2 + w[1] * x[:, 1] ** 2 + 0.05 * u[:, 0] ** 2

        res = MPC(env, FunctionCost(stage, lambda x: 5 * w[0] * x[:, 0] ** 2), cfg).plan(x0)
        assert bool(res.converged.all())
        return res.actions, res.states

    return fn


def _pendulum_args():
    x0 = torch.tensor([[0.8, -0.3], [-0.4, 0.6]], dtype=D, requires_grad=True)
    m = torch.tensor(1.2, dtype=D, requires_grad=True)
    w = torch.tensor([1.0, 0.1], dtype=D, requires_grad=True)
    return x0, m, w


def test_nonlinear_gradcheck_dynamics_param_cost_param_x0():
    args = _pendulum_args()
    acts = _pendulum_plan()(*args)[0].detach()
    active = acts.abs() == 1.0
    assert active.any() and (~active).any()
    assert torch.autograd.gradcheck(_pendulum_plan(), args, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_nonlinear_implicit_equals_unroll_when_converged():
    grads = []
    for unroll in (False, True):
        args = _pendulum_args()
        acts, states = _pendulum_plan(unroll)(*args)
        loss = acts.sum() + (states[-1] ** 2).sum()
        grads.append(torch.autograd.grad(loss, args))
    for gi, gu in zip(*grads):
        torch.testing.assert_close(gi, gu, atol=1e-6, rtol=1e-5)


def test_module_weights_get_gradients():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(D)

    def dyn(x, u):
        return x + 0.1 * net(torch.cat([x, u], -1))

    cost = QuadCost(torch.eye(3, dtype=D))
    res = MPC(dyn, cost, MPCConfig(horizon=5, u_lower=-1.0, u_upper=1.0, **TIGHT), nu=1).plan(
        torch.tensor([[1.0, -1.0]], dtype=D)
    )
    res.cost.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())


def test_no_graph_when_nothing_requires_grad():
    T, x0, C, c, F, f = _lq(2)
    acts = _lq_plan(T)(x0, C, c, F, f)[0]
    assert not acts.requires_grad
