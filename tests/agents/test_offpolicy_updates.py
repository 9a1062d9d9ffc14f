"""The off-policy updates against their papers' definitions: the critics' regression targets,
the policy losses and their gradients, and the compiled update against the eager one."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffctl.envs import make

from diffctl.agents import ddpg, sac, td3
from diffctl.agents.offpolicy import frozen

B = 32
SPEC = make("pendulum").spec


def _batch(seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    low, high = SPEC.action_bounds()
    f64 = torch.float64
    return {
        "obs": torch.randn(B, SPEC.obs_dim, generator=gen, dtype=f64),
        "actions": (low + (high - low) * torch.rand(B, SPEC.act_dim, generator=gen)).to(f64),
        "rewards": torch.randn(B, generator=gen, dtype=f64),
        "next_obs": torch.randn(B, SPEC.obs_dim, generator=gen, dtype=f64),
        "terminated": torch.rand(B, generator=gen) < 0.3,
    }


def _learner(module, cfg):
    """A float64 agent and its learner; the targets moved off their sources (so that using the
    wrong network, or the wrong critic of the two, shows)."""
    agent = module.make_agent(SPEC, cfg, seed=0).double()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, net in agent.nets.items():
            if name.endswith("_target"):
                for p in net.parameters():
                    p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return agent, module.make_learner(agent, cfg)


@torch.no_grad()
def _cross_targets(agent, o2: torch.Tensor, a2: torch.Tensor) -> None:
    """Make ``Q'_2 = 2 m - Q'_1`` with ``m`` the median of ``Q'_1(o', a')``: the smaller of
    the two target critics is ``Q'_1`` on half the rows, ``Q'_2`` on the other half."""
    q1_t, q2_t = agent.nets["q1_target"], agent.nets["q2_target"]
    q2_t.load_state_dict(q1_t.state_dict())
    median = q1_t(o2, a2).median()
    q2_t.net[-1].weight.neg_()
    q2_t.net[-1].bias.neg_().add_(2 * median)


def _args(batch):
    o, a, r, o2 = (batch[k] for k in ("obs", "actions", "rewards", "next_obs"))
    return o, a, r, o2, (~batch["terminated"]).double()


def _regression(agent, names, o, a, y):
    return sum(((agent.nets[k](o, a) - y) ** 2).mean() for k in names)


def test_actor_rsample_is_the_tanh_squashed_gaussian() -> None:
    # SAC eq. 11 and appendix C: a = scale tanh(u) + bias, u ~ N(mu, sigma^2), and
    # log pi(a) = log N(u) - sum log(scale (1 - tanh(u)^2)), against torch.distributions
    agent = sac.make_agent(SPEC, sac.SACConfig(), seed=0).double()
    actor = agent.actor
    obs = torch.randn(64, SPEC.obs_dim, generator=torch.Generator().manual_seed(0)).double()
    gen = torch.Generator().manual_seed(3)
    eps = torch.randn(64, SPEC.act_dim, generator=gen, dtype=torch.float64)
    action, logp = actor.rsample(obs, eps)
    mu, log_std = actor.head(actor.act_fn(actor.trunk(obs))).chunk(2, -1)
    log_std = log_std.clamp(actor.log_std_min, actor.log_std_max)
    u = mu + log_std.exp() * eps
    squash = torch.distributions.transforms.ComposeTransform(
        [
            torch.distributions.transforms.TanhTransform(cache_size=1),
            torch.distributions.transforms.AffineTransform(actor.bias, actor.scale, cache_size=1),
        ]
    )
    pi = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mu, log_std.exp()), squash
    )
    expected = squash(u)
    torch.testing.assert_close(action, expected)
    torch.testing.assert_close(logp, pi.log_prob(expected).sum(-1))
    # sample draws eps from its generator
    drawn = actor.sample(obs, torch.Generator().manual_seed(3))
    torch.testing.assert_close(drawn, (action, logp))


@pytest.mark.parametrize("layer_norm", [False, True])
def test_sac_critic_regresses_to_the_soft_clipped_double_q_target(layer_norm: bool) -> None:
    cfg = sac.SACConfig(hidden=(16, 16), alpha=0.7, critic_layer_norm=layer_norm)
    agent, learner = _learner(sac, cfg)
    o, a, r, o2, not_done = _args(_batch())
    eps = torch.randn(B, SPEC.act_dim, generator=torch.Generator().manual_seed(2), dtype=o.dtype)
    with torch.no_grad():
        a2, logp2 = agent.actor.sample(o2, torch.Generator().manual_seed(2))
    _cross_targets(agent, o2, a2)
    loss, q_mean = learner.critic_loss(o, a, r, o2, not_done, eps)
    with torch.no_grad():  # eq. 5-6: y = r + gamma (1 - d) (min_i Q'_i(o', a') - alpha log pi)
        nets = agent.nets
        q1_next, q2_next = nets["q1_target"](o2, a2), nets["q2_target"](o2, a2)
        assert (q1_next < q2_next).any() and (q2_next < q1_next).any()  # both critics matter
        y = r + cfg.gamma * not_done * (torch.minimum(q1_next, q2_next) - 0.7 * logp2)
        torch.testing.assert_close(loss, _regression(agent, ["q1", "q2"], o, a, y))
        torch.testing.assert_close(q_mean, nets["q1"](o, a).mean())


def test_sac_critic_layer_norm_normalises_the_critics_and_their_targets_only() -> None:
    def norms(net: torch.nn.Module) -> list[tuple[int, ...]]:
        return [m.normalized_shape for m in net.modules() if isinstance(m, torch.nn.LayerNorm)]

    plain = sac.make_agent(SPEC, sac.SACConfig(hidden=(16, 8)), seed=0)
    agent = sac.make_agent(SPEC, sac.SACConfig(hidden=(16, 8), critic_layer_norm=True), seed=0)
    for name in ("q1", "q2", "q1_target", "q2_target"):
        assert norms(agent.nets[name]) == [(16,), (8,)] and norms(plain.nets[name]) == []
    assert norms(agent.actor) == []
    for name in ("q1", "q2"):  # the targets start as copies of their critics
        for p, p_t in zip(agent.nets[name].parameters(), agent.nets[f"{name}_target"].parameters()):
            torch.testing.assert_close(p, p_t)
    with pytest.raises(TypeError, match="critic_layer_norm"):
        sac.SACConfig(critic_layer_norm=1)  # type: ignore[arg-type]


def test_sac_policy_and_temperature_gradients() -> None:
    cfg = sac.SACConfig(hidden=(16, 16), alpha=0.7)
    agent, learner = _learner(sac, cfg)
    o = _batch()["obs"]
    eps = torch.randn(B, SPEC.act_dim, generator=torch.Generator().manual_seed(2), dtype=o.dtype)
    with frozen(learner.critic_params):
        loss, actor_loss, logp_mean = learner.policy_loss(o, eps)
    loss.backward()
    assert all(p.grad is None for k in ("q1", "q2") for p in agent.nets[k].parameters())
    # reference: eq. 7/11 for the actor, eq. 18 for the temperature, from actor.sample
    ref = sac.make_agent(SPEC, cfg, seed=0).double()
    ref.load_state_dict(agent.state_dict())
    a, logp = ref.actor.sample(o, torch.Generator().manual_seed(2))
    q = torch.minimum(ref.nets["q1"](o, a), ref.nets["q2"](o, a))
    ref_actor_loss = (0.7 * logp - q).mean()
    ref_actor_loss.backward()
    torch.testing.assert_close(actor_loss, ref_actor_loss.detach())
    torch.testing.assert_close(logp_mean, logp.detach().mean())
    for p, p_ref in zip(agent.actor.parameters(), ref.actor.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad)
    log_alpha = agent.nets["temperature"].log_alpha
    torch.testing.assert_close(log_alpha.grad, -(logp.detach().mean() - SPEC.act_dim))


def test_td3_critic_regresses_to_the_smoothed_clipped_double_q_target() -> None:
    cfg = td3.TD3Config(hidden=(16, 16), policy_noise=0.6, noise_clip=0.5)
    agent, learner = _learner(td3, cfg)
    o, a, r, o2, not_done = _args(_batch())
    eps = torch.randn(B, SPEC.act_dim, generator=torch.Generator().manual_seed(2), dtype=o.dtype)
    with torch.no_grad():  # eq. 14 (noise 0.6 * 2 clipped at 0.5 * 2), eq. 10
        noise = (eps * 0.6 * 2.0).clamp(-1.0, 1.0)
        assert (noise.abs() == 1.0).any()  # the clip is active
        a2 = (agent.nets["actor_target"](o2) + noise).clamp(-2.0, 2.0)
    _cross_targets(agent, o2, a2)
    loss, _ = learner.critic_loss(o, a, r, o2, not_done, eps)
    with torch.no_grad():
        nets = agent.nets
        q1_next, q2_next = nets["q1_target"](o2, a2), nets["q2_target"](o2, a2)
        assert (q1_next < q2_next).any() and (q2_next < q1_next).any()
        y = r + cfg.gamma * not_done * torch.minimum(q1_next, q2_next)
        torch.testing.assert_close(loss, _regression(agent, ["q1", "q2"], o, a, y))


def test_ddpg_critic_regresses_to_the_target_networks_value() -> None:
    cfg = ddpg.DDPGConfig(hidden=(16, 16))
    agent, learner = _learner(ddpg, cfg)
    o, a, r, o2, not_done = _args(_batch())
    loss, _ = learner.critic_loss(o, a, r, o2, not_done)
    with torch.no_grad():  # Alg. 1: y = r + gamma (1 - d) Q'(o', mu'(o'))
        nets = agent.nets
        y = r + cfg.gamma * not_done * nets["q1_target"](o2, nets["actor_target"](o2))
        torch.testing.assert_close(loss, _regression(agent, ["q1"], o, a, y))


@pytest.mark.parametrize("module", [td3, ddpg], ids=["td3", "ddpg"])
def test_deterministic_actor_ascends_the_first_critic(module) -> None:
    agent, learner = _learner(module, module.CONFIG(hidden=(16, 16)))
    o = _batch()["obs"]
    with frozen(list(agent.nets["q1"].parameters())):
        loss = learner.actor_loss(o)
    loss.backward()
    assert all(p.grad is None for p in agent.nets["q1"].parameters())
    ref = module.make_agent(SPEC, module.CONFIG(hidden=(16, 16)), seed=0).double()
    ref.load_state_dict(agent.state_dict())
    ref_loss = -ref.nets["q1"](o, ref.actor(o)).mean()  # the deterministic policy gradient
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss)
    for p, p_ref in zip(agent.actor.parameters(), ref.actor.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad)


@pytest.mark.slow
@pytest.mark.parametrize("module", [sac, td3, ddpg], ids=["sac", "td3", "ddpg"])
def test_compiled_update_matches_eager(module) -> None:
    cfg = dataclasses.replace(module.CONFIG(hidden=(16, 16)), tau=0.2)
    agents, learners = [], []
    for compile_ in (False, True):
        agent = module.make_agent(SPEC, dataclasses.replace(cfg, compile=compile_), seed=0)
        agents.append(agent)
        learners.append(module.make_learner(agent, dataclasses.replace(cfg, compile=compile_)))
    gens = [torch.Generator().manual_seed(2) for _ in learners]
    for n_update in range(4):
        batch = {k: v.float() if v.is_floating_point() else v for k, v in _batch(n_update).items()}
        outs = [learner.update(batch, gen, n_update) for learner, gen in zip(learners, gens)]
        assert outs[0].keys() == outs[1].keys()
        for k in outs[0]:
            torch.testing.assert_close(outs[1][k], outs[0][k], rtol=1e-4, atol=1e-5, msg=k)
    eager, compiled = agents[0].state_dict(), agents[1].state_dict()
    for k, v in eager.items():
        if isinstance(v, torch.Tensor):
            torch.testing.assert_close(compiled[k], v, rtol=1e-4, atol=1e-5, msg=k)
