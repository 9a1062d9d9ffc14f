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
# after an RK4 step, i.e. at RK4's last internal stage; the env takes the last substep itself
# (`MujocoSim.last_substep`, mujoco_bridge) and reads its sensors at that stage, with the
# constraint solves warm-started as MuJoCo's are. Worst differences over the 100 states of
# `_states` (seed 0, along a random rollout: falling, many contacts), warm start on or off:
# next state 1e-11 (Ant), 2e-13 (Humanoid); observation 7e-11; reward 1.2e-13.


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


def _compare(task: str, n: int = 100, warm_start: bool = True, **options):
    """Our step and gymnasium's from ``n`` states; ``warm_start=False`` turns the constraint
    solver's warm start off in both models."""
    env = make(f"mujoco:{task}", dtype=torch.float64, **options)
    g = gym.make(task, **options).unwrapped
    qpos, qvel, u = _states(g, n, np.random.default_rng(0))
    if not warm_start:
        for m in (g.model, *env.sim._variants.values()):
            m.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_WARMSTART
    ref = {k: [] for k in ("qpos", "qvel", "obs", "rew", "term")}
    for i in range(n):
        g.set_state(qpos[i], qvel[i])
        g.data.qacc_warmstart[:] = 0  # our steps start the constraint solver from zero
        obs, rew, term, _, _ = g.step(u[i])
        for k, v in zip(ref, (g.data.qpos, g.data.qvel, obs, rew, term)):
            ref[k].append(np.copy(v))
    ref = {k: np.stack(v) for k, v in ref.items()}
    x = env.state_from(torch.tensor(qpos), torch.tensor(qvel))
    x1, obs, rew, term = env.step(x, torch.tensor(u))
    return env, g, ref, obs.numpy(), rew.numpy(), term.numpy(), x1


@pytest.mark.parametrize("warm_start", [True, False])
@pytest.mark.parametrize("task", ROBOTS)
def test_step_equals_gymnasium_from_100_states(task, warm_start):
    env, g, ref, obs, rew, term, x1 = _compare(task, warm_start=warm_start)
    assert env.spec.obs_dim == g.observation_space.shape[0] == obs.shape[1]
    np.testing.assert_allclose(env.qpos(x1).numpy(), ref["qpos"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(env.qvel(x1).numpy(), ref["qvel"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(obs, ref["obs"], atol=1e-9, rtol=1e-12)
    np.testing.assert_allclose(rew, ref["rew"], atol=1e-9, rtol=0)
    assert term.tolist() == ref["term"].tolist()


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
    env, g, ref, obs, rew, term, _ = _compare(task, n=30, warm_start=False, **options)
    assert obs.shape[1] == g.observation_space.shape[0]
    np.testing.assert_allclose(obs, ref["obs"], atol=1e-9, rtol=1e-12)
    np.testing.assert_allclose(rew, ref["rew"], atol=1e-9, rtol=0)
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
