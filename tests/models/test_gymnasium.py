"""A model fitted to logs of gymnasium's own Pendulum-v1 plans a swing-up in that env."""

from __future__ import annotations

import pytest
import torch

from diffctl.control import CEM, CEMConfig, MPCPolicy
from diffctl.data import rollout
from diffctl.models import FitConfig, MLPDynamics, fit

pytest.importorskip("gymnasium")


def pendulum_obs_reward(obs, u, obs_next):
    """Pendulum-v1's reward written on its observation ``[cos th, sin th, th_dot]``."""
    th = torch.atan2(obs[..., 1], obs[..., 0])
    a = u[..., 0].clamp(-2.0, 2.0)
    return -(th**2 + 0.1 * obs[..., 2] ** 2 + 0.001 * a**2)


@pytest.mark.slow
def test_model_from_gymnasium_logs_swings_up_gymnasium_pendulum():
    from diffctl.envs import from_gymnasium

    g = torch.Generator().manual_seed(0)
    logs_env = from_gymnasium("Pendulum-v1", num_envs=20, seed=0)
    logs = rollout(logs_env, lambda o: 4 * torch.rand(o.shape[0], 1, generator=g) - 2, 200)
    assert logs.states is None and logs.truncated[-1].all()  # observations only
    torch.manual_seed(0)
    model = MLPDynamics(3, 1, hidden=(32, 32))  # the state is the observation
    result = fit(model, logs, FitConfig(epochs=40, lr=3e-3, batch_size=128, progress=False))
    assert result.metrics["k_step_nrmse"] < 0.2
    planner = CEM(
        model.requires_grad_(False),
        reward=pendulum_obs_reward,
        action_low=-2.0,
        action_high=2.0,
        nu=1,
        config=CEMConfig(horizon=30, num_samples=200, num_elites=20, iterations=4),
    )
    policy = MPCPolicy(planner)
    env = from_gymnasium("Pendulum-v1", num_envs=5, seed=100)
    obs = env.reset()
    assert (obs[:, 0] < 0).sum() >= 3  # most episodes start in the lower half
    ret = torch.zeros(5)
    with torch.no_grad():
        for _ in range(200):
            obs, rew, term, trunc, info = env.step(policy.act(obs))
            ret += rew
    assert trunc.all()
    # measured: -135, -246, -265, -128, -133 (mean -181); the same planner on the exact
    # dynamics scores about -210 on random starts (a start hanging down costs ~-250 or more)
    assert ret.mean() >= -200, ret.tolist()
