"""Test-wide settings: one torch thread per worker (CI runs two workers on two cores)."""

from __future__ import annotations

import os

import matplotlib
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)
