"""Shared data helpers of the dynamics-model tests."""

from __future__ import annotations

import pytest
from diffctl.envs import make
from models_helpers import random_logs

from diffctl.data import Trajectory


@pytest.fixture(scope="session")
def pendulum_logs() -> Trajectory:
    """20,000 random-action pendulum transitions: 100 trajectories of 200 steps."""
    return random_logs(make("pendulum"), 100, 200, seed=0)
