"""Termination evaluated on predicted states: rewards stop after the first terminal state."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import make

from diffctl.control import CEM, ICEM, MPPI, CEMConfig, ICEMConfig, MPPIConfig, RolloutObjective

D = torch.float64


def _step(x, u):
    return x + u


def _reward(x, u, x1):  # progress plus an alive bonus of 1 per step
    return u[:, 0] + 1.0


def _fell(x):
    return x[:, 0] > 2.5


def test_rewards_count_until_the_first_terminal_state():
    obj = RolloutObjective(
        _step, reward=_reward, terminal_cost=lambda x: 10.0 + 0 * x[:, 0], terminated=_fell
    )
    x0 = torch.zeros(2, 1, dtype=D)
    us = torch.tensor([[0.6, 0.0], [0.6, 0.0], [1.4, 0.0], [0.6, 0.0]], dtype=D)[..., None]
    cost, xs = obj(x0, us)
    # row 0: x = 0.6, 1.2, 2.6 (ends the episode, its reward counts), 3.2 (not counted)
    # row 1: never ends: 4 bonuses and the terminal cost
    torch.testing.assert_close(cost, torch.tensor([-(1.6 + 1.6 + 2.4), -4.0 + 10.0], dtype=D))
    plain = RolloutObjective(_step, reward=_reward)
    torch.testing.assert_close(
        plain(x0, us)[0], torch.tensor([-(1.6 + 1.6 + 2.4 + 1.6), -4.0], dtype=D)
    )


def test_an_envs_terminated_is_called_unchecked():
    env = make("pendulum")
    obj = RolloutObjective(env, reward=env.reward, terminated=env.terminated)
    assert obj._done == env._terminated and obj.terminated == env.terminated


@pytest.mark.parametrize("kind", ["cem", "mppi", "icem"])
def test_planners_avoid_terminal_states(kind):
    """Full speed earns 2 per step but ends the episode at x > 2.5 (return 6 over 6 steps);
    creeping up to 2.5 in five steps and ending it on the last one earns up to 9.5."""
    common = dict(horizon=6, num_samples=300, iterations=6)
    kw = dict(reward=_reward, terminated=_fell, action_low=-1.0, action_high=1.0, nu=1)
    if kind == "cem":
        planner = CEM(_step, config=CEMConfig(num_elites=30, bound_mode="clip", **common), **kw)
    elif kind == "mppi":
        planner = MPPI(
            _step, config=MPPIConfig(temperature=0.05, control_cost=False, **common), **kw
        )
    else:
        planner = ICEM(_step, config=ICEMConfig(num_elites=30, **common), **kw)
    res = planner.plan(torch.zeros(1, 1, dtype=D))
    assert res.states[:-1].max() <= 2.5, res.states[:, 0, 0]  # the last step may end it
    assert -res.cost.item() > 8.5, res.cost
    # without the termination function the plan runs at full speed past 2.5
    kw.pop("terminated")
    blind = type(planner)(_step, config=planner.config, **kw).plan(torch.zeros(1, 1, dtype=D))
    assert blind.states[-1, 0, 0] > 4.0


def test_terminated_needs_reward():
    with pytest.raises(ValueError, match="^terminated: "):
        RolloutObjective(_step, cost=lambda x, u: x.sum(-1), terminated=_fell)
    with pytest.raises(TypeError, match="^terminated: "):
        CEM(_step, reward=_reward, terminated=3, nu=1)
