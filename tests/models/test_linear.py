"""LinearModel: closed-form (ridge) least squares identification."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffctl.envs import make

from diffctl.models import FitConfig, LinearModel, fit


def stable_system(nx: int, nu: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(nx, nx, generator=g, dtype=torch.float64)
    a = 0.9 * m / torch.linalg.eigvals(m).abs().max()
    b = torch.randn(nx, nu, generator=g, dtype=torch.float64)
    return a, b


def linear_logs(a, b, num_traj: int, steps: int, noise: float, seed: int) -> dict:
    """Noisy logs ``x' = A x + B u + w`` with random inputs, ``w ~ N(0, noise^2)``."""
    g = torch.Generator().manual_seed(seed)
    nx, nu = b.shape
    x = torch.randn(num_traj, nx, generator=g, dtype=torch.float64)
    xs, us = [], []
    for _ in range(steps):
        u = torch.randn(num_traj, nu, generator=g, dtype=torch.float64)
        xs.append(x)
        us.append(u)
        x = x @ a.T + u @ b.T + noise * torch.randn(num_traj, nx, generator=g, dtype=torch.float64)
    states = torch.stack(xs + [x])
    return {"states": states[:-1], "next_states": states[1:], "actions": torch.stack(us)}


def test_equals_exact_least_squares_solution():
    a, b = stable_system(4, 2, seed=0)
    logs = linear_logs(a, b, num_traj=10, steps=50, noise=0.05, seed=1)
    model = LinearModel(4, 2, ridge=0.0).double()
    fit(model, logs, FitConfig(val_fraction=0.0, progress=False))
    x = logs["states"].reshape(-1, 4).numpy()
    u = logs["actions"].reshape(-1, 2).numpy()
    y = logs["next_states"].reshape(-1, 4).numpy()
    z = np.concatenate([x, u, np.ones((len(x), 1))], axis=1)
    theta, *_ = np.linalg.lstsq(z, y, rcond=None)
    np.testing.assert_allclose(model.A.numpy(), theta[:4].T, atol=1e-10)
    np.testing.assert_allclose(model.B.numpy(), theta[4:6].T, atol=1e-10)
    np.testing.assert_allclose(model.c.numpy(), theta[6], atol=1e-10)


def test_ridge_matches_normal_equations_with_unpenalised_offset():
    a, b = stable_system(3, 1, seed=2)
    logs = linear_logs(a, b, num_traj=2, steps=20, noise=0.1, seed=3)
    lam = 5.0
    model = LinearModel(3, 1, ridge=lam).double()
    model.fit_closed_form(logs["states"], logs["actions"], logs["next_states"])
    x = logs["states"].reshape(-1, 3).numpy()
    u = logs["actions"].reshape(-1, 1).numpy()
    y = logs["next_states"].reshape(-1, 3).numpy()
    z = np.concatenate([x, u, np.ones((len(x), 1))], axis=1)
    theta = np.linalg.solve(z.T @ z + lam * np.diag([1, 1, 1, 1, 0]), z.T @ y)
    np.testing.assert_allclose(model.A.numpy(), theta[:3].T, atol=1e-10)
    np.testing.assert_allclose(model.B.numpy(), theta[3:4].T, atol=1e-10)
    np.testing.assert_allclose(model.c.numpy(), theta[4], atol=1e-10)


def test_recovers_random_stable_system_and_error_shrinks_with_data():
    a, b = stable_system(4, 2, seed=4)
    true = torch.cat([a, b], 1)
    errs = []
    for num_traj in (2, 200):  # 100 vs 10,000 transitions
        logs = linear_logs(a, b, num_traj=num_traj, steps=50, noise=0.05, seed=5)
        model = LinearModel(4, 2).double()
        fit(model, logs, FitConfig(val_fraction=0.0, progress=False))
        errs.append(torch.linalg.norm(torch.cat([model.A, model.B], 1) - true).item())
    # least-squares error falls like 1/sqrt(N): 100x the data, about 10x smaller
    assert errs[1] < errs[0] / 4
    assert errs[1] < 0.01


def test_operating_point_fit_recovers_pendulum_linearisation():
    env = make("pendulum", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2000, 2, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([1.0, 2.0])
    u = (torch.rand(2000, 1, generator=g, dtype=torch.float64) - 0.5) * 2.0
    xn = env.dynamics(x, u)
    model = LinearModel(2, 1, ridge=0.0, operating_point=([0.0, 0.0], [0.0]), bandwidth=0.1)
    model = model.double().fit_closed_form(x, u, xn)
    dt, k = 0.05, 3 * 10.0 / 2  # thdot' = thdot + (15 sin th + 3 u) dt, th' = th + thdot' dt
    a = torch.tensor([[1 + k * dt**2, dt], [k * dt, 1.0]], dtype=torch.float64)
    b = torch.tensor([[3 * dt**2], [3 * dt]], dtype=torch.float64)
    torch.testing.assert_close(model.A, a, atol=5e-4, rtol=0)
    torch.testing.assert_close(model.B, b, atol=1e-4, rtol=0)
    torch.testing.assert_close(model.c, torch.zeros(2, dtype=torch.float64), atol=1e-4, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="ridge"):
        LinearModel(2, 1, ridge=-1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        LinearModel(2, 1, bandwidth=0.5)
    with pytest.raises(ValueError, match="operating_point"):
        LinearModel(2, 1, operating_point=([0.0], [0.0]))
    with pytest.raises(ValueError, match="transitions cannot determine"):
        LinearModel(3, 1, ridge=0.0).fit_closed_form(
            torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(2, 3)
        )
