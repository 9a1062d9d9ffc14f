"""The off-policy learners' hand-derived gradients against autograd on the same losses.

Each reference below is the algorithm's update written with autograd (the losses of the
module docstrings of ``sac``, ``td3`` and ``ddpg``); the learner, run on an identical agent
with the same generator, must end at the same parameters, optimiser moments and targets.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffctl.envs import make

from diffctl.agents import ddpg, sac, td3
from diffctl.agents.common import FlatAdam
from diffctl.agents.networks import ValueCritic, mlp
from diffctl.agents.offpolicy import (
    FlatTargets,
    ReluMLP,
    ensemble_parameters,
    soft_update,
)

B = 32


@pytest.mark.parametrize("k", [1, 2])
def test_relu_mlp_ensemble_forward_backward_match_autograd(k: int) -> None:
    torch.manual_seed(0)
    nets = [mlp(5, (7, 6), 3, "relu").double() for _ in range(k)]
    params = ensemble_parameters(*nets)
    opt = FlatAdam(params, lr=1e-3)  # places each layer's k copies back to back
    opt.grad.fill_(float("nan"))  # gradients are overwritten, not accumulated
    manual = ReluMLP(*nets, input_columns=slice(2, None))
    x = torch.randn(B, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(k, B, 3, dtype=torch.float64)
    inputs: list[torch.Tensor] = []
    with torch.no_grad():
        out = manual.forward(x, inputs)
        gx = manual.backward(inputs, g, input_grad=True)
    refs = [net(x) for net in nets]
    torch.testing.assert_close(out, torch.stack(refs))
    ref_grads = torch.autograd.grad(refs, [x, *params], list(g))
    torch.testing.assert_close(gx.sum(0), ref_grads[0][:, 2:])
    for p, ref_grad in zip(params, ref_grads[1:], strict=True):
        torch.testing.assert_close(p.grad, ref_grad)
    assert manual.backward(inputs, g, weight_grads=False) is None  # nothing asked for


def test_relu_mlp_refuses_other_layers_and_scattered_ensembles() -> None:
    with pytest.raises(TypeError, match="alternating Linear"):
        ReluMLP(mlp(3, (4,), 1, "tanh"))
    with pytest.raises(TypeError, match="alternating Linear"):
        ReluMLP((torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)))
    with pytest.raises(ValueError, match="same layer shapes"):
        ReluMLP(mlp(3, (4,), 1, "relu"), mlp(3, (5,), 1, "relu"))
    a, b = mlp(3, (4,), 1, "relu"), mlp(3, (4,), 1, "relu")
    FlatAdam([*a.parameters(), *b.parameters()], lr=1e-3)  # net by net, not layer by layer
    with pytest.raises(ValueError, match="not one block"):
        ReluMLP(a, b)


def test_flat_targets_polyak_matches_soft_update_and_checks_sources() -> None:
    torch.manual_seed(0)
    src, tgt = [ValueCritic(3), ValueCritic(3)], [ValueCritic(3), ValueCritic(3)]
    ref = [ValueCritic(3), ValueCritic(3)]
    for r, t in zip(ref, tgt):
        r.load_state_dict(t.state_dict())
    src_params = [p for s in src for p in s.parameters()]
    tgt_params = [p for t in tgt for p in t.parameters()]
    opt = FlatAdam(src_params, lr=1e-3)
    polyak = FlatTargets(tgt_params, src_params, opt)
    polyak.update(0.25)
    soft_update(list(zip(ref, src)), 0.25)
    for t, r in zip(tgt, ref):
        for p, q in zip(t.parameters(), r.parameters()):
            torch.testing.assert_close(p, q)
    assert tgt[1].net[0].weight.data_ptr() == polyak.flat[polyak.flat.numel() // 2 :].data_ptr()
    half = len(src_params) // 2
    with pytest.raises(ValueError, match="beyond the sources"):
        FlatTargets(tgt_params[:half], src_params[:half], opt)
    with pytest.raises(ValueError, match="not the optimizer's flat buffer"):
        FlatTargets(tgt_params, src_params[half:] + src_params[:half], opt)
    with pytest.raises(ValueError, match="shape"):
        FlatTargets(list(ValueCritic(3, hidden=(4, 4)).parameters()), src_params[:6], opt)


# --------------------------------------------------------------------------- references
def _batch(gen: torch.Generator, spec) -> dict[str, torch.Tensor]:
    low, high = spec.action_bounds()
    f64 = torch.float64
    return {
        "obs": torch.randn(B, spec.obs_dim, generator=gen, dtype=f64),
        "actions": (low + (high - low) * torch.rand(B, spec.act_dim, generator=gen)).to(f64),
        "rewards": torch.randn(B, generator=gen, dtype=f64),
        "next_obs": torch.randn(B, spec.obs_dim, generator=gen, dtype=f64),
        "terminated": torch.rand(B, generator=gen) < 0.2,
    }


def _critic_step(critics, targets, opt, batch, y) -> None:
    o, a = batch["obs"], batch["actions"]
    loss = sum(((q(o, a) - y) ** 2).mean() for q in critics)
    opt.zero_grad()
    loss.backward()
    opt.step()


def _sac_reference(agent, opts, batch, cfg, gen, n_update) -> None:
    actor, nets = agent.actor, agent.nets
    q1, q2, q1_t, q2_t = nets["q1"], nets["q2"], nets["q1_target"], nets["q2_target"]
    log_alpha = nets["temperature"].log_alpha
    o, r, o2 = batch["obs"], batch["rewards"], batch["next_obs"]
    with torch.no_grad():
        alpha = log_alpha.exp()
        a2, logp2 = actor.sample(o2, gen)
        q_next = torch.minimum(q1_t(o2, a2), q2_t(o2, a2)) - alpha * logp2
        y = r + cfg.gamma * (~batch["terminated"]).to(r.dtype) * q_next
    _critic_step([q1, q2], [q1_t, q2_t], opts["critics"], batch, y)
    if n_update % cfg.policy_frequency == 0:
        for _ in range(cfg.policy_frequency):
            a_pi, logp = actor.sample(o, gen)
            actor_loss = (
                log_alpha.exp().detach() * logp - torch.minimum(q1(o, a_pi), q2(o, a_pi))
            ).mean()
            alpha_loss = -(log_alpha * (logp.detach() - agent.spec.act_dim)).mean()
            opts["actor"].zero_grad()
            opts["alpha"].zero_grad()
            (actor_loss + alpha_loss).backward()
            opts["actor"].step()
            opts["alpha"].step()
    soft_update([(q1_t, q1), (q2_t, q2)], cfg.tau)


def _td3_reference(agent, opts, batch, cfg, gen, n_update, twin=True) -> None:
    actor, nets = agent.actor, agent.nets
    names = ("q1", "q2") if twin else ("q1",)
    qs, qts = [nets[k] for k in names], [nets[k + "_target"] for k in names]
    o, a, r, o2 = batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"]
    half = (agent.action_high - agent.action_low) / 2
    with torch.no_grad():
        a2 = nets["actor_target"](o2)
        if twin:
            eps = torch.randn(a.shape, generator=gen, dtype=a.dtype)
            noise = (eps * cfg.policy_noise * half).clamp(
                -cfg.noise_clip * half, cfg.noise_clip * half
            )
            a2 = agent.clip_action(a2 + noise)
        q_next = qts[0](o2, a2)
        for q_t in qts[1:]:
            q_next = torch.minimum(q_next, q_t(o2, a2))
        y = r + cfg.gamma * (~batch["terminated"]).to(r.dtype) * q_next
    _critic_step(qs, qts, opts["critics"], batch, y)
    if n_update % cfg.policy_frequency == 0:
        actor_loss = -qs[0](o, actor(o)).mean()
        opts["actor"].zero_grad()
        actor_loss.backward()
        opts["actor"].step()
        soft_update([(nets["actor_target"], actor), *zip(qts, qs)], cfg.tau)


def _ref_optimizers(agent, cfg) -> dict[str, FlatAdam]:
    nets = agent.nets
    # the learners' layout: the critics' layers side by side (the moments are compared)
    critics = ensemble_parameters(*[nets[k].net for k in ("q1", "q2") if k in nets])
    opts = {
        "actor": FlatAdam(agent.actor.parameters(), cfg.actor_lr),
        "critics": FlatAdam(critics, cfg.critic_lr),
    }
    if "temperature" in nets:
        opts["alpha"] = FlatAdam(nets["temperature"].parameters(), cfg.alpha_lr)
    return opts


CASES = {
    "sac": (sac, sac.SACConfig(policy_frequency=2, hidden=(16, 16)), _sac_reference),
    "td3": (td3, td3.TD3Config(hidden=(16, 16)), _td3_reference),
    "ddpg": (
        ddpg,
        ddpg.DDPGConfig(hidden=(16, 16)),
        lambda *args: _td3_reference(*args, twin=False),
    ),
}


@pytest.mark.parametrize("algo", list(CASES))
def test_learner_update_matches_autograd_reference(algo: str) -> None:
    module, cfg, reference = CASES[algo]
    cfg = dataclasses.replace(cfg, tau=0.2)  # targets move visibly
    spec = make("pendulum").spec
    ours = module.make_agent(spec, cfg, seed=0).double()
    ref = module.make_agent(spec, cfg, seed=0).double()
    learner = module.make_learner(ours, cfg)
    ref_opts = _ref_optimizers(ref, cfg)
    data_gen = torch.Generator().manual_seed(1)
    gen, ref_gen = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    for n_update in range(5):
        batch = _batch(data_gen, spec)
        out = learner.update(batch, gen, n_update)
        reference(ref, ref_opts, batch, cfg, ref_gen, n_update)
        assert set(out) >= {"critic_loss", "q"}
        assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    sa, sb = ours.state_dict(), ref.state_dict()
    for k in sa:
        if isinstance(sa[k], torch.Tensor):
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-9, atol=1e-11, msg=k)
    assert not torch.equal(
        sa["nets.q1_target.net.0.weight"],
        module.make_agent(spec, cfg, 0).double().state_dict()["nets.q1_target.net.0.weight"],
    )
    for k, opt in learner.optimizers.items():
        torch.testing.assert_close(opt.exp_avg_sq, ref_opts[k].exp_avg_sq, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("algo", list(CASES))
def test_learner_explore_is_agent_act(algo: str) -> None:
    module, cfg, _ = CASES[algo]
    spec = make("pendulum").spec
    agent = module.make_agent(spec, cfg, seed=0)
    learner = module.make_learner(agent, cfg)
    obs = torch.randn(64, spec.obs_dim, generator=torch.Generator().manual_seed(0))
    ours = learner.explore(obs, torch.Generator().manual_seed(3))
    ref = agent.act(obs, deterministic=False, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, ref)
