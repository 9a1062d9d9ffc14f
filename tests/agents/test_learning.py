"""Learning tests: each tuned default reaches its published return (seeded, CPU, one thread).

PPO / DDPG / TD3 on pendulum are in ``diffctl bench ppo`` / ``diffctl bench sac`` (too long
for the test budget)."""

from __future__ import annotations

import pytest

from diffctl.agents import default_config, evaluate
from diffctl.agents import train as train_by_name

pytestmark = pytest.mark.slow


def _eval(agent, env: str) -> float:
    return evaluate(agent, env, episodes=20, seed=123)["mean_return"]


def test_ppo_cartpole_reaches_475() -> None:
    result = train_by_name("ppo", "cartpole", seed=0)
    assert _eval(result.agent, "cartpole") >= 475


def test_reinforce_with_baseline_cartpole_reaches_195() -> None:
    cfg = default_config("reinforce", "cartpole")
    assert cfg.baseline
    result = train_by_name("reinforce", "cartpole", cfg, seed=0)
    assert _eval(result.agent, "cartpole") >= 195


def test_a2c_cartpole_reaches_475() -> None:
    result = train_by_name("a2c", "cartpole", seed=0)
    assert _eval(result.agent, "cartpole") >= 475


def test_sac_pendulum_reaches_minus_250_within_20k_steps() -> None:
    cfg = default_config("sac", "pendulum")
    assert cfg.total_steps <= 20_000
    result = train_by_name("sac", "pendulum", cfg, seed=0)
    assert result.history[-1]["step"] <= 20_000
    assert _eval(result.agent, "pendulum") >= -250


def test_apg_pendulum_reaches_minus_250() -> None:
    result = train_by_name("apg", "pendulum", seed=0)
    assert _eval(result.agent, "pendulum") >= -250
