"""Predictive sampling on MuJoCo: the batched rollout equals stepping the env, the spline and
its shift, config errors, and a short humanoid balance run (2 starts x 150 steps, one push)
that must stay upright (the full acceptance run is ``diffctl bench humanoid``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium")

from diffctl.control.base import Planner  # noqa: E402
from diffctl.control.humanoid import (  # noqa: E402
    BalanceConfig,
    HumanoidStandCost,
    balance,
    humanoid_env,
    roll_pitch,
)
from diffctl.control.predictive import (  # noqa: E402
    PredictiveSampling,
    PredictiveSamplingConfig,
    _interpolation_matrix,
)

pytestmark = pytest.mark.mujoco


@pytest.fixture(scope="module")
def env():
    return humanoid_env(nthread=1)


def test_rollout_of_the_true_model_equals_stepping_the_env(env):
    """With the env's own substeps and integrator the planner's one-call rollout is the env."""
    cfg = PredictiveSamplingConfig(
        horizon=4, num_knots=2, planning_substeps=None, planning_integrator=None, nthread=1
    )
    planner = PredictiveSampling(env, HumanoidStandCost(env), cfg)
    x = env.initial_state(3, torch.Generator().manual_seed(1))
    u = torch.rand(3, 4, env.spec.act_dim, dtype=torch.float64, generator=torch.Generator()) - 0.5
    u = 0.6 * u
    xs = planner.rollout(x.numpy(), u.numpy())
    ref = x
    for t in range(4):
        ref = env.dynamics(ref, u[:, t])
        phys = env.layout["physics"]
        np.testing.assert_allclose(xs[:, t, phys], ref[:, phys].numpy(), atol=1e-9)
    planner.close()


def test_env_has_the_physics_of_humanoid_v5(env):
    """The stand sensors change no physics: steps equal ``make("mujoco:Humanoid-v5")``'s."""
    from diffctl.envs import make

    try:
        ref_env = make("mujoco:Humanoid-v5", nthread=1, dtype=torch.float64)
    except (ValueError, ImportError) as e:  # pragma: no cover - before the task is registered
        pytest.skip(f"mujoco:Humanoid-v5 unavailable: {e}")
    nq, nv = env.model.nq, env.model.nv
    x = env.initial_state(2, torch.Generator().manual_seed(0))
    y = ref_env.state_from(x[:, :nq], x[:, nq : nq + nv])
    u = 0.3 * torch.ones(2, env.spec.act_dim, dtype=torch.float64)
    for _ in range(3):
        x, y = env.dynamics(x, u), ref_env.dynamics(y, u)
    torch.testing.assert_close(x[:, : nq + nv], y[:, : nq + nv], rtol=0, atol=1e-12)


def test_spline_interpolation_and_shift():
    knots_t = np.array([0.0, 1.0, 2.0])
    w = _interpolation_matrix(np.array([0.0, 0.5, 1.0, 2.0, 3.0]), knots_t, "linear")
    np.testing.assert_allclose(w @ np.array([0.0, 2.0, 4.0]), [0.0, 1.0, 2.0, 4.0, 4.0])
    w0 = _interpolation_matrix(np.array([0.0, 0.5, 1.0, 1.9]), knots_t, "zero")
    np.testing.assert_allclose(w0 @ np.array([1.0, 2.0, 3.0]), [1.0, 1.0, 2.0, 2.0])


def test_planner_protocol_and_shift(env):
    cfg = PredictiveSamplingConfig(horizon=5, num_samples=4, num_knots=3, nthread=1)
    planner = PredictiveSampling(env, HumanoidStandCost(env), cfg)
    assert isinstance(planner, Planner)
    x = env.initial_state(2, torch.Generator().manual_seed(0))
    plan = planner.plan(x)
    assert plan.actions.shape == (5, 2, env.spec.act_dim)
    assert plan.states.shape == (6, 2, env.spec.state_dim)
    assert (plan.cost <= plan.info["nominal_cost"] + 1e-12).all()  # best-of-K keeps the nominal
    assert plan.actions.abs().max() <= 0.4 + 1e-12
    knots = np.random.default_rng(0).uniform(-0.4, 0.4, (2, 3, env.spec.act_dim))
    shifted = planner.shift(knots, 2)
    np.testing.assert_allclose(
        planner.actions_of(shifted)[:, 0], planner.actions_of(knots)[:, 2], atol=1e-12
    )
    planner.close()


def test_a_balance_start_draws_the_same_noise_alone_or_after_others(env):
    """``balance`` restarts the planner's noise from the start's seed: a start is reproducible
    on its own (``diffctl bench humanoid --seed 3 --starts 1`` is start 3 of the full run)."""
    cfg = PredictiveSamplingConfig(horizon=4, num_samples=6, num_knots=2, nthread=1)
    short = {"steps": 12, "push_every": 0.09}  # a push at step 6
    first = PredictiveSampling(env, HumanoidStandCost(env), cfg)
    balance(env, first, BalanceConfig(seed=0, **short), stop_on_failure=False)
    after = balance(env, first, BalanceConfig(seed=1, **short), stop_on_failure=False)
    alone = balance(
        env,
        PredictiveSampling(env, HumanoidStandCost(env), cfg),
        BalanceConfig(seed=1, **short),
        stop_on_failure=False,
    )
    for key in ("height", "roll", "pitch"):
        np.testing.assert_array_equal(after.trace[key], alone.trace[key])
    again = balance(env, first, BalanceConfig(seed=0, **short), stop_on_failure=False)
    assert not np.array_equal(again.trace["height"], alone.trace["height"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"horizon": 0},
        {"num_knots": 9, "horizon": 4},
        {"update": "cem"},
        {"interpolation": "cubic"},
        {"noise_std": -1.0},
        {"noise_scales": ()},
        {"planning_integrator": "verlet"},
    ],
)
def test_config_errors_name_the_field(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PredictiveSamplingConfig(**kwargs)


def test_roll_pitch_of_a_tilted_torso():
    a = 0.2
    x = torch.zeros(2, 7, dtype=torch.float64)
    x[0, 3], x[0, 4] = np.cos(a / 2), np.sin(a / 2)  # about x: roll
    x[1, 3], x[1, 5] = np.cos(a / 2), np.sin(a / 2)  # about y: pitch
    r, p = roll_pitch(x)
    np.testing.assert_allclose(r.numpy(), [a, 0.0], atol=1e-12)
    np.testing.assert_allclose(p.numpy(), [0.0, a], atol=1e-12)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_humanoid_stays_upright_under_a_push():
    torch.set_num_threads(1)
    env = humanoid_env(nthread=2)
    planner = PredictiveSampling(env, HumanoidStandCost(env), PredictiveSamplingConfig(nthread=2))
    for seed in (0, 1):
        cfg = BalanceConfig(steps=150, push_every=1.5, seed=seed)  # one push, at step 100
        r = balance(env, planner, cfg, stop_on_failure=False)
        assert r.pushes == 1
        assert r.success, (seed, r.failed_at, r.min_height, r.max_roll, r.max_pitch)
        assert r.min_height > 1.0 and r.max_roll < 0.3 and r.max_pitch < 0.3
    planner.close()


# ---------------------------------------------------------------------------------- iLQG


def test_ilqg_quadratisation_is_the_stand_costs_gradient_and_gauss_newton_hessian(env):
    """``StandCostGN.value`` is ``HumanoidStandCost`` with no control at the last knot; its
    ``l_x`` is the cost's gradient along MuJoCo's tangent space (central differences of the
    cost with the sensors recomputed), ``l_xx`` is positive semi-definite and equals
    ``J' H J`` with ``H`` the torch Hessian of the convex feature cost."""
    import mujoco

    from diffctl.control.humanoid import StandCostConfig
    from diffctl.control.ilqg import ILQG, StandCostGN

    planner = ILQG(env)
    m, d = planner.model, planner.data
    x = env.initial_state(1, torch.Generator().manual_seed(3))[0].numpy()
    qpos, qvel = x[: m.nq].copy(), x[m.nq : m.nq + m.nv].copy()
    qpos[3:7] = [np.cos(0.1), np.sin(0.1), 0.0, 0.0]  # 0.2 rad roll: the bounds term is active
    qvel[:6] = [0.3, -0.2, 0.1, 0.5, -0.4, 0.2]

    def sensed(qp, qv):
        d.qpos[:], d.qvel[:] = qp, qv
        mujoco.mj_forward(m, d)
        return d.sensordata.copy()

    Q, V, S = qpos[None], qvel[None], sensed(qpos, qvel)[None]
    U = np.zeros((0, m.nu))
    xs = torch.from_numpy(np.concatenate([Q, V, S], 1))[None]  # [1, 1, nx]
    torch_cost = HumanoidStandCost(env)(xs, torch.zeros(1, 1, m.nu, dtype=torch.float64))
    assert planner.cost.value(Q, V, S, U) == float(torch_cost)
    A = np.zeros((2 * m.nv, 2 * m.nv))
    C = np.zeros((m.nsensordata, 2 * m.nv))
    d.qpos[:], d.qvel[:], d.ctrl[:] = qpos, qvel, 0.0
    mujoco.mjd_transitionFD(m, d, 1e-6, 1, A, None, C, None)
    every_term = StandCostConfig(posture=0.3, feet_height=2.0, ang_vel=0.05)
    for config in (StandCostConfig(), every_term):
        torch_cost = HumanoidStandCost(env, config)
        cost = StandCostGN(torch_cost, m.nu)
        lx, lxx, lu, luu = cost.quadratize(Q, V, S, np.ones((1, m.nu)), C[None])
        assert np.all(np.linalg.eigvalsh(lxx[0]) > -1e-6)  # Gauss-Newton: PSD
        np.testing.assert_allclose(lu, 2 * config.control * np.ones((1, m.nu)), rtol=1e-6)
        np.testing.assert_allclose(luu, 2 * config.control * np.eye(m.nu), rtol=1e-6)
        # l_xx = J' H J: H the feature cost's Hessian by double autograd, J = dr/dx by central
        # differences with the quaternion integrated and the sensors recomputed
        r = torch_cost.features(xs[0, 0])
        H = torch.autograd.functional.hessian(torch_cost.state_cost, r).numpy()
        J = np.zeros((r.numel(), 2 * m.nv))
        for i in range(2 * m.nv):
            rows = []
            for sgn in (1e-6, -1e-6):
                dq, qp, qv = np.zeros(m.nv), qpos.copy(), qvel.copy()
                if i < m.nv:
                    dq[i] = sgn
                    mujoco.mj_integratePos(m, qp, dq, 1.0)
                else:
                    qv[i - m.nv] += sgn
                xp = torch.from_numpy(np.concatenate([qp, qv, sensed(qp, qv)]))
                rows.append(torch_cost.features(xp).numpy())
            J[:, i] = (rows[0] - rows[1]) / 2e-6
        w = config.terminal  # one knot: the last
        np.testing.assert_allclose(
            lxx[0], w * J.T @ H @ J, rtol=1e-3, atol=1e-3 * np.abs(lxx).max()
        )
        e = 1e-6
        for i in (2, 3, 4, 8, 12, m.nv + 0, m.nv + 4, m.nv + 10):
            vals = []
            for sgn in (e, -e):
                dq, qp, qv = np.zeros(m.nv), qpos.copy(), qvel.copy()
                if i < m.nv:
                    dq[i] = sgn
                    mujoco.mj_integratePos(m, qp, dq, 1.0)
                else:
                    qv[i - m.nv] += sgn
                vals.append(cost.value(qp[None], qv[None], sensed(qp, qv)[None], U))
            fd = (vals[0] - vals[1]) / (2 * e)
            assert lx[0, i] == pytest.approx(fd, rel=1e-4, abs=1e-4), i


def test_ilqg_plan_improves_its_warm_start_and_respects_the_box(env):
    from diffctl.control.ilqg import ILQG, ILQGConfig

    planner = ILQG(env, config=ILQGConfig(horizon=8, iterations=3))
    x = env.initial_state(1, torch.Generator().manual_seed(0))[0].numpy()
    qpos, qvel = x[: env.model.nq], x[env.model.nq : env.model.nq + env.model.nv].copy()
    qvel[0] += 0.5  # a push
    out = planner._rollout(qpos, qvel, np.zeros_like(planner.us))
    before = planner.cost.value(*out)
    after = planner.plan_from(qpos, qvel)
    assert after < before
    assert np.all(planner.us >= planner.lo - 1e-12) and np.all(planner.us <= planner.hi + 1e-12)
    u = planner.act(torch.from_numpy(x)[None])
    assert u.shape == (1, env.model.nu) and len(planner.history) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"horizon": 0}, {"iterations": 0}, {"replan_every": 1.5}, {"line_search": (2.0,)}],
)
def test_ilqg_config_errors_name_the_field(kwargs):
    from diffctl.control.ilqg import ILQGConfig

    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ILQGConfig(**kwargs)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ilqg_keeps_the_humanoid_upright_under_a_push():
    from diffctl.control.ilqg import ILQG

    torch.set_num_threads(1)
    env = humanoid_env(nthread=1)
    planner = ILQG(env)
    for seed in (0, 1):
        cfg = BalanceConfig(steps=150, push_every=1.5, seed=seed)  # one push, at step 100
        r = balance(env, planner, cfg, stop_on_failure=False)
        assert r.pushes == 1
        assert r.success, (seed, r.failed_at, r.min_height, r.max_roll, r.max_pitch)
    planner.close()


def test_bench_runs_the_planners_side_by_side():
    from diffctl.bench.humanoid import run

    res = run(["--planners", "ilqg,sampling", "--starts", "1", "--steps", "5", "--threads", "1"])
    assert [r["planner"] for r in res.rows] == ["iLQG", "predictive sampling"]
    assert all(r["successes"] == "1/1" for r in res.rows)
    with pytest.raises(ValueError, match="--planners"):
        run(["--planners", "ilqr", "--starts", "1", "--steps", "1"])
