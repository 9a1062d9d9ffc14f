"""MuJoCo bridge: gymnasium parity, finite-difference Jacobians, parameters, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

mujoco = pytest.importorskip("mujoco")
gym = pytest.importorskip("gymnasium")

from diffctl.envs import VecEnv, make  # noqa: E402
from diffctl.envs.mujoco_bridge import MjcfEnv  # noqa: E402
from diffctl.envs.mujoco_tasks import TASKS  # noqa: E402

pytestmark = pytest.mark.mujoco

SIMPLE_TASKS = [t for t in TASKS if t in (
    "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5", "Pusher-v5", "Swimmer-v5",
    "Hopper-v5", "Walker2d-v5", "HalfCheetah-v5",
)]  # fmt: skip


def _random_states(env, g, n: int, rng: np.random.Generator):
    """``n`` states around the task's start distribution, with larger velocities."""
    m = g.model
    x0 = env.initial_state(n, torch.Generator().manual_seed(1)).numpy()
    qpos = x0[:, : m.nq] + 0.1 * rng.normal(size=(n, m.nq))
    qvel = x0[:, m.nq : m.nq + m.nv] + 0.5 * rng.normal(size=(n, m.nv))
    return qpos, qvel


def _gym_step(g, qpos, qvel, u):
    g.set_state(qpos, qvel)
    g.data.qacc_warmstart[:] = 0  # our steps start the constraint solver from zero
    obs, rew, term, _, _ = g.step(u)
    return g.data.qpos.copy(), g.data.qvel.copy(), obs, rew, term


@pytest.mark.parametrize("task", SIMPLE_TASKS)
def test_step_equals_gymnasium_from_100_states(task):
    env = make(f"mujoco:{task}", dtype=torch.float64)
    g = gym.make(task).unwrapped
    g.reset(seed=0)
    rng = np.random.default_rng(0)
    n, m = 100, g.model
    qpos, qvel = _random_states(env, g, n, rng)
    lo, hi = g.action_space.low, g.action_space.high
    u = rng.uniform(1.2 * lo, 1.2 * hi, size=(n, m.nu))  # beyond the range: MuJoCo clamps
    ref = [_gym_step(g, qpos[i], qvel[i], u[i]) for i in range(n)]
    x = env.state_from(torch.tensor(qpos), torch.tensor(qvel))
    ut = torch.tensor(u)
    x1, obs, rew, term = env.step(x, ut)
    assert x1.shape == (n, env.spec.state_dim) and obs.shape == (n, env.spec.obs_dim)
    assert env.spec.obs_dim == g.observation_space.shape[0]
    np.testing.assert_allclose(env.qpos(x1).numpy(), np.stack([r[0] for r in ref]), atol=1e-9)
    np.testing.assert_allclose(env.qvel(x1).numpy(), np.stack([r[1] for r in ref]), atol=1e-9)
    tol = 1e-9  # Reacher and InvertedDoublePendulum read RK4's last stage: exact too
    np.testing.assert_allclose(obs.numpy(), np.stack([r[2] for r in ref]), atol=tol, rtol=0)
    np.testing.assert_allclose(rew.numpy(), np.array([r[3] for r in ref]), atol=tol, rtol=0)
    assert term.tolist() == [bool(r[4]) for r in ref]


@pytest.mark.parametrize("task", ["Ant-v5", "Humanoid-v5", "Reacher-v5"])
def test_integrate_pos_equals_mujoco(task):
    """The rows' position integration of RK4's stages equals ``mj_integratePos`` (free joints'
    quaternions by the exponential map, hinges linearly)."""
    env = make(f"mujoco:{task}", dtype=torch.float64)
    m, rng = env.sim.model, np.random.default_rng(0)
    qpos = env.initial_state(8, torch.Generator().manual_seed(0)).numpy()[:, : m.nq]
    qvel = 3.0 * rng.normal(size=(8, m.nv))
    qvel[0] = 0.0  # no rotation: MuJoCo's zero-angle branch
    ours = env.sim.integrate_pos(qpos, qvel, 0.01)
    for i in range(8):
        ref = qpos[i].copy()
        mujoco.mj_integratePos(m, ref, qvel[i], 0.01)
        np.testing.assert_allclose(ours[i], ref, atol=1e-15, rtol=0)


@pytest.mark.parametrize("task", ["HalfCheetah-v5", "Hopper-v5", "Reacher-v5"])
def test_warm_start_changes_a_chained_step_by_rounding_only(task):
    """Along gymnasium's own chained rollout (its solver warm-started from the previous step),
    our step from the same state, warm start zero, stays within 1e-9."""
    env = make(f"mujoco:{task}", dtype=torch.float64)
    g = gym.make(task).unwrapped
    g.reset(seed=3)
    rng = np.random.default_rng(3)
    worst = 0.0
    for _ in range(60):
        q, v = g.data.qpos.copy(), g.data.qvel.copy()
        u = rng.uniform(g.action_space.low, g.action_space.high)
        g.step(u)
        x1 = env.dynamics(env.state_from(torch.tensor(q), torch.tensor(v)), torch.tensor(u)[None])
        worst = max(worst, float(np.abs(env.qvel(x1)[0].numpy() - g.data.qvel).max()))
    assert worst < 1e-9


def _gym_fd_jacobian(g, qpos, qvel, u, eps=1e-6):
    """Central differences of gymnasium's step (set_state + step) in [qpos, qvel, u]."""
    m = g.model
    z = np.concatenate([qpos, qvel, u])
    cols = []
    for j in range(z.size):
        outs = []
        for s in (1, -1):
            zp = z.copy()
            zp[j] += s * eps
            q, v, *_ = _gym_step(g, zp[: m.nq], zp[m.nq : m.nq + m.nv], zp[m.nq + m.nv :])
            outs.append(np.concatenate([q, v]))
        cols.append((outs[0] - outs[1]) / (2 * eps))
    jac = np.stack(cols, axis=1)
    return jac[:, : m.nq + m.nv], jac[:, m.nq + m.nv :]


@pytest.mark.parametrize("task", ["HalfCheetah-v5", "Hopper-v5"])
def test_jacobians_equal_finite_differences_of_gymnasium(task):
    env = make(f"mujoco:{task}", dtype=torch.float64)
    g = gym.make(task).unwrapped
    g.reset(seed=0)
    rng = np.random.default_rng(1)
    qpos, qvel = _random_states(env, g, 3, rng)
    u = rng.uniform(g.action_space.low, g.action_space.high, size=(3, g.model.nu))
    jx, ju = env.jacobians(env.state_from(torch.tensor(qpos), torch.tensor(qvel)), torch.tensor(u))
    n = g.model.nq + g.model.nv
    for i in range(3):
        ref_x, ref_u = _gym_fd_jacobian(g, qpos[i], qvel[i], u[i])
        scale = max(1.0, np.abs(ref_x).max())
        np.testing.assert_allclose(jx[i, :n, :n].numpy(), ref_x, atol=1e-6 * scale)
        np.testing.assert_allclose(ju[i, :n].numpy(), ref_u, atol=1e-6 * scale)


def test_autograd_backward_is_the_jacobian_transpose_product():
    env = make("mujoco:Hopper-v5", dtype=torch.float64)
    x = env.initial_state(4, torch.Generator().manual_seed(0)).requires_grad_(True)
    u = torch.full((4, 3), 0.2, dtype=torch.float64, requires_grad=True)
    x1 = env.dynamics(x, u)
    w = torch.randn(x1.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (x1 * w).sum().backward()
    jx, ju = env.jacobians(x.detach(), u.detach())
    torch.testing.assert_close(x.grad, torch.einsum("bi,bij->bj", w, jx))
    torch.testing.assert_close(u.grad, torch.einsum("bi,bij->bj", w, ju))


def test_parameter_gradients_equal_finite_differences():
    env = make("mujoco:HalfCheetah-v5", dtype=torch.float64)
    x = env.initial_state(3, torch.Generator().manual_seed(0))
    u = torch.full((3, 6), 0.3, dtype=torch.float64)
    w = torch.randn(3, env.spec.state_dim, dtype=torch.float64)
    names = ["body_mass:torso", "dof_damping:bthigh", "actuator_gear:fshin", "geom_friction:floor"]
    leaves = {k: env.params[k].clone().requires_grad_(True) for k in names}
    (env.replace(**leaves).dynamics(x, u) * w).sum().backward()
    for k in names:
        v, h = leaves[k].item(), 1e-4
        f = [(env.replace(**{k: v + s * h}).dynamics(x, u) * w).sum().item() for s in (1, -1)]
        assert leaves[k].grad.item() == pytest.approx((f[0] - f[1]) / (2 * h), rel=1e-4, abs=1e-6)


def test_params_change_the_simulated_system_and_are_named():
    env = make("mujoco:HalfCheetah-v5", dtype=torch.float64)
    assert env.params["body_mass:torso"].item() == pytest.approx(env.model.body_mass[1])
    assert "dof_damping:rootx" in env.params and "actuator_gear:bthigh" in env.params
    x = env.initial_state(2, torch.Generator().manual_seed(0))
    u = torch.ones(2, 6, dtype=torch.float64)
    heavy = env.replace(**{"body_mass:torso": 20.0})
    assert not torch.allclose(env.dynamics(x, u), heavy.dynamics(x, u))
    fresh = make("mujoco:HalfCheetah-v5", dtype=torch.float64)  # the heavy copy left it alone
    torch.testing.assert_close(env.dynamics(x, u), fresh.dynamics(x, u))
    with pytest.raises(ValueError, match="body_mass:torso"):
        env.replace(**{"body_mass:torso": -1.0})
    with pytest.raises(ValueError, match="unknown parameter"):
        env.replace(**{"body_mass:nose": 1.0})


@pytest.mark.slow
def test_greybox_identifies_torso_mass_and_damping_from_10_trajectories():
    from diffctl.data import rollout
    from diffctl.models import FitConfig, GreyBoxModel, fit

    base = make("mujoco:HalfCheetah-v5", dtype=torch.float64)
    true = {
        "body_mass:torso": 1.3 * base.params["body_mass:torso"].item(),
        "dof_damping:bthigh": 2.0 * base.params["dof_damping:bthigh"].item(),
    }
    venv = VecEnv(base.replace(**true), num_envs=10, seed=0)
    g = torch.Generator().manual_seed(0)
    logs = rollout(venv, lambda o: 2 * torch.rand(10, 6, generator=g, dtype=o.dtype) - 1, 100)
    model = GreyBoxModel(make("mujoco:HalfCheetah-v5", dtype=torch.float64), list(true))
    cfg = FitConfig(epochs=30, lr=0.05, train_horizon=1, patience=0, progress=False)
    fit(model, logs, cfg)
    for k, v in model.estimates().items():
        assert v.item() == pytest.approx(true[k], rel=0.02), k


def test_vec_env_auto_resets_terminating_task_and_counts_episodes():
    venv = VecEnv(make("mujoco:Hopper-v5"), num_envs=8, seed=0)
    obs = venv.reset()
    assert obs.shape == (8, 11) and obs.dtype == torch.float32
    g = torch.Generator().manual_seed(0)
    dones = 0
    for _ in range(60):
        obs, rew, term, trunc, info = venv.step(2 * torch.rand(8, 3, generator=g) - 1)
        dones += int(info["done"].sum())
    assert dones > 0 and torch.isfinite(obs).all()
    assert venv.episode_statistics()["count"] == dones


def test_reset_distribution_matches_gymnasium():
    env = make("mujoco:HalfCheetah-v5", dtype=torch.float64)
    x = env.initial_state(4000, torch.Generator().manual_seed(0))
    q, v = env.qpos(x), env.qvel(x)
    q0 = torch.tensor(env.model.qpos0)
    assert (q - q0).abs().max() <= 0.1 and (q - q0).std().item() == pytest.approx(
        0.1 / 3**0.5, rel=0.05
    )
    assert v.std().item() == pytest.approx(0.1, rel=0.05)  # normal qvel noise, scale 0.1
    r = make("mujoco:Reacher-v5", dtype=torch.float64)
    goal = r.qpos(r.initial_state(2000, torch.Generator().manual_seed(0)))[:, -2:]
    assert goal.norm(dim=-1).max() < 0.2 and (r.qvel(r.initial_state(5))[:, -2:] == 0).all()


def test_gymnasium_options_are_taken_and_checked():
    env = make("mujoco:HalfCheetah-v5", exclude_current_positions_from_observation=False)
    assert env.spec.obs_dim == 18 and env.spec.dt == pytest.approx(0.05)
    g = gym.make("Hopper-v5", healthy_z_range=(0.5, 2.0)).unwrapped
    env = make("mujoco:Hopper-v5", healthy_z_range=(0.5, 2.0), dtype=torch.float64)
    q = g.init_qpos.copy()
    q[1] = 0.6
    x = env.state_from(torch.tensor(q), torch.zeros(6, dtype=torch.float64))
    assert not env.terminated(x).item()
    with pytest.raises(ValueError, match="forward_reward_weigth"):
        make("mujoco:HalfCheetah-v5", forward_reward_weigth=2.0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="HalfCheeta-v5.*mujoco:HalfCheetah-v5"):
        make("mujoco:HalfCheeta-v5")
    env = make("mujoco:Hopper-v5")
    with pytest.raises(ValueError, match=r"x: expected shape \[\.\.\., 12\]"):
        env.dynamics(torch.zeros(2, 11), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="u: expected shape"):
        env.dynamics(torch.zeros(2, 12), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="x: state contains NaN"):
        env.dynamics(torch.full((2, 12), float("nan")), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="qpos, qvel"):
        env.state_from(torch.zeros(2, 5), torch.zeros(2, 6))


def test_mjcf_files_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.xml"):
        make(f"mjcf:{tmp_path / 'nothere.xml'}")
    bad = tmp_path / "bad.xml"
    bad.write_text("<mujoco><worldbody><body><geom type='sphere'/></body></worldbod></mujoco>")
    with pytest.raises(ValueError, match="bad.xml"):
        make(f"mjcf:{bad}")


PENDULUM_XML = """
<mujoco>
  <option timestep="0.01" integrator="{integrator}"/>
  <worldbody>
    <body name="pole">
      <joint name="hinge" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 0 0 0.5" size="0.05" mass="1"/>
    </body>
  </worldbody>
  <actuator><motor joint="hinge" ctrlrange="-2 2" ctrllimited="true"/></actuator>
</mujoco>
"""


@pytest.mark.parametrize("integrator", ["Euler", "RK4", "implicit", "implicitfast"])
def test_user_mjcf_with_torch_reward_on_every_integrator(tmp_path, integrator):
    path = tmp_path / "pendulum.xml"
    path.write_text(PENDULUM_XML.format(integrator=integrator))

    def reward(x, u, x1):  # upright: the pole's angle from vertical, and a control cost
        return -x1[..., 0].square() - 0.01 * u.square().sum(-1)

    env = make(f"mjcf:{path}", reward=reward, dtype=torch.float64)
    assert isinstance(env, MjcfEnv) and env.spec.act_dim == 1
    assert env.spec.action_low == (-2.0,) and env.spec.dt == pytest.approx(0.02)  # 2 substeps
    x = env.state_from(torch.tensor([[0.3]]), torch.tensor([[0.0]]))
    u = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    r = env.reward(x, u, env.dynamics(x, u))
    r.sum().backward()
    h = 1e-5
    fd = [env.reward(x, u + s * h, env.dynamics(x, u.detach() + s * h)).item() for s in (1, -1)]
    assert u.grad.item() == pytest.approx((fd[0] - fd[1]) / (2 * h), rel=1e-4)


SPINNER_XML = """
<mujoco>
  <option integrator="RK4" timestep="0.005" solver="PGS" iterations="8"/>
  <worldbody>
    <geom type="plane" size="2 2 0.1"/>
    <body name="top" pos="0 0 1">
      <joint name="ball" type="ball" damping="0.01"/>
      <geom type="capsule" fromto="0 0 0 0.3 0.1 -0.4" size="0.05"/>
    </body>
    <body name="box" pos="0.8 0 0.12">
      <freejoint/>
      <geom type="box" size="0.1 0.07 0.05"/>
    </body>
  </worldbody>
  <sensor>
    <framequat name="top_quat" objtype="xbody" objname="top"/>
    <framepos name="box_pos" objtype="xbody" objname="box"/>
  </sensor>
  <actuator><motor joint="ball" gear="0.3 0 1" ctrlrange="-1 1" ctrllimited="true"/></actuator>
</mujoco>
"""


def test_rk4_last_substep_equals_mujoco_on_ball_and_free_joints(tmp_path):
    """The env's RK4 step (``MujocoSim.last_substep``: the rotations of ball and free joints
    on the Lie group, every stage's solve warm-started as MuJoCo's) equals MuJoCo's own chained
    ``mj_step``s, and reads its sensors at the last stage, where ``mjData``'s kinematics are
    left; a spinning ball joint and a box tumbling in contact with the floor."""
    path = tmp_path / "spinner.xml"
    path.write_text(SPINNER_XML)
    env = make(f"mjcf:{path}", dtype=torch.float64)
    m, rng = env.sim.model, np.random.default_rng(0)
    assert env.sim.read_at == "stage" and env.sim.frame_skip == 4
    n = 20
    qpos = np.tile(m.qpos0, (n, 1))
    qpos[:, :4] += 0.3 * rng.normal(size=(n, 4))  # the ball's quaternion (normalised by MuJoCo)
    qpos[:, 6] = 0.04 + 0.02 * rng.random(n)  # the box (half height 0.05) on the floor
    qvel = 4.0 * rng.normal(size=(n, m.nv))  # fast spins
    u = rng.uniform(-1, 1, size=(n, 1))
    x1 = env.dynamics(env.state_from(torch.tensor(qpos), torch.tensor(qvel)), torch.tensor(u))
    d = mujoco.MjData(m)
    contacts = 0
    for i in range(n):
        mujoco.mj_resetData(m, d)
        d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[i], qvel[i], u[i]
        touched = False
        for _ in range(4):
            mujoco.mj_step(m, d)
            touched |= d.ncon > 0
        contacts += touched
        np.testing.assert_allclose(env.qpos(x1[i]).numpy(), d.qpos, atol=1e-12, rtol=0)
        np.testing.assert_allclose(env.qvel(x1[i]).numpy(), d.qvel, atol=1e-11, rtol=0)
        quat, pos = env.sensor(x1[i], "top_quat"), env.sensor(x1[i], "box_pos")
        np.testing.assert_allclose(quat.numpy(), d.xquat[1], atol=1e-12, rtol=0)
        np.testing.assert_allclose(pos.numpy(), d.xpos[2], atol=1e-12, rtol=0)
    assert contacts >= n // 2


def test_every_step_starts_at_time_zero(tmp_path):
    """``x`` has no time: every step starts MuJoCo's clock at zero (a ``clock`` sensor reads the
    time of the last substep's start on every call, however many calls came before)."""
    path = tmp_path / "clock.xml"
    path.write_text(PENDULUM_XML.format(integrator="Euler").replace(
        "</mujoco>", '<sensor><clock name="t"/></sensor></mujoco>'
    ))  # fmt: skip
    env = make(f"mjcf:{path}", dtype=torch.float64)  # 2 substeps of 0.01 s
    x = env.state_from(torch.tensor([[0.3]]), torch.tensor([[0.0]]))
    for _ in range(3):
        x = env.dynamics(x, torch.zeros(1, 1, dtype=torch.float64))
        assert env.sensor(x, "t").item() == pytest.approx(0.01)
