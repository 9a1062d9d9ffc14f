"""Model-based loop: pendulum swing-up from a handful of real episodes; planners and rewards."""

from __future__ import annotations

import math

import pytest
import torch
from diffctl.envs import make

from diffctl.models import EnsembleDynamics, FitConfig
from diffctl.models.mbrl import MBRLConfig, make_planner, mbrl

TINY_FIT = FitConfig(epochs=2, batch_size=64, val_fraction=0.0, eval_horizon=5, progress=False)


@pytest.mark.slow
def test_pendulum_swing_up_within_ten_episodes():
    cfg = MBRLConfig(
        env="pendulum",
        model="mlp",
        hidden=(32, 32),
        planner="cem",
        horizon=30,
        num_samples=200,
        num_elites=20,
        plan_iterations=4,
        iterations=9,
        initial_episodes=1,
        target_return=-200.0,
        seed=0,
        progress=False,
    )
    result = mbrl(cfg)
    h = result.history
    assert h[0]["iteration"] == 0 and h[0]["return"] < -600  # the random episode
    best = max(h, key=lambda r: r["return"])
    assert best["return"] >= -200 and best["iteration"] >= 1
    assert best["env_steps"] <= 2000  # <= 10 episodes of real data, random one included
    # a genuine swing-up: that episode started in the lower half (|theta| > pi / 2)
    assert abs(math.remainder(best["x0"][0], 2 * math.pi)) > math.pi / 2
    # episodes one after another along time, each ending in a time-limit step
    assert result.data.batch_size == 1 and result.data.num_steps == 200 * len(h)
    assert result.data.truncated.sum() == len(h) and not result.data.terminated.any()
    assert [r["env_steps"] for r in h] == [200 * (i + 1) for i in range(len(h))]


def test_learned_reward_callable_is_used_for_planning():
    env = make("pendulum")
    calls = []

    def reward_fn(x, u, x_next):
        calls.append(x.shape[0])
        return -(x[..., 0] ** 2)

    cfg = MBRLConfig(
        hidden=(8,),
        num_samples=16,
        num_elites=4,
        plan_iterations=1,
        horizon=3,
        iterations=1,
        episode_steps=5,
        fit=TINY_FIT,
        progress=False,
    )
    result = mbrl(cfg, env=env, reward_fn=reward_fn)
    assert calls and len(result.history) == 2
    # returns are measured with the env's true reward
    torch.testing.assert_close(
        result.data.rewards[5:, 0],
        env.reward(
            result.data.states[5:, 0], result.data.actions[5:, 0], result.data.next_states[5:, 0]
        ),
    )


@pytest.mark.parametrize(
    ("model", "planner", "ts"),
    [
        ("ensemble", "cem", "tsinf"),
        ("ensemble", "mppi", "ts1"),
        ("ensemble", "icem", "ts1"),
        ("mlp", "mpc", "tsinf"),
        ("linear", "cem", "tsinf"),
    ],
)
def test_every_model_and_planner_runs_the_loop(model, planner, ts):
    cfg = MBRLConfig(
        model=model,
        planner=planner,
        ts_mode=ts,
        hidden=(8,),
        num_members=2,
        particles=2,
        num_samples=16,
        num_elites=4,
        plan_iterations=1,
        horizon=3,
        iterations=1,
        episode_steps=5,
        eval_episodes=2,
        fit=TINY_FIT,
        progress=False,
    )
    result = mbrl(cfg)
    row = result.history[-1]
    assert row["iteration"] == 1 and row["env_steps"] == 10
    assert math.isfinite(row["return"]) and math.isfinite(row["eval_return"])
    assert result.model.kind == model


def test_ensemble_planner_uses_trajectory_sampling():
    env = make("pendulum")
    torch.manual_seed(0)
    model = EnsembleDynamics(2, 1, num_members=2, hidden=(8,))
    cfg = MBRLConfig(model="ensemble", particles=4, num_samples=8, num_elites=2, horizon=2)
    planner = make_planner(model, env.reward, env, cfg, torch.Generator().manual_seed(0))
    assert planner.config.particles == 4
    x0 = torch.zeros(1, 2)
    a = planner.plan(x0).actions
    b = make_planner(model, env.reward, env, cfg, torch.Generator().manual_seed(0)).plan(x0).actions
    torch.testing.assert_close(a, b)  # seeded


def test_config_validation_and_bad_arguments():
    with pytest.raises(ValueError, match="iterations"):
        MBRLConfig(iterations=0)
    with pytest.raises(ValueError, match="num_elites"):
        MBRLConfig(num_samples=4, num_elites=5)
    with pytest.raises(ValueError, match="env_options"):
        MBRLConfig(env_options=("swing_up",))
    assert MBRLConfig(env_options=("swing_up=true", "x=abc")).env_kwargs() == {
        "swing_up": True,
        "x": "abc",
    }
    with pytest.raises(ValueError, match="discrete"):
        mbrl(MBRLConfig(env="cartpole", progress=False))
    with pytest.raises(TypeError, match="reward_fn"):
        mbrl(MBRLConfig(progress=False), reward_fn=3)
