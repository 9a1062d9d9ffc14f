"""``collect_on_policy`` with ``GaussianActorCritic.rollout_sampler`` (the noise of a rollout
drawn at once) at sizes where that noise is not the stream of per-step ``sample`` calls: the
actions and log-probabilities are still exactly the policy's for the drawn noise."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import VecEnv, make

from diffctl.agents import ppo
from diffctl.agents.common import collect_on_policy
from diffctl.agents.networks import GaussianActorCritic, _normal_log_prob, _standard_log_prob


@pytest.mark.parametrize("rows", [5, 300])  # plain tanh and the folded sigmoid form
def test_rollout_sampler_actions_are_the_policys_for_its_noise(rows):
    torch.manual_seed(0)
    ac = GaussianActorCritic(3, 2, (16, 16), "tanh", log_std_init=-0.5)
    obs = torch.randn(4, rows, 3)
    draw, log_probs = ac.rollout_sampler(rows, 4, torch.Generator().manual_seed(3))
    noise = torch.randn(4, rows, 2, generator=torch.Generator().manual_seed(3))
    std = ac.log_std.detach().exp()
    with torch.no_grad():
        actions = torch.stack([draw(o) for o in obs])
        mu = torch.stack([ac.policy_output(o) for o in obs])  # (rows rows a call, as draw)
        assert torch.equal(actions, torch.addcmul(mu, std, noise))
        assert torch.equal(log_probs, _standard_log_prob(noise, ac.log_std))
        expected = _normal_log_prob(actions, mu, ac.log_std)
    torch.testing.assert_close(log_probs, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(StopIteration):  # one draw per step of the rollout
        draw(obs[0])


@pytest.mark.parametrize("num_envs", [5, 16])
def test_collect_on_policy_acts_on_the_noise_of_the_whole_rollout(num_envs):
    cfg = ppo.PPOConfig(num_envs=num_envs, num_steps=24, num_minibatches=1)
    runner = VecEnv(make("pendulum"), num_envs, seed=0, max_steps=10)  # resets included
    agent = ppo.make_agent(runner.spec, cfg, seed=1)
    agent.obs_normalizer.update(torch.randn(64, 3, generator=torch.Generator().manual_seed(2)))
    obs0 = runner.reset(seed=0)
    batch, _ = collect_on_policy(runner, agent, obs0, 24, torch.Generator().manual_seed(3))
    noise = torch.randn(24, num_envs, 1, generator=torch.Generator().manual_seed(3))
    ac = agent.actor
    with torch.no_grad():
        mu = torch.stack([ac.policy_output(o) for o in batch["obs"]])
        assert torch.equal(batch["obs"], agent.normalize_obs(batch["raw_obs"]))
        assert torch.equal(batch["actions"], torch.addcmul(mu, ac.log_std.exp(), noise))
        assert torch.equal(batch["log_probs"], _standard_log_prob(noise, ac.log_std))
    assert torch.equal(batch["raw_obs"][0], obs0)
    keep = ~(batch["terminated"] | batch["truncated"])[:-1]  # steps the env did not reset
    assert torch.equal(batch["raw_obs"][1:][keep], batch["final_obs"][:-1][keep])
    assert not keep.all()
