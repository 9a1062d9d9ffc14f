"""Continuous-env reward learning: behavioural cloning, sampled MaxEnt / max-margin, GAIL / AIRL
mechanics, the ``diffctl irl`` command and the expert policies of ``diffctl collect``."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import make

from diffctl.data import Trajectory, rollout, save_dataset
from diffctl.irl import (
    AdversarialConfig,
    BCConfig,
    RewardConfig,
    RewardModel,
    SampledMarginConfig,
    SampledMaxEntConfig,
    adversarial_irl,
    behavioural_cloning,
    load_adversarial,
    load_reward,
    max_margin_irl_sampled,
    maxent_irl_sampled,
)


def pd_expert(obs: torch.Tensor) -> torch.Tensor:
    """A simple stabilising controller of pendulum (obs = [cos, sin, thdot])."""
    th = torch.atan2(obs[:, 1], obs[:, 0])
    return (-10.0 * th - 2.0 * obs[:, 2]).clamp(-2, 2)[:, None]


@pytest.fixture(scope="module")
def pendulum_demos():
    env = make("pendulum")
    g = torch.Generator().manual_seed(0)
    x0 = torch.stack([0.3 * (torch.rand(8, generator=g) - 0.5), torch.zeros(8)], -1)
    return env, rollout(env, pd_expert, 30, x0=x0)


def test_behavioural_cloning_fits_expert(pendulum_demos) -> None:
    env, demos = pendulum_demos
    res = behavioural_cloning(demos, env.spec, BCConfig(epochs=150, lr=3e-3))
    assert res.history[-1]["loss"] < 0.1 * res.history[0]["loss"]
    obs = demos.obs.reshape(-1, 3)
    assert (res.policy(obs) - pd_expert(obs)).abs().mean() < 0.3


def test_sampled_maxent_and_margin_rank_expert_higher(pendulum_demos) -> None:
    env, demos = pendulum_demos
    for fit in ("maxent", "margin"):
        torch.manual_seed(0)
        reward = RewardModel(
            RewardConfig(state_dim=2, act_dim=1, use_action=True, hidden=(32,), env="pendulum")
        )
        if fit == "maxent":
            res = maxent_irl_sampled(
                env,
                demos,
                reward,
                lambda x: torch.zeros(x.shape[0], 1),
                SampledMaxEntConfig(iterations=30, num_samples=16, noise_std=1.0, lr=1e-2),
            )
        else:
            res = max_margin_irl_sampled(
                env, demos, reward, SampledMarginConfig(iterations=30, lr=1e-2)
            )
        # the learned reward prefers the expert's trajectories to random-action ones
        rand = rollout(
            env,
            lambda o: 4 * torch.rand(o.shape[0], 1) - 2,
            30,
            x0=demos.states[0],
            generator=torch.Generator().manual_seed(2),
        )
        with torch.no_grad():
            r_exp = reward(demos.states, demos.actions, demos.next_states).sum(0).mean()
            r_rand = reward(rand.states, rand.actions, rand.next_states).sum(0).mean()
        assert r_exp > r_rand, fit
        assert len(res.history) == 30


@pytest.mark.slow
@pytest.mark.parametrize("method", ["airl", "gail"])
def test_adversarial_mechanics(pendulum_demos, method) -> None:
    env, demos = pendulum_demos
    res = adversarial_irl(
        env, demos, AdversarialConfig(method=method, total_steps=4096, disc_batch=128)
    )
    assert len(res.history) == 2
    assert {"disc_loss", "disc_accuracy", "mean_return"} <= set(res.history[-1])
    x = env.initial_state(4)
    u = torch.zeros(4, 1)
    assert res.reward(x, u).shape == (4,)
    assert res.reward.config.use_action == (method == "gail")
    if method == "gail":
        assert res.shaping is None
        with pytest.raises(ValueError, match="only AIRL"):
            res.planning_cost()
    else:  # stage -g + 1e-3 |u|^2, terminal -h (the telescoped shaping)
        cost = res.planning_cost()
        with torch.no_grad():
            stage = cost.stage_seq(x[None], torch.ones(1, 4, 1))[0]
            assert torch.allclose(stage, -res.reward(x) + 1e-3)
            assert torch.allclose(cost.terminal(x), -res.shaping(x))
            x1 = env.dynamics(x, u)
            f = res.shaped_reward(x, u, x1)
            assert torch.allclose(f, res.reward(x) + res.gamma * res.shaping(x1) - res.shaping(x))
            done = torch.tensor([True, False, False, False])
            f_done = res.shaped_reward(x, u, x1, done)
            assert torch.allclose(f_done[0], res.reward(x[:1])[0] - res.shaping(x[:1])[0])


def test_bad_demos_continuous(pendulum_demos) -> None:
    env, demos = pendulum_demos
    with pytest.raises(ValueError, match="demos: observations have 3 dims"):
        behavioural_cloning(demos, make("cartpole").spec)
    empty = Trajectory(
        obs=demos.obs[:0],
        actions=demos.actions[:0],
        rewards=demos.rewards[:0],
        next_obs=demos.next_obs[:0],
        terminated=demos.terminated[:0],
        truncated=demos.truncated[:0],
    )
    with pytest.raises(ValueError, match="demos: empty"):
        adversarial_irl(env, empty)
    with pytest.raises(ValueError, match="method"):
        AdversarialConfig(method="vail")


def test_cli_irl_and_collect_experts(tmp_path) -> None:
    from diffctl.cli import main as cli_main
    from diffctl.cli.collect import CollectConfig, collect

    res = collect(
        CollectConfig(
            env="pendulum",
            policy="mpc",
            episodes=2,
            out=tmp_path / "e.npz",
            policy_args=("horizon=5", "iters=3"),
            progress=False,
        )
    )
    assert res.meta["policy"] == "mpc" and res.trajectory.states is not None
    out = tmp_path / "r.pt"
    rc = cli_main(
        [
            "irl",
            "--demos",
            str(tmp_path / "e.npz"),
            "--method",
            "margin",
            "--margin.iterations",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    reward = load_reward(out)
    assert reward.meta["method"] == "margin" and reward.meta["env"] == "pendulum"
    assert reward(torch.zeros(3, 2), torch.zeros(3, 1)).shape == (3,)
    airl = tmp_path / "airl.pt"  # AIRL writes h beside g; load_adversarial reads both
    args = ["--adversarial.total-steps", "4096", "--adversarial.disc-batch", "128"]
    rc = cli_main(
        ["irl", "--demos", str(tmp_path / "e.npz"), "--method", "airl", "--out", str(airl)] + args
    )
    assert rc == 0 and (tmp_path / "airl.shaping.pt").is_file()
    back = load_adversarial(airl)
    assert back.shaping is not None and back.reward.meta["method"] == "airl"
    assert back.gamma == back.reward.meta["gamma"] > 0
    # demos that do not match the env
    rc = cli_main(
        [
            "irl",
            "--demos",
            str(tmp_path / "e.npz"),
            "--env",
            "cartpole",
            "--method",
            "margin",
            "--out",
            str(tmp_path / "r2.pt"),
        ]
    )
    assert rc == 1 and not (tmp_path / "r2.pt").exists()
    with pytest.raises(ValueError, match="policy_args: 'ppo-checkpoint' needs path"):
        collect(
            CollectConfig(
                env="pendulum",
                policy="ppo-checkpoint",
                episodes=1,
                out=tmp_path / "p.npz",
                progress=False,
            )
        )


def test_ppo_checkpoint_expert(tmp_path) -> None:
    from diffctl.agents.ppo import PPOConfig, make_agent
    from diffctl.irl.experts import ppo_checkpoint_expert

    env = make("pendulum")
    agent = make_agent(env.spec, PPOConfig(), seed=0)
    agent.save(tmp_path / "a.pt")
    policy = ppo_checkpoint_expert(
        env, seed=0, device=torch.device("cpu"), args={"path": str(tmp_path / "a.pt")}
    )
    obs = env.observe(env.initial_state(5))
    assert torch.allclose(policy(obs), agent.act(obs, deterministic=True))
    traj = rollout(env, policy, 3, num_envs=2)
    assert isinstance(traj, Trajectory)
    save_dataset(tmp_path / "d.npz", traj, {"env": "pendulum"})
