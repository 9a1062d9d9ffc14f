"""Test-wide settings: one torch thread per worker (CI runs two workers on two cores), restored
after each test (a benchmark may set another count; the learning thresholds were tuned on one)."""

from __future__ import annotations

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)
