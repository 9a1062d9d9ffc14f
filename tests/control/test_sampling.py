"""CEM and MPPI: LQ sanity, seeding, ensembles (TS-infinity), closed-loop pendulum swing-up."""

from __future__ import annotations

import math

import pytest
import torch
from diffctl.envs import angle_normalize, make

from diffctl.control import CEM, MPPI, CEMConfig, MPCPolicy, MPPIConfig, lqr
from diffctl.control.base import Planner
from diffctl.control.cost import QuadCost

D = torch.float64


def _lq():
    A = torch.tensor([[1.0, 0.1], [0.0, 1.0]], dtype=D)
    B = torch.tensor([[0.0], [0.1]], dtype=D)
    Q, R = torch.eye(2, dtype=D), 0.1 * torch.eye(1, dtype=D)
    x0 = torch.tensor([[1.0, 0.0], [-0.5, 0.5], [0.2, -1.0]], dtype=D)
    ref = lqr(
        x0, torch.block_diag(Q, R), torch.zeros(3, dtype=D), torch.cat([A, B], 1), C_final=Q, T=6
    )
    return (lambda x, u: x @ A.T + u @ B.T), QuadCost.tracking(Q, R, Q_final=Q), x0, ref


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_lq_problem_batched_near_optimum(kind):
    dyn, cost, x0, ref = _lq()
    if kind == "cem":
        cfg = CEMConfig(horizon=6, num_samples=400, num_elites=40, iterations=15, init_std=2.0)
        planner = CEM(dyn, cost, nu=1, config=cfg)
    else:
        cfg = MPPIConfig(
            horizon=6, num_samples=1000, iterations=10, temperature=0.01, noise_std=0.5
        )
        planner = MPPI(dyn, cost, nu=1, config=cfg)
    assert isinstance(planner, Planner)
    res = planner.plan(x0)
    assert res.actions.shape == (6, 3, 1) and res.states.shape == (7, 3, 2)
    assert res.cost.shape == (3,) and res.converged.shape == (3,)
    # within 2% of the LQR optimum (the cost of the returned plan, recomputed)
    torch.testing.assert_close(res.cost, cost.total(res.states, res.actions))
    assert (res.cost <= ref.cost * 1.02 + 1e-3).all(), (res.cost, ref.cost)


def test_seeded_and_bounded():
    env = make("pendulum")
    x0 = torch.tensor([[1.0, 0.0]])
    cfg = CEMConfig(horizon=8, num_samples=50, num_elites=5, iterations=2, seed=3)
    a = CEM(env, reward=env.reward, config=cfg).plan(x0).actions
    b = CEM(env, reward=env.reward, config=cfg).plan(x0).actions
    gen = torch.Generator().manual_seed(4)
    c = CEM(env, reward=env.reward, config=cfg, generator=gen).plan(x0).actions
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    assert a.abs().max() <= 2.0  # the env's action bounds are the default box
    m = MPPI(env, reward=env.reward, config=MPPIConfig(horizon=8, num_samples=50, seed=3))
    m2 = MPPI(env, reward=env.reward, config=MPPIConfig(horizon=8, num_samples=50, seed=3))
    torch.testing.assert_close(m.plan(x0).actions, m2.plan(x0).actions)


def test_warm_start_is_the_initial_mean():
    dyn, cost, x0, ref = _lq()
    cfg = MPPIConfig(horizon=6, num_samples=200, temperature=0.01, noise_std=1e-3)
    res = MPPI(dyn, cost, nu=1, config=cfg).plan(x0, warm_start=ref.actions)
    torch.testing.assert_close(res.actions, ref.actions, atol=1e-2, rtol=0)
    with pytest.raises(ValueError, match="warm_start: expected shape"):
        MPPI(dyn, cost, nu=1, config=cfg).plan(x0, warm_start=ref.actions[:, :1])


def test_ensemble_trajectory_sampling():
    """TS-infinity: every particle keeps one member for the whole horizon; cost is the mean."""
    calls = []

    def ens(x, u, member):
        calls.append(member.clone())
        gain = torch.where(member == 0, 1.0, -1.0).to(x.dtype)[:, None]
        return x + gain * u

    cfg = CEMConfig(
        horizon=4, num_samples=20, num_elites=4, iterations=1, particles=8, ensemble_size=2
    )
    planner = CEM(
        ens, lambda x, u: x.pow(2).sum(-1), nu=1, action_low=-1.0, action_high=1.0, config=cfg
    )
    planner.plan(torch.ones(2, 1))
    members = torch.stack(calls[:4])  # the 4 steps of the sampled rollouts
    assert members.shape == (4, 2 * 20 * 8)
    assert (members == members[0]).all()  # fixed per particle over the horizon
    assert set(members[0].tolist()) == {0, 1}
    # members agree exactly -> the mean over particles equals each particle's cost
    same = CEM(lambda x, u, m: x + u, lambda x, u: x.pow(2).sum(-1), nu=1, config=cfg)
    plain = CEM(
        lambda x, u: x + u,
        lambda x, u: x.pow(2).sum(-1),
        nu=1,
        config=CEMConfig(horizon=4, num_samples=20, num_elites=4, iterations=1),
    )
    us = torch.zeros(1, 3, 4, 1)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(
        same._score(torch.ones(1, 1), us, g), plain._score(torch.ones(1, 1), us, g)
    )


def _swing_up(planner, steps=200):
    env = make("pendulum")
    policy = MPCPolicy(planner)
    x = torch.tensor([[math.pi, 0.0]])  # hanging
    ret = torch.zeros(1)
    for _ in range(steps):
        u = policy.act(x)
        x1 = env.dynamics(x, u)
        ret += env.reward(x, u, x1)
        x = x1
    return ret.item(), angle_normalize(x[0, 0]).abs().item(), policy


# From exactly hanging the best return we found is about -342 (MPPI); iLQR MPC reaches -360,
# so -300 is out of reach: the tests ask for a completed swing-up at a near-optimal return.
@pytest.mark.slow
def test_cem_swings_up_pendulum_in_closed_loop():
    env = make("pendulum")
    cfg = CEMConfig(horizon=20, num_samples=100, num_elites=10, iterations=3, bound_mode="clip")
    ret, angle, policy = _swing_up(CEM(env, reward=env.reward, config=cfg))
    assert ret >= -400 and angle < 0.05, (ret, angle)
    assert policy.history[-1]["iterations"] >= 1


@pytest.mark.slow
def test_mppi_swings_up_pendulum_in_closed_loop():
    env = make("pendulum")
    cfg = MPPIConfig(horizon=20, num_samples=100, temperature=0.1, noise_std=0.5)
    ret, angle, _ = _swing_up(MPPI(env, reward=env.reward, config=cfg))
    assert ret >= -400 and angle < 0.05, (ret, angle)


def test_bad_input():
    env = make("pendulum")
    with pytest.raises(ValueError, match="num_elites"):
        CEMConfig(num_samples=10, num_elites=20)
    with pytest.raises(ValueError, match="temperature"):
        MPPIConfig(temperature=0.0)
    with pytest.raises(ValueError, match="bound_mode"):
        CEMConfig(bound_mode="reflect")
    with pytest.raises(ValueError, match="cost/reward"):
        CEM(env, lambda x, u: x.sum(-1), reward=env.reward)
    with pytest.raises(ValueError, match="action_low: must be <= action_high"):
        MPPI(env, reward=env.reward, action_low=(1.0,), action_high=(-1.0,))
    with pytest.raises(ValueError, match="action_low: expected 1 entries"):
        MPPI(env, reward=env.reward, action_low=(-1.0, -1.0), action_high=(1.0, 1.0), nu=1)
    with pytest.raises(ValueError, match="x0: contains NaN"):
        CEM(env, reward=env.reward).plan(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match=r"x0: expected shape \[B, 2\]"):
        MPPI(env, reward=env.reward).plan(torch.zeros(1, 3))
    with pytest.raises(TypeError, match="generator"):
        CEM(env, reward=env.reward, generator=3)


@pytest.mark.parametrize("name", ["CEM", "MPPI", "ICEM"])
def test_sampling_planners_plan_an_empty_batch_and_check_the_device(name):
    import diffctl.control as control

    env = make("pendulum")
    planner = getattr(control, name)(
        env, reward=env.reward, config=getattr(control, f"{name}Config")(horizon=5)
    )
    plan = planner.plan(torch.zeros(0, 2))
    assert plan.actions.shape == (5, 0, 1) and plan.states.shape == (6, 0, 2)
    assert plan.cost.shape == plan.converged.shape == plan.iterations.shape == (0,)
    with pytest.raises(ValueError, match="x0: tensor is on meta, the dynamics is on cpu"):
        planner.plan(torch.zeros(2, 2, device="meta"))
