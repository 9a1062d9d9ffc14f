"""MPCPolicy: warm-start shifting and resetting, horizon override, rollout integration."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import VecEnv, make

from diffctl.control import MPC, MPCConfig, MPCPolicy, RewardCost
from diffctl.data import rollout

torch.set_num_threads(1)
D = torch.float64


def _policy(T: int = 8, **kw) -> tuple[MPCPolicy, object]:
    env = make("pendulum", dtype=D)
    return MPCPolicy(MPC(env, RewardCost(env), MPCConfig(horizon=T, max_iter=5)), **kw), env


def test_act_shifts_plan_for_warm_start_and_resets_rows():
    pol, env = _policy()
    assert pol.needs_state and pol.horizon == 8
    x = torch.tensor([[1.0, 0.0], [-0.5, 0.3]], dtype=D)
    u = pol.act(x)
    assert u.shape == (2, 1)
    plan = pol.last_plan
    torch.testing.assert_close(u, plan.actions[0])
    torch.testing.assert_close(pol._prev[:-1], plan.actions[1:])
    torch.testing.assert_close(pol._prev[-1], plan.actions[-1])
    pol.reset(torch.tensor([True, False]))
    assert (pol._prev[:, 0] == 0).all() and (pol._prev[:, 1] != 0).any()
    pol.reset()
    assert pol._prev is None
    assert len(pol.history) == 1 and pol.history[0]["solve_time"] > 0
    assert pol.solve_time_per_step() > 0


def test_warm_start_is_passed_to_the_planner():
    seen, plans = [], []

    class Recorder:
        horizon = 4

        def __init__(self, inner):
            self.inner = inner

        def plan(self, x0, warm_start=None):
            seen.append(None if warm_start is None else warm_start.clone())
            plans.append(self.inner.plan(x0, warm_start))
            return plans[-1]

    env = make("pendulum", dtype=D)
    pol = MPCPolicy(Recorder(MPC(env, RewardCost(env), MPCConfig(horizon=4, max_iter=3))))
    venv = VecEnv(env, 3, seed=0)
    venv.reset()
    pol.step(venv)
    pol.step(venv)
    assert seen[0] is None  # the first step of every env starts cold
    torch.testing.assert_close(seen[1][:-1], plans[0].actions[1:])  # shifted previous plan
    assert seen[1].shape == (4, 3, 1) and bool((seen[1] != 0).any())
    no_warm = MPCPolicy(Recorder(MPC(env, RewardCost(env), MPCConfig(horizon=4))), warm_start=False)
    seen.clear()
    no_warm.act(venv.state)
    no_warm.act(venv.state)
    assert seen == [None, None]


def test_horizon_override_copies_the_planner():
    pol, _ = _policy(T=8, horizon=5)
    assert pol.horizon == 5 and pol.planner.config.horizon == 5
    u = pol.act(torch.zeros(1, 2, dtype=D))
    assert pol.last_plan.actions.shape == (5, 1, 1) and u.shape == (1, 1)
    with pytest.raises(ValueError, match="horizon"):
        _policy(horizon=0)
    with pytest.raises(TypeError, match="planner"):
        MPCPolicy(object())


def test_policy_in_rollout_uses_true_states():
    pol, env = _policy(T=6)
    traj = rollout(env, pol, 5, num_envs=2, generator=torch.Generator().manual_seed(0))
    assert traj.actions.shape == (5, 2, 1)
    assert len(pol.history) == 5
    assert (traj.actions.abs() <= 2.0).all()
