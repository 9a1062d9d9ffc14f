"""GreyBoxModel: physical parameters recovered by gradient descent through the simulator."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import make
from models_helpers import noisy_state_logs

from diffctl.models import FitConfig, GreyBoxModel, fit

CASES = [
    ("pendulum", {}, {"m": 1.3, "l": 0.8}),
    ("cartpole-continuous", {}, {"masscart": 1.2, "masspole": 0.15, "length": 0.6}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options", "true"), CASES, ids=[c[0] for c in CASES])
def test_recovers_physical_parameters_within_one_percent(name, options, true):
    env = make(name, **options)  # starts from the default parameters
    # 10 trajectories of 200 random-action steps of the system with the true parameters; the
    # recorded states carry measurement noise of 0.2% of each component's spread
    logs = noisy_state_logs(env.replace(**true), num_traj=10, steps=200, noise=0.002, seed=0)
    model = GreyBoxModel(env, list(true))
    start = {k: v.item() for k, v in model.estimates().items()}
    assert all(abs(start[k] / true[k] - 1) > 0.15 for k in true)
    cfg = FitConfig(
        epochs=200, lr=0.01, batch_size=2048, train_horizon=10, patience=0, progress=False
    )
    result = fit(model, logs, cfg)
    for k, v in model.estimates().items():
        assert abs(v.item() / true[k] - 1) < 0.01, (k, v.item(), true[k])
    assert result.metrics["k_step_nrmse"] < 0.05
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]


def test_parameters_stay_positive_under_large_steps():
    env = make("pendulum")
    logs = noisy_state_logs(env.replace(m=0.05), num_traj=4, steps=20, noise=0.0, seed=1)
    model = GreyBoxModel(env, ["m"])
    fit(model, logs, FitConfig(epochs=5, lr=1.0, batch_size=64, progress=False))
    assert model.estimates()["m"].item() > 0


def test_device_dtype_follow_the_module():
    model = GreyBoxModel(make("pendulum"), ["l"]).double()
    assert model.env.dtype == torch.float64
    x = torch.zeros(3, 2, dtype=torch.float64)
    assert model(x, torch.zeros(3, 1, dtype=torch.float64)).dtype == torch.float64
