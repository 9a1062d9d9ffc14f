"""iCEM and the shared sampling-planner features: colored noise, the LQR oracle for CEM / MPPI /
iCEM, seeding, elite memory, solve time, compiled vs eager, config validation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from diffctl.envs import make

from diffctl.control import (
    CEM,
    ICEM,
    MPPI,
    CEMConfig,
    ICEMConfig,
    MPCPolicy,
    MPPIConfig,
    colored_noise,
    lqr,
)
from diffctl.control.base import Planner
from diffctl.control.cost import QuadCost
from diffctl.models import EnsembleDynamics

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


# ---------------------------------------------------------------- colored noise
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 3.0])
def test_colored_noise_has_the_power_law_spectrum(beta):
    g = torch.Generator().manual_seed(0)
    y = colored_noise(beta, (3000, 64), generator=g, dtype=D)
    assert y.shape == (3000, 64)
    # unit variance at every time step, zero mean
    torch.testing.assert_close(y.var(0).mean(), torch.tensor(1.0, dtype=D), atol=0.03, rtol=0)
    assert y.mean().abs() < 0.1
    # the log-log slope of the mean periodogram (interior frequencies) is -beta
    power = (torch.fft.rfft(y).abs() ** 2).mean(0)[1:32]
    f = torch.fft.rfftfreq(64, dtype=D)[1:32]
    design = torch.stack([f.log(), torch.ones_like(f)], 1)
    slope = torch.linalg.lstsq(design, power.log()[:, None]).solution[0, 0]
    assert abs(slope + beta) < 0.1, slope


def test_colored_noise_is_seeded_and_correlated():
    a = colored_noise(2.5, (8, 3, 30), generator=torch.Generator().manual_seed(1))
    b = colored_noise(2.5, (8, 3, 30), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    white = colored_noise(0.0, (4000, 30), generator=torch.Generator().manual_seed(2))
    red = colored_noise(2.5, (4000, 30), generator=torch.Generator().manual_seed(2))

    def lag1(y):
        return (y[:, 1:] * y[:, :-1]).mean()

    assert abs(lag1(white)) < 0.05 and lag1(red) > 0.8
    assert colored_noise(1.0, (5, 1)).shape == (5, 1)  # T = 1
    with pytest.raises(ValueError, match="beta"):
        colored_noise(-1.0, (2, 8))
    with pytest.raises(ValueError, match="size"):
        colored_noise(1.0, (2, 0))


# ---------------------------------------------------------------- LQR oracle
def _planner(kind, dyn, cost, n, seed):
    if kind == "cem":
        cfg = CEMConfig(
            horizon=6, num_samples=n, num_elites=n // 10, iterations=5, init_std=2.0, seed=seed
        )
        return CEM(dyn, cost, nu=1, config=cfg)
    if kind == "mppi":  # without the control-cost term, whose fixed point is not the optimum
        cfg = MPPIConfig(
            horizon=6,
            num_samples=n,
            iterations=10,
            temperature=0.01,
            noise_std=0.5,
            control_cost=False,
            seed=seed,
        )
        return MPPI(dyn, cost, nu=1, config=cfg)
    cfg = ICEMConfig(
        horizon=6, num_samples=n, num_elites=n // 10, iterations=5, init_std=2.0, seed=seed
    )
    return ICEM(dyn, cost, nu=1, config=cfg)


@pytest.mark.parametrize("kind", ["cem", "mppi", "icem"])
def test_planners_approach_the_lqr_cost_as_samples_grow(kind):
    """Relative gap to the LQR optimum, mean over 3 start states and 2 seeds, shrinks with the
    population (measured: cem 5e-2 / 1.7e-4 / 1.4e-5, mppi 1.6e-2 / 7e-4 / 3e-5,
    icem 1.4e-1 / 2.6e-3 / 1.1e-3 at 20 / 160 / 2560 samples)."""
    dyn, cost, x0, ref = _lq()
    gaps = []
    for n in (20, 160, 2560):
        gap = 0.0
        for seed in (0, 1):
            res = _planner(kind, dyn, cost, n, seed).plan(x0)
            assert (res.cost >= ref.cost - 1e-9).all()  # never below the optimum
            gap += ((res.cost - ref.cost) / ref.cost).mean().item() / 2
        gaps.append(gap)
    assert gaps[0] > gaps[1] > gaps[2], gaps
    assert gaps[2] < 3e-3, gaps


# ---------------------------------------------------------------- iCEM specifics
def test_icem_population_decays_and_elites_are_reused():
    dyn, cost, x0, _ = _lq()
    cfg = ICEMConfig(horizon=6, num_samples=100, num_elites=10, iterations=4, init_std=2.0)
    assert [cfg.population(i) for i in range(4)] == [100, 80, 64, 52]
    assert cfg.num_kept == 3
    planner = ICEM(dyn, cost, nu=1, config=cfg)
    assert isinstance(planner, Planner)
    first = planner.plan(x0)
    # fresh samples, 3 kept elites in iterations 1..3, the mean in the last one
    assert first.info["samples"] == 100 + 80 + 64 + 52 + 3 * 3 + 1
    assert first.actions.shape == (6, 3, 1) and first.info["mean"].shape == (6, 3, 1)
    shifted = torch.cat([first.actions[1:], first.actions[-1:]])
    second = planner.plan(x0, warm_start=shifted)
    assert second.info["samples"] == first.info["samples"] + 3  # + the shifted elites
    planner.reset()
    assert planner.plan(x0, warm_start=shifted).info["samples"] == first.info["samples"]
    # execute="mean" returns the distribution's final mean instead of the best sequence
    mean_cfg = dataclasses.replace(cfg, execute="mean")
    mean_plan = ICEM(dyn, cost, nu=1, config=mean_cfg).plan(x0)
    assert torch.equal(mean_plan.actions, mean_plan.info["mean"])
    assert not torch.equal(first.actions, first.info["mean"])


def test_icem_keeps_actions_in_bounds():
    env = make("pendulum")
    cfg = ICEMConfig(horizon=10, num_samples=50, num_elites=5, iterations=3, noise_beta=3.0)
    res = ICEM(env, reward=env.reward, config=cfg).plan(torch.tensor([[3.0, 0.0]]))
    assert res.actions.abs().max() <= 2.0
    assert torch.isfinite(res.cost).all() and res.converged.all()


# ---------------------------------------------------------------- seeding, solve time
def _small_ensemble():
    torch.manual_seed(0)
    return EnsembleDynamics(3, 2, num_members=3, hidden=(16, 16)).double().eval()


def _ensemble_planners(model, **over):
    def reward(x, u, x1):
        return x1[:, 0] - 0.1 * (u * u).sum(-1)

    kw = dict(reward=reward, action_low=-1.0, action_high=1.0, nu=2)
    common = {"horizon": 5, "num_samples": 40, "particles": 3, "ensemble_size": 3, **over}
    return {
        "cem": CEM(model, config=CEMConfig(num_elites=5, iterations=3, **common), **kw),
        "mppi": MPPI(model, config=MPPIConfig(iterations=2, **common), **kw),
        "icem": ICEM(model, config=ICEMConfig(num_elites=5, iterations=3, **common), **kw),
    }


@pytest.mark.parametrize("ts_mode", ["tsinf", "ts1"])
def test_same_seed_same_plan_bitwise(ts_mode):
    model = _small_ensemble()
    x0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    a = _ensemble_planners(model, ts_mode=ts_mode)
    b = _ensemble_planners(model, ts_mode=ts_mode)
    c = _ensemble_planners(model, ts_mode=ts_mode, seed=1)
    for kind in a:
        pa, pb, pc = a[kind].plan(x0), b[kind].plan(x0), c[kind].plan(x0)
        assert torch.equal(pa.actions, pb.actions) and torch.equal(pa.cost, pb.cost), kind
        assert not torch.equal(pa.actions, pc.actions), kind
        # a second (warm-started) solve stays identical too
        warm = torch.cat([pa.actions[1:], pa.actions[-1:]])
        assert torch.equal(a[kind].plan(x0, warm).actions, b[kind].plan(x0, warm).actions)
        assert math.isfinite(pa.solve_time) and pa.solve_time > 0, kind


def test_same_seed_same_closed_loop_returns():
    env = make("pendulum")

    def run():
        cfg = ICEMConfig(horizon=10, num_samples=40, num_elites=5, iterations=2, seed=7)
        policy = MPCPolicy(ICEM(env, reward=env.reward, config=cfg))
        x, ret = torch.tensor([[2.5, 0.0]]), torch.zeros(1)
        for _ in range(8):
            u = policy.act(x)
            x1 = env.dynamics(x, u)
            ret += env.reward(x, u, x1)
            x = x1
        return ret, x, policy

    (r1, x1, p1), (r2, x2, _) = run(), run()
    assert torch.equal(r1, r2) and torch.equal(x1, x2)
    assert all(h["solve_time"] > 0 for h in p1.history)
    assert math.isfinite(p1.last_plan.solve_time)


# ---------------------------------------------------------------- compiled vs eager
@pytest.mark.parametrize(
    ("ts_mode", "propagation", "matmul_dtype"),
    [("ts1", "mean", None), ("tsinf", "sample", None), ("tsinf", "mean", "bfloat16")],
)
def test_compiled_inner_loop_gives_the_eager_plan(ts_mode, propagation, matmul_dtype):
    model = _small_ensemble()
    x0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    # a short horizon: the compiled graph is unrolled
    kw = dict(ts_mode=ts_mode, propagation=propagation, matmul_dtype=matmul_dtype, horizon=3)
    eager = _ensemble_planners(model, **kw)["icem"]
    compiled = _ensemble_planners(model, compile=True, **kw)["icem"]
    a, b = eager.plan(x0), compiled.plan(x0)
    torch.testing.assert_close(b.actions, a.actions, rtol=0, atol=1e-10)
    torch.testing.assert_close(b.cost, a.cost, rtol=1e-10, atol=1e-10)
    assert compiled._compiled is not None and eager._compiled is None


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("horizon", 0),
        ("num_samples", 0),
        ("num_elites", 0),
        ("num_elites", 400),
        ("iterations", 1.5),
        ("population_decay", 0.5),
        ("noise_beta", -0.5),
        ("keep_elites", 1.5),
        ("shift_elites", 1),
        ("add_mean", "yes"),
        ("execute", "worst"),
        ("alpha", 1.0),
        ("init_std", 0.0),
        ("particles", 0),
        ("ensemble_size", -1),
        ("ts_mode", "ts2"),
        ("propagation", "mode"),
        ("matmul_dtype", "float8"),
        ("matmul_dtype", "float32"),
        ("compile", "yes"),
        ("seed", -1),
    ],
)
def test_icem_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}: "):
        ICEMConfig(**{field: value})


@pytest.mark.parametrize("cls", [CEMConfig, MPPIConfig])
def test_shared_fields_are_validated(cls):
    with pytest.raises(ValueError, match="^ts_mode: "):
        cls(ts_mode="ts-inf")
    with pytest.raises(ValueError, match="^compile: "):
        cls(compile=1)
    with pytest.raises(ValueError, match="^propagation: "):
        cls(propagation="sampled")
    with pytest.raises(ValueError, match="^matmul_dtype: "):
        cls(matmul_dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="config"):
        ICEM(lambda x, u: x, lambda x, u: x.sum(-1), nu=1, config=cls())


def test_gradient_planners_report_solve_time_too():
    from diffctl.control import MPC, MPCConfig, Shooting, ShootingConfig

    dyn, cost, x0, _ = _lq()
    shooting = Shooting(dyn, cost, nu=1, config=ShootingConfig(horizon=6, iterations=5))
    mpc = MPC(dyn, cost, MPCConfig(horizon=6), nu=1)
    for planner in (shooting, mpc):
        res = planner.plan(x0)
        assert math.isfinite(res.solve_time) and res.solve_time > 0, type(planner).__name__
