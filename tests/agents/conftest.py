"""Agents' tests run on one torch thread: the learning thresholds were tuned that way, and at
these sizes more threads only add overhead on a small CI machine."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
