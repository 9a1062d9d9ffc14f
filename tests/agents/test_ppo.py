"""PPO with its tuned pendulum preset (the ``diffctl bench ppo`` configuration) learns the
swing-up: the deterministic policy reaches -250 (seeded, CPU, one thread)."""

from __future__ import annotations

import pytest

from diffctl.agents import evaluate
from diffctl.agents import train as train_by_name

pytestmark = pytest.mark.slow


def test_ppo_pendulum_preset_reaches_minus_250() -> None:
    result = train_by_name("ppo", "pendulum", seed=0)
    assert result.history[-1]["step"] <= 200_000
    assert evaluate(result.agent, "pendulum", episodes=20, seed=123)["mean_return"] >= -250
