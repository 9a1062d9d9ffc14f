"""Ant-v5, Humanoid-v5, HumanoidStandup-v5 (``envs/mujoco_robots.py``) against gymnasium."""

from __future__ import annotations

import numpy as np
import pytest
import torch

mujoco = pytest.importorskip("mujoco")
gym = pytest.importorskip("gymnasium")

from diffctl.envs import make  # noqa: E402
from diffctl.envs.mujoco_tasks import TASKS  # noqa: E402

ROBOTS = ["Ant-v5", "Humanoid-v5", "HumanoidStandup-v5"]

# gymnasium reads cinert, cvel and cfrc_ext (and Ant's torso xpos, Humanoid's xipos) from mjData
# after an RK4 step, i.e. at RK4's last internal stage X_3; the env evaluates its sensors at X_3
# rebuilt by `MujocoSim.last_stage` (mujoco_bridge), exact for hinge and slide joints. On these
# free-joint robots MuJoCo 4's RK4 places X_3's floating base slightly differently from the
# published tableau (not reproducible from its API; see mujoco_bridge), and the readings differ by
# what that moves. Worst differences measured over the 100 states of `_states` (seed 0, states
# along a random rollout: falling, many contacts); the tolerances are about 3x those:
#   Ant:             cfrc_ext 3.1e-3 (clipped to [-1, 1]), reward 4.4e-6
#   Humanoid:        cinert 9.4e-6, cvel 4.6e-4, cfrc_ext 4.5e-2 (gymnasium's up to 3.1e3),
#                    reward 5.4e-5
#   HumanoidStandup: cinert 3.8e-6, cvel 2.1e-5, cfrc_ext 2.3e-2 (of up to 1.2e3), reward 7.9e-6
# Positions, velocities, qfrc_actuator and termination do not depend on that instant: exact
# (the next state measured equal bit for bit). With gymnasium's mjData evaluated at the env's X_3
# (`_gym_at_stage`), gymnasium's observation and reward equal ours to rounding (1e-9 asserted).
STAGE_TOL = {
    "Ant-v5": {"cfrc": 1e-2, "reward": 1.5e-5},
    "Humanoid-v5": {"cinert": 3e-5, "cvel": 1.5e-3, "cfrc": 0.15, "reward": 1.5e-4},
    "HumanoidStandup-v5": {"cinert": 1.2e-5, "cvel": 6e-5, "cfrc": 7e-2, "reward": 2.5e-5},
}


def _blocks(task: str, m) -> list[tuple[str, int]]:
    """gymnasium's observation layout (default options)."""
    nb = m.nbody - 1
    if task == "Ant-v5":
        return [("qpos", m.nq - 2), ("qvel", m.nv), ("cfrc", 6 * nb)]
    return [
        ("qpos", m.nq - 2),
        ("qvel", m.nv),
        ("cinert", 10 * nb),
        ("cvel", 6 * nb),
        ("qfrc", m.nv - 6),
        ("cfrc", 6 * nb),
    ]


def _states(g, n: int, rng: np.random.Generator):
    """``n`` states along a random-action gymnasium rollout from reset (the robots fall and
    touch the floor with several bodies), and actions up to 1.2x the range (MuJoCo clamps)."""
    g.reset(seed=0)
    lo, hi = g.action_space.low, g.action_space.high
    qpos, qvel = [], []
    for _ in range(n):
        qpos.append(g.data.qpos.copy())
        qvel.append(g.data.qvel.copy())
        g.step(rng.uniform(lo, hi))
    return np.stack(qpos), np.stack(qvel), rng.uniform(1.2 * lo, 1.2 * hi, size=(n, len(lo)))


def _gym_velocity_x(task: str, g) -> float:
    if task == "Ant-v5":
        return float(g.data.body(g._main_body).xpos[0])
    from gymnasium.envs.mujoco.humanoid_v5 import mass_center

    return float(mass_center(g.model, g.data)[0])


def _gym_reward(task: str, g, before: float, u: np.ndarray) -> float:
    if task == "HumanoidStandup-v5":
        return float(g._get_rew(g.data.qpos[2], u)[0])
    return float(g._get_rew((_gym_velocity_x(task, g) - before) / g.dt, u)[0])


def _gym_at_stage(task: str, g, before: float, u: np.ndarray, stage: np.ndarray):
    """gymnasium's observation and reward with mjData's derived quantities evaluated at the
    env's RK4 last stage ``stage = [qpos, qvel]`` and ``qpos``/``qvel`` left at the step's end
    (what ``g.step`` leaves, up to where X_3 is)."""
    m, d = g.model, g.data
    end = d.qpos.copy(), d.qvel.copy()
    d.qpos[:], d.qvel[:] = stage[: m.nq], stage[m.nq :]
    d.qacc_warmstart[:] = 0
    mujoco.mj_forward(m, d)
    mujoco.mj_rnePostConstraint(m, d)
    d.qpos[:], d.qvel[:] = end
    return g._get_obs(), _gym_reward(task, g, before, u)


def _compare(task: str, n: int = 100, **options):
    env = make(f"mujoco:{task}", dtype=torch.float64, **options)
    g = gym.make(task, **options).unwrapped
    qpos, qvel, u = _states(g, n, np.random.default_rng(0))
    sim = env.sim  # the state of each step's last RK4 stage, as the env reads its sensors
    states, _ = sim.rollout(np.concatenate([qpos, qvel], 1), u, sim.frame_skip)
    stages = sim.last_stage(states[:, -2], u)
    ref = {k: [] for k in ("qpos", "qvel", "obs", "rew", "term", "obs_stage", "rew_stage")}
    for i in range(n):
        g.set_state(qpos[i], qvel[i])
        g.data.qacc_warmstart[:] = 0  # our steps start the constraint solver from zero
        before = 0.0 if task == "HumanoidStandup-v5" else _gym_velocity_x(task, g)
        obs, rew, term, _, _ = g.step(u[i])
        for k, v in zip(
            ("qpos", "qvel", "obs", "rew", "term"), (g.data.qpos, g.data.qvel, obs, rew, term)
        ):
            ref[k].append(np.copy(v))
        obs_stage, rew_stage = _gym_at_stage(task, g, before, u[i], stages[i])
        ref["obs_stage"].append(obs_stage)
        ref["rew_stage"].append(rew_stage)
    ref = {k: np.stack(v) for k, v in ref.items()}
    x = env.state_from(torch.tensor(qpos), torch.tensor(qvel))
    x1, obs, rew, term = env.step(x, torch.tensor(u))
    return env, g, ref, obs.numpy(), rew.numpy(), term.numpy(), x1


@pytest.mark.parametrize("task", ROBOTS)
def test_step_equals_gymnasium_from_100_states(task):
    env, g, ref, obs, rew, term, x1 = _compare(task)
    assert env.spec.obs_dim == g.observation_space.shape[0] == obs.shape[1]
    np.testing.assert_allclose(env.qpos(x1).numpy(), ref["qpos"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(env.qvel(x1).numpy(), ref["qvel"], atol=1e-9, rtol=0)
    assert term.tolist() == ref["term"].tolist()
    # against gymnasium's data evaluated at the env's last RK4 stage: equal to rounding
    np.testing.assert_allclose(obs, ref["obs_stage"], atol=1e-9, rtol=1e-12)
    np.testing.assert_allclose(rew, ref["rew_stage"], atol=1e-9, rtol=0)
    # against gymnasium's step itself: exact blocks exact, RK4-stage blocks within STAGE_TOL
    tol = STAGE_TOL[task]
    k = 0
    for name, size in _blocks(task, g.model):
        block = slice(k, k + size)
        err = np.abs(obs[:, block] - ref["obs"][:, block]).max()
        assert err <= tol.get(name, 1e-9), (name, err)
        k += size
    assert np.abs(rew - ref["rew"]).max() <= tol["reward"]


@pytest.mark.parametrize(
    ("task", "options"),
    [
        (
            "Ant-v5",
            {
                "main_body": "front_left_leg",
                "contact_force_range": (0.2, 2.0),  # the world body's zero row clips to 0.2
                "forward_reward_weight": 2.0,
                "ctrl_cost_weight": 0.3,
                "contact_cost_weight": 1e-2,
                "healthy_reward": 0.5,
                "healthy_z_range": (0.3, 0.7),
                "terminate_when_unhealthy": False,
                "exclude_current_positions_from_observation": False,
            },
        ),
        ("Ant-v5", {"main_body": 4, "include_cfrc_ext_in_observation": False}),
        (
            "Humanoid-v5",
            {
                "forward_reward_weight": 2.0,
                "ctrl_cost_weight": 0.2,
                "contact_cost_weight": 1e-5,
                "contact_cost_range": (0.5, 3.0),
                "healthy_reward": 1.0,
                "healthy_z_range": (0.8, 1.3),
                "include_cvel_in_observation": False,
            },
        ),
        (
            "HumanoidStandup-v5",
            {
                "uph_cost_weight": 3.0,  # unused by gymnasium
                "ctrl_cost_weight": 0.2,
                "impact_cost_weight": 1e-5,
                "impact_cost_range": (0.1, 2.0),
                "exclude_current_positions_from_observation": False,
                "include_cinert_in_observation": False,
            },
        ),
    ],
)
def test_options_equal_gymnasium(task, options):
    env, g, ref, obs, rew, term, _ = _compare(task, n=30, **options)
    assert obs.shape[1] == g.observation_space.shape[0]
    np.testing.assert_allclose(obs, ref["obs_stage"], atol=1e-9, rtol=1e-12)
    np.testing.assert_allclose(rew, ref["rew_stage"], atol=1e-9, rtol=0)
    assert term.tolist() == ref["term"].tolist()


OBS_OPTIONS = [
    {},
    {"exclude_current_positions_from_observation": False},
    {"include_cfrc_ext_in_observation": False},
    {"include_cinert_in_observation": False},
    {"include_cvel_in_observation": False},
    {"include_qfrc_actuator_in_observation": False},
    {
        "exclude_current_positions_from_observation": False,
        "include_cinert_in_observation": False,
        "include_cvel_in_observation": False,
        "include_qfrc_actuator_in_observation": False,
        "include_cfrc_ext_in_observation": False,
    },
]


@pytest.mark.parametrize("task", ROBOTS)
def test_observation_dims_equal_gymnasium(task):
    for options in OBS_OPTIONS:
        if not set(options) <= set(TASKS[task].options):  # Ant has no cinert, cvel, qfrc
            continue
        env = make(f"mujoco:{task}", dtype=torch.float64, **options)
        dim = gym.make(task, **options).observation_space.shape[0]
        x = env.initial_state(2, torch.Generator().manual_seed(0))
        assert env.spec.obs_dim == dim == env.observe(x).shape[-1], options


@pytest.mark.parametrize("task", ROBOTS)
def test_unknown_option_raises_naming_it(task):
    with pytest.raises(ValueError, match="use_contact_forces"):
        make(f"mujoco:{task}", use_contact_forces=True)


def test_bad_main_body_raises_naming_it():
    with pytest.raises(ValueError, match="main_body"):
        make("mujoco:Ant-v5", main_body="tail")
    with pytest.raises(ValueError, match="main_body"):
        make("mujoco:Ant-v5", main_body=99)


def test_registered():
    assert set(ROBOTS) <= set(TASKS)


@pytest.mark.parametrize("task", ROBOTS)
def test_reset_matches_gymnasium(task):
    """Noise as each ``reset_model``; contact forces zero in the first observation, as
    gymnasium's (``mj_forward`` leaves ``cfrc_ext`` at zero after ``mj_resetData``), even where
    the robot starts on the floor (HumanoidStandup)."""
    env = make(f"mujoco:{task}", dtype=torch.float64)
    x = env.initial_state(2000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, env.initial_state(2000, torch.Generator().manual_seed(0)))
    s = env.opts["reset_noise_scale"]
    dq = env.qpos(x) - torch.tensor(env.model.qpos0)
    v = env.qvel(x)
    assert dq.abs().max() <= s and dq.std().item() == pytest.approx(s / 3**0.5, rel=0.05)
    if task == "Ant-v5":  # normal velocities
        assert v.std().item() == pytest.approx(s, rel=0.05) and v.abs().max() > s
    else:
        assert v.abs().max() <= s and v.std().item() == pytest.approx(s / 3**0.5, rel=0.05)
    assert (env.cfrc_ext(x) == 0).all()
    obs, _ = gym.make(task).reset(seed=0)
    assert (obs[-env.cfrc_ext(x)[0].numel() :] == 0).all()
    if task == "HumanoidStandup-v5":  # lying on the floor: at the state, contacts push
        assert env.cfrc_ext(env.state_from(env.qpos(x[:4]), env.qvel(x[:4]))).abs().max() > 1


def test_reward_differentiates_through_the_step():
    env = make("mujoco:Ant-v5", dtype=torch.float64)
    x = env.initial_state(2, torch.Generator().manual_seed(0))
    u = torch.full((2, 8), 0.3, dtype=torch.float64, requires_grad=True)
    env.reward(x, u, env.dynamics(x, u)).sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0
