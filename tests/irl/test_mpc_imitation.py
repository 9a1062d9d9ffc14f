"""Imitation through differentiable MPC: exact recovery on a linear system, swing-up pendulum."""

from __future__ import annotations

import math

import pytest
import torch
from diffctl.envs import make

from diffctl.control import MPC, MPCConfig, MPCPolicy, RewardCost
from diffctl.data import Trajectory, rollout
from diffctl.irl import MPCImitationConfig, mpc_imitation


def expert_policy(env, horizon: int, iters: int) -> MPCPolicy:
    # cold-started every step, like the imitating MPC, so the true cost reproduces it exactly
    return MPCPolicy(
        MPC(env, RewardCost(env), MPCConfig(horizon=horizon, max_iter=iters)), warm_start=False
    )


@pytest.mark.slow
def test_linear_system_recovers_cost() -> None:
    # unbounded: the held-out states below reach past the default action bound
    env = make("linear", dtype=torch.float64, action_low=-math.inf, action_high=math.inf)
    expert = expert_policy(env, 10, 3)
    demos = rollout(env, expert, 10, num_envs=8, generator=torch.Generator().manual_seed(0))
    res = mpc_imitation(
        env,
        demos,
        MPCImitationConfig(
            iterations=3, lr=1.0, horizon=10, mpc_iters=3, optimizer="lbfgs", action_weight_init=1.0
        ),
    )
    assert res.history[-1]["loss"] < 1e-8
    # held-out states: the learned cost gives the expert's actions to 1e-3
    x = 3 * torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    learned = res.policy(horizon=10, mpc_iters=3)
    assert (learned(x) - expert(x)).abs().max() < 1e-3
    # the ratio of state to action weights is the true Q / R = 10
    log_q, log_p = res.reward.log_q.detach(), res.reward.log_p.detach()
    assert (log_q - log_p).tolist() == pytest.approx([math.log(10)] * 2, abs=1e-2)


@pytest.mark.slow
def test_pendulum_imitation() -> None:
    env = make("pendulum", dtype=torch.float64)
    H, iters = 10, 10
    demos = rollout(
        env,
        expert_policy(env, H, iters),
        40,
        num_envs=6,
        generator=torch.Generator().manual_seed(0),
    )
    res = mpc_imitation(
        env,
        demos,
        MPCImitationConfig(
            iterations=4, lr=1.0, horizon=H, mpc_iters=iters, optimizer="lbfgs", angle_dims=(0,)
        ),
    )
    first, last = res.history[0]["loss"], res.history[-1]["loss"]
    assert last < first / 100
    x0 = env.initial_state(6, torch.Generator().manual_seed(1))
    expert_ret = rollout(env, expert_policy(env, H, iters), 100, x0=x0).rewards.sum(0).mean()
    learned_ret = rollout(env, res.policy(H, iters), 100, x0=x0).rewards.sum(0).mean()
    assert learned_ret >= expert_ret - 0.05 * expert_ret.abs()


def test_mpc_imitation_bad_input() -> None:
    env = make("linear", dtype=torch.float64)
    T, B = 3, 2
    bad = Trajectory(
        obs=torch.zeros(T, B, 3, dtype=torch.float64),
        actions=torch.zeros(T, B, 1, dtype=torch.float64),
        rewards=torch.zeros(T, B, dtype=torch.float64),
        next_obs=torch.zeros(T, B, 3, dtype=torch.float64),
        terminated=torch.zeros(T, B, dtype=torch.bool),
        truncated=torch.zeros(T, B, dtype=torch.bool),
    )
    with pytest.raises(ValueError, match="demos: observations have 3 dims"):
        mpc_imitation(env, bad)
    empty = Trajectory(
        obs=torch.zeros(0, B, 2, dtype=torch.float64),
        actions=torch.zeros(0, B, 1, dtype=torch.float64),
        rewards=torch.zeros(0, B, dtype=torch.float64),
        next_obs=torch.zeros(0, B, 2, dtype=torch.float64),
        terminated=torch.zeros(0, B, dtype=torch.bool),
        truncated=torch.zeros(0, B, dtype=torch.bool),
    )
    with pytest.raises(ValueError, match="demos: empty"):
        mpc_imitation(env, empty)
    with pytest.raises(ValueError, match="learn_dynamics"):
        good = rollout(env, lambda o: torch.zeros(o.shape[0], 1, dtype=o.dtype), 3, num_envs=2)
        mpc_imitation(env, good, MPCImitationConfig(learn_dynamics=("mass",)))


@pytest.mark.slow
def test_linear_system_recovers_dynamics_with_known_cost() -> None:
    from diffctl.irl import RewardConfig, RewardModel

    env = make("linear", dtype=torch.float64)
    expert = expert_policy(env, 10, 3)
    demos = rollout(env, expert, 10, num_envs=8, generator=torch.Generator().manual_seed(0))
    wrong = env.replace(B=env.params["B"] * torch.tensor([[1.0], [1.5]], dtype=torch.float64))
    cost = RewardModel(
        RewardConfig(state_dim=2, act_dim=1, use_action=True, kind="quadratic")
    ).double()
    with torch.no_grad():  # the true cost x'Qx + u'Ru = 0.5 (2 x'x + 0.2 u'u)
        cost.log_q.fill_(math.log(2.0))
        cost.log_p.fill_(math.log(0.2))
    cost.requires_grad_(False)
    res = mpc_imitation(
        wrong,
        demos,
        MPCImitationConfig(
            iterations=3,
            lr=1.0,
            horizon=10,
            mpc_iters=3,
            optimizer="lbfgs",
            learn_dynamics=("B",),
        ),
        reward_model=cost,
    )
    assert torch.allclose(res.params["B"], env.params["B"], atol=1e-4)
    assert torch.allclose(res.env.params["B"], env.params["B"], atol=1e-4)
