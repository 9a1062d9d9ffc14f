"""PPO: the loss against its definition (PPO eq. 7 and 9 with torch.distributions), the
compiled update against the eager one, the on-policy rollout, and (slow) the tuned pendulum
preset learning the swing-up."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffctl.envs import VecEnv, make
from torch.distributions import Categorical, Normal

from diffctl.agents import evaluate, ppo
from diffctl.agents import train as train_by_name
from diffctl.agents.runner import collect_on_policy
from diffctl.data import Trajectory

F64 = torch.float64


def _minibatch(agent, rows: int, g: torch.Generator, dtype=F64):
    """A minibatch of ``rows`` samples for ``agent``, with old log-probabilities and values
    around the current ones: ratios and value changes on both sides of the clip ranges."""
    spec = agent.spec
    obs = torch.randn(rows, spec.obs_dim, generator=g, dtype=dtype) * 2
    if spec.discrete:
        act = torch.randint(0, spec.num_actions, (rows,), generator=g)
    else:
        act = torch.randn(rows, spec.act_dim, generator=g, dtype=dtype)
    with torch.no_grad():
        logp, _ = agent.actor.log_prob_entropy(obs, act)
        value = agent.nets["critic"](obs)
    noise = [torch.randn(rows, generator=g, dtype=dtype) for _ in range(4)]
    return obs, act, logp + 0.4 * noise[0], noise[1], value + noise[2], value + 0.4 * noise[3]


@pytest.mark.parametrize("env", ["pendulum", "cartpole"])
@pytest.mark.parametrize(
    "changes",
    [{}, {"clip_vloss": False, "norm_adv": False, "ent_coef": 0.01, "vf_coef": 1.3}],
)
def test_ppo_loss_is_eq_9_with_the_clipped_surrogate_and_value_loss(env, changes):
    cfg = dataclasses.replace(ppo.PPOConfig(hidden=(8, 8)), **changes)
    agent = ppo.make_agent(make(env).spec, cfg, seed=0).double()
    mb = _minibatch(agent, 256, torch.Generator().manual_seed(1))
    loss, stats = ppo.ppo_loss(agent.actor, agent.nets["critic"], cfg, *mb)

    # the definitions, written out with torch.distributions
    obs, act, logp_old, adv, ret, old_v = mb
    if agent.spec.discrete:
        dist = Categorical(logits=agent.actor.logits(obs))
        logp, entropy = dist.log_prob(act), dist.entropy()
    else:
        dist = Normal(agent.actor.mean(obs), agent.actor.log_std.exp())
        logp, entropy = dist.log_prob(act).sum(-1), dist.entropy().sum(-1)
    ratio = (logp - logp_old).exp()
    eps = cfg.clip_coef
    if cfg.norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv).mean()
    v = agent.nets["critic"](obs)
    if cfg.clip_vloss:
        v_clipped = old_v + torch.clamp(v - old_v, -eps, eps)
        v_loss = 0.5 * torch.max((v - ret) ** 2, (v_clipped - ret) ** 2).mean()
    else:
        v_loss = 0.5 * ((v - ret) ** 2).mean()
    want = -surrogate + cfg.vf_coef * v_loss - cfg.ent_coef * entropy.mean()
    torch.testing.assert_close(loss, want)
    kl = ((ratio - 1) - (logp - logp_old)).mean()
    clipfrac = ((ratio - 1).abs() > eps).double().mean()
    expected = torch.stack([-surrogate, v_loss, entropy.mean(), kl, clipfrac]).detach()
    torch.testing.assert_close(stats, expected)
    # the data crosses both clips: ratios and value changes inside and outside the ranges
    assert 0.2 < clipfrac < 0.8
    assert ((v - old_v).abs() > eps).any() and ((v - old_v).abs() < eps).any()


def test_compiled_update_matches_eager_update():
    """``compile=True`` runs the same maths: the same stats and, after a few Adam steps, the
    same parameters up to float32 rounding."""
    cfg = ppo.PPOConfig(hidden=(16, 16))
    spec = make("pendulum").spec
    g = torch.Generator().manual_seed(1)
    data = [_minibatch(ppo.make_agent(spec, cfg), 64, g, torch.float32) for _ in range(4)]
    runs = []
    for compiled in (False, True):
        c = dataclasses.replace(cfg, compile=compiled)
        agent = ppo.make_agent(spec, c, seed=0)
        opt = torch.optim.Adam(agent.parameters(), lr=1e-3, eps=1e-5, fused=True)
        update = ppo.make_update(agent, opt, c)
        stats = torch.stack([update(*mb) for mb in data])
        runs.append((torch.cat([p.detach().reshape(-1) for p in agent.parameters()]), stats))
    (eager, eager_stats), (compiled, compiled_stats) = runs
    init = torch.cat([p.detach().reshape(-1) for p in ppo.make_agent(spec, cfg).parameters()])
    assert (eager - init).abs().max() > 1e-3  # the steps did move the parameters
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled_stats, eager_stats, rtol=1e-4, atol=1e-6)


def test_collect_on_policy_records_what_the_policy_saw_and_did():
    cfg = ppo.PPOConfig(num_envs=5, num_steps=24, num_minibatches=1)
    runner = VecEnv(make("pendulum"), 5, seed=0, max_steps=10)  # auto-resets included
    agent = ppo.make_agent(runner.spec, cfg, seed=1)
    agent.obs_normalizer.update(torch.randn(64, 3, generator=torch.Generator().manual_seed(2)))
    obs0 = runner.reset(seed=0)
    traj = collect_on_policy(runner, agent, 24, torch.Generator().manual_seed(3))
    assert isinstance(traj, Trajectory) and traj.rewards.shape == (24, 5)
    sample, logp = traj.extras["sample"], traj.extras["log_prob"]
    assert torch.equal(traj.obs[0], obs0)
    assert torch.equal(traj.extras["policy_obs"], agent.normalize_obs(traj.obs))
    assert torch.equal(traj.actions, agent.clip_action(sample))
    assert not torch.equal(traj.actions, sample)  # some samples left the box
    with torch.no_grad():
        want, _ = agent.actor.log_prob_entropy(traj.extras["policy_obs"], sample)
    torch.testing.assert_close(logp, want, rtol=1e-5, atol=1e-5)
    keep = ~(traj.terminated | traj.truncated)[:-1]  # steps the env did not reset after
    assert torch.equal(traj.obs[1:][keep], traj.next_obs[:-1][keep]) and not keep.all()
    # the next call continues from where the runner stands
    again = collect_on_policy(runner, agent, 2, torch.Generator().manual_seed(4))
    last_done = (traj.terminated | traj.truncated)[-1]
    assert torch.equal(again.obs[0][~last_done], traj.next_obs[-1][~last_done])


@pytest.mark.slow
def test_ppo_pendulum_preset_reaches_minus_250() -> None:
    """The tuned preset (the ``diffctl bench ppo`` configuration) learns the swing-up: the
    deterministic policy reaches -250 (seeded, CPU, one thread)."""
    result = train_by_name("ppo", "pendulum", seed=0)
    assert result.history[-1]["step"] <= 200_000
    assert evaluate(result.agent, "pendulum", episodes=20, seed=123)["mean_return"] >= -250
