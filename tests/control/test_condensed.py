"""Condensed LQ MPC (``MPCConfig(solver="condensed")``): same plans and implicit gradients as
the box-DDP path and cvxpy, gradcheck with active bounds, ``"auto"`` dispatch, warm starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cvxpy_reference import cvxpy_lq
from diffctl.envs import make

from diffctl.control import MPC, LinearDynamics, MPCConfig, QuadCost, RewardCost
from diffctl.control.condensed import condense

torch.set_num_threads(1)
D = torch.float64
TIGHT = dict(u_tol=1e-13, max_iter=200)
LO, HI = -0.4, 0.3


def _lq(seed: int, T: int = 6, B: int = 3, nx: int = 3, nu: int = 2, time_varying=False):
    gen = torch.Generator().manual_seed(seed)
    n = nx + nu
    if time_varying:
        L = torch.randn(T, B, n, n, generator=gen, dtype=D)
        C = L @ L.transpose(-1, -2) + 0.5 * torch.eye(n, dtype=D)
        F = torch.randn(T, B, nx, n, generator=gen, dtype=D) * 0.6
        f = torch.randn(T, 1, nx, generator=gen, dtype=D) * 0.1
    else:
        L = torch.randn(n, n, generator=gen, dtype=D)
        C = L @ L.T + 0.5 * torch.eye(n, dtype=D)
        F = torch.randn(nx, n, generator=gen, dtype=D) * 0.6
        f = torch.randn(nx, generator=gen, dtype=D) * 0.1
    c = torch.randn(T, B, n, generator=gen, dtype=D) * 2
    x0 = torch.randn(B, nx, generator=gen, dtype=D) * 2
    CT = torch.eye(nx, dtype=D) * 2
    cT = torch.randn(B, nx, generator=gen, dtype=D)
    return x0, C, c, F, f, CT, cT


def _plan(solver: str, T: int, x0, C, c, F, f, CT=None, cT=None, **kw):
    cfg = MPCConfig(horizon=T, u_lower=LO, u_upper=HI, solver=solver, **{**TIGHT, **kw})
    return MPC(LinearDynamics(F, f), QuadCost(C, c, CT, cT), cfg).plan(x0)


@pytest.mark.parametrize("time_varying", [False, True])
def test_plan_equals_ddp_and_cvxpy_with_active_bounds(time_varying):
    T = 6
    x0, C, c, F, f, CT, cT = _lq(1, T=T, time_varying=time_varying)
    res = _plan("condensed", T, x0, C, c, F, f, CT, cT)
    ref = _plan("ddp", T, x0, C, c, F, f, CT, cT)
    assert res.info["solver"] == "condensed" and ref.info["solver"] == "ddp"
    assert bool(res.converged.all()) and bool(ref.converged.all())
    active = (res.actions == LO) | (res.actions == HI)
    assert active.any() and (~active).any()  # a genuinely box-constrained problem
    for name in ("actions", "states", "cost"):
        torch.testing.assert_close(
            getattr(res, name), getattr(ref, name), atol=1e-8, rtol=1e-8, msg=name
        )
    torch.testing.assert_close(res.info["free"], ref.info["free"])
    Ct = C.expand(T, 3, *C.shape[-2:])
    Ft = F.expand(T, 3, *F.shape[-2:])
    ft = f.expand(T, 3, f.shape[-1])
    for b in range(x0.shape[0]):
        _, u_ref, _ = cvxpy_lq(
            x0[b].numpy(), Ct[:, b].numpy(), c[:, b].numpy(), Ft[:, b].numpy(),
            ft[:, b].numpy(), CT.numpy(), cT[b].numpy(), lo=LO, hi=HI,
        )  # fmt: skip
        np.testing.assert_allclose(res.actions[:, b].numpy(), u_ref, atol=1e-6)


def test_condensed_qp_reproduces_rollout_and_cost():
    T = 5
    x0, C, c, F, f, CT, cT = _lq(2, T=T, time_varying=True)
    dyn, cost = LinearDynamics(F, f), QuadCost(C, c, CT, cT)
    qp = condense(dyn, cost, x0, T)
    U = torch.randn(3, T * 2, generator=torch.Generator().manual_seed(0), dtype=D)
    us = U.reshape(3, T, 2).transpose(0, 1)
    xs = [x0]
    for t in range(T):
        xs.append(dyn.step(t, xs[-1], us[t]))
    xs = torch.stack(xs)
    torch.testing.assert_close(qp.states(U), xs, atol=1e-12, rtol=1e-12)
    J = 0.5 * (U.unsqueeze(-2) @ qp.H @ U.unsqueeze(-1))[..., 0, 0] + (qp.g * U).sum(-1) + qp.k
    torch.testing.assert_close(J, cost.total(xs, us), atol=1e-10, rtol=1e-12)


def _grad_fn(solver: str, T: int):
    def fn(x0, C, c, F, f):
        res = _plan(solver, T, x0, C, c, F, f)
        return res.actions, res.states, res.cost

    return fn


def test_gradcheck_with_active_bounds():
    T = 4
    x0, C, c, F, f, _, _ = _lq(0, T=T, B=2, nx=2, nu=2)
    acts = _grad_fn("condensed", T)(x0, C, c, F, f)[0]
    active = (acts == LO) | (acts == HI)
    assert active.any() and (~active).any()
    args = tuple(t.clone().requires_grad_(True) for t in (x0, C, c, F, f))
    assert torch.autograd.gradcheck(_grad_fn("condensed", T), args, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("time_varying", [False, True])
def test_gradients_equal_ddp_implicit_gradients(time_varying):
    T = 6
    x0, C, c, F, f, _, _ = _lq(3, T=T, time_varying=time_varying)
    grads = {}
    for solver in ("ddp", "condensed"):
        args = tuple(t.clone().requires_grad_(True) for t in (x0, C, c, F, f))
        acts, states, cost = _grad_fn(solver, T)(*args)
        w = torch.linspace(-1, 1, acts.numel(), dtype=D).view_as(acts)
        loss = (acts * w).sum() + states.pow(2).sum() + cost.sum()
        grads[solver] = torch.autograd.grad(loss, args)
    assert ((acts == LO) | (acts == HI)).any()
    for name, a, b in zip(("x0", "C", "c", "F", "f"), grads["condensed"], grads["ddp"]):
        assert a.abs().sum() > 0, name
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6, msg=name)


def test_auto_dispatch():
    T = 6
    x0, C, c, F, f, _, _ = _lq(4, T=T)
    lq = MPC(LinearDynamics(F, f), QuadCost(C, c), MPCConfig(horizon=T, u_lower=LO, u_upper=HI))
    assert lq.plan(x0).info["solver"] == "condensed"
    for kw in ({"unroll": True}, {"state_upper": 1.0}, {"solver": "ddp"}):
        cfg = MPCConfig(horizon=T, u_lower=LO, u_upper=HI, **kw)
        res = MPC(LinearDynamics(F, f), QuadCost(C, c), cfg).plan(x0)
        assert res.info["solver"] == "ddp", kw
    env = make("pendulum", dtype=D)
    res = MPC(env, RewardCost(env), MPCConfig(horizon=5, max_iter=3)).plan(
        torch.tensor([[0.5, 0.0]], dtype=D)
    )
    assert res.info["solver"] == "ddp"
    # too much dense work (B (T nu)^3 above CONDENSED_MAX_WORK): box-DDP
    big = MPC(LinearDynamics(F, f), QuadCost(C), MPCConfig(horizon=300, max_iter=2))
    assert big.plan(x0).info["solver"] == "ddp"
    # a singular condensed Hessian (no control cost, a control without effect): box-DDP
    nx = x0.shape[1]
    F0 = F.clone()
    F0[:, -1] = 0
    C0 = torch.block_diag(torch.eye(nx, dtype=D), torch.zeros(2, 2, dtype=D))
    cfg = MPCConfig(horizon=T, u_lower=LO, u_upper=HI)
    assert MPC(LinearDynamics(F0, f), QuadCost(C0), cfg).plan(x0).info["solver"] == "ddp"
    forced = MPC(LinearDynamics(F0, f), QuadCost(C0), MPCConfig(horizon=T, solver="condensed"))
    res = forced.plan(x0)
    assert not bool(res.converged.any()) and bool(torch.isfinite(res.actions).all())


def test_condensed_rejects_what_it_cannot_solve():
    env = make("pendulum", dtype=D)
    x0, C, c, F, f, _, _ = _lq(5)
    with pytest.raises(ValueError, match="solver: 'condensed' needs LinearDynamics"):
        MPC(env, QuadCost(torch.eye(3, dtype=D)), MPCConfig(solver="condensed"))
    with pytest.raises(ValueError, match="solver: 'condensed' needs a QuadCost"):
        MPC(LinearDynamics(F, f), lambda x, u: x.pow(2).sum(-1), MPCConfig(solver="condensed"))
    for kw, what in (({"unroll": True}, "unroll=False"), ({"state_lower": -1.0}, "state")):
        with pytest.raises(ValueError, match=what):
            MPC(LinearDynamics(F, f), QuadCost(C, c), MPCConfig(solver="condensed", **kw))
    with pytest.raises(ValueError, match="solver: expected one of"):
        MPCConfig(solver="qp")


def test_warm_start_gives_the_same_answer():
    T = 8
    x0, C, c, F, f, _, _ = _lq(6, T=T, B=4)
    mpc = MPC(
        LinearDynamics(F, f),
        QuadCost(C, c),
        MPCConfig(horizon=T, u_lower=LO, u_upper=HI, solver="condensed"),
    )
    cold = mpc.plan(x0)
    assert bool(cold.converged.all()) and int(cold.iterations.min()) > 1
    again = mpc.plan(x0, warm_start=cold.actions)
    assert int(again.iterations.max()) == 1  # the warm start's active set is the solution's
    torch.testing.assert_close(again.actions, cold.actions, atol=1e-12, rtol=0)
    noisy = cold.actions + 0.2 * torch.randn(
        cold.actions.shape, generator=torch.Generator().manual_seed(1), dtype=D
    )
    res = mpc.plan(x0, warm_start=noisy)
    assert bool(res.converged.all())
    torch.testing.assert_close(res.actions, cold.actions, atol=1e-12, rtol=0)


def test_non_convergence_is_reported():
    from diffctl.bench.convex import problem

    p = problem(4, 2, 8)
    dyn = LinearDynamics(torch.cat([p["A"], p["B"]], 1))
    cost = QuadCost.tracking(p["Q"], p["R"], Q_final=p["Q"])
    cfg = MPCConfig(horizon=30, u_lower=-1.0, u_upper=1.0, max_iter=1, solver="condensed")
    res = MPC(dyn, cost, cfg).plan(p["x0"])
    assert res.info["solver"] == "condensed"
    assert not bool(res.converged.all())
    assert bool(torch.isfinite(res.actions).all()) and bool((res.actions.abs() <= 1).all())
    full = MPC(dyn, cost, MPCConfig(horizon=30, u_lower=-1.0, u_upper=1.0)).plan(p["x0"])
    assert bool(full.converged.all()) and full.info["solver"] == "condensed"


def test_float32_inputs_are_solved_in_float64():
    T = 6
    x0, C, c, F, f, _, _ = _lq(7, T=T)
    ref = _plan("condensed", T, x0, C, c, F, f)
    res = _plan("condensed", T, *(t.float() for t in (x0, C, c, F, f)))
    assert res.actions.dtype == torch.float32 and res.states.dtype == torch.float32
    assert bool(res.converged.all())
    torch.testing.assert_close(res.actions.double(), ref.actions, atol=1e-5, rtol=0)


def test_ill_conditioned_problem_is_solved_exactly():
    # an unstable 30-step system (cond(H) ~ 3e5): a multiplier tolerance relative to |g| of
    # sqrt(eps) once left this start's plan 4e-4 off the optimum while reporting convergence
    gen = torch.Generator().manual_seed(0)
    A = torch.eye(4, dtype=D) + 0.1 * torch.randn(4, 4, generator=gen, dtype=D)
    Bm = torch.randn(4, 2, generator=gen, dtype=D)
    torch.randn(64 * 4 + 64 * 2, generator=gen, dtype=D)
    x0 = 3 * torch.randn(1024, 4, generator=gen, dtype=D)[491:492]
    dyn = LinearDynamics(torch.cat([A, Bm], 1))
    I4 = torch.eye(4, dtype=D)
    cost = QuadCost.tracking(I4, 0.1 * torch.eye(2, dtype=D), Q_final=I4)
    out = {}
    for solver in ("ddp", "condensed"):
        cfg = MPCConfig(horizon=30, u_lower=-1.0, u_upper=1.0, solver=solver, **TIGHT)
        out[solver] = MPC(dyn, cost, cfg).plan(x0)
        assert bool(out[solver].converged.all())
    torch.testing.assert_close(out["condensed"].actions, out["ddp"].actions, atol=1e-8, rtol=0)


def test_gradcheck_wrt_tensor_bounds():
    T = 4
    x0, C, c, F, f, _, _ = _lq(8, T=T, B=2, nx=2, nu=2)

    def fn(lo, hi):
        cfg = MPCConfig(horizon=T, solver="condensed")
        mpc = MPC(LinearDynamics(F, f), QuadCost(C, c), cfg, u_lower=lo, u_upper=hi)
        return mpc.plan(x0).actions

    lo = torch.tensor([-0.4, -0.5], dtype=D, requires_grad=True)
    hi = torch.tensor([0.3, 0.2], dtype=D, requires_grad=True)
    acts = fn(lo, hi).detach()
    assert (acts == lo.detach()).any() and (acts == hi.detach()).any()
    assert torch.autograd.gradcheck(fn, (lo, hi), atol=1e-6, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_bench_convex_runs_the_condensed_solver():
    pytest.importorskip("cvxpylayers")
    from diffctl.bench.convex import run

    (row,) = run(["--batch", "3", "--horizon", "6", "--repeat", "1", "--threads", "1"]).rows
    assert row["ours_solver"] == "condensed" and row["ours_converged"] == 1.0
    assert row["max_du"] < 1e-6 and row["max_dgrad_x0"] < 1e-5 and row["max_dgrad_A"] < 1e-5
    (row,) = run(["--batch", "3", "--horizon", "6", "--repeat", "1", "--solver", "ddp"]).rows
    assert row["ours_solver"] == "ddp"


def test_auto_hands_unconverged_rows_to_ddp():
    # unstable dynamics, almost no control cost, T=32: cond(H) ~ 2.5e9, and the active-set
    # phase cycles on one of the 8 starts; "auto" then finishes with box-DDP
    g = torch.Generator().manual_seed(12)
    nx, nu, T = (
        int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((1, 6), (1, 4), (10, 50))
    )
    assert (nx, nu, T) == (4, 2, 32)
    B, n = 8, nx + nu
    L = torch.randn(n, n, generator=g, dtype=D)
    C = L @ L.T * float(torch.rand(1, generator=g)) + 1e-4 * torch.eye(n, dtype=D)
    c = torch.randn(T, B, n, generator=g, dtype=D) * 3
    A = torch.eye(nx, dtype=D) * 1.05 + 0.1 * torch.randn(nx, nx, generator=g, dtype=D)
    F = torch.cat([A, torch.randn(nx, nu, generator=g, dtype=D)], 1)
    f = torch.randn(nx, generator=g, dtype=D) * 0.1
    x0 = torch.randn(B, nx, generator=g, dtype=D) * 3
    lo = tuple((-torch.rand(nu, generator=g, dtype=D)).tolist())
    hi = tuple(torch.rand(nu, generator=g, dtype=D).tolist())
    dyn, cost = LinearDynamics(F, f), QuadCost(C, c)
    kw = dict(horizon=T, u_lower=lo, u_upper=hi)
    dense = MPC(dyn, cost, MPCConfig(solver="condensed", **kw)).plan(x0)
    assert 0 < int(dense.converged.sum()) < B
    auto = MPC(dyn, cost, MPCConfig(**kw)).plan(x0)
    assert auto.info["solver"] == "ddp" and bool(auto.converged.all())
    ok = dense.converged
    torch.testing.assert_close(auto.actions[:, ok], dense.actions[:, ok], atol=1e-6, rtol=0)
