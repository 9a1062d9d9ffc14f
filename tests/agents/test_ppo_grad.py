"""PPO's hand-derived minibatch update against the same loss differentiated by autograd, the
subgradients at ties, the supported / unsupported split, and the rollout sampler (the same
numbers as ``sample``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffctl.envs import VecEnv, make

from diffctl.agents import ppo
from diffctl.agents.common import Agent, FlatAdam, collect_on_policy
from diffctl.agents.networks import (
    CategoricalActorCritic,
    GaussianActorCritic,
    ManualActorCritic,
)

F64 = torch.float64


def _update_run(manual: bool, cfg: ppo.PPOConfig, activation: str, hidden: tuple[int, ...]):
    """One minibatch update from the same seeded net and data; returns the update's type, the
    (clipped) flat gradient, the parameters after the Adam step, the diagnostics and the data."""
    cfg = dataclasses.replace(cfg, manual_grad=manual)
    torch.manual_seed(0)
    ac = GaussianActorCritic(4, 2, hidden, activation, log_std_init=-0.3).double()
    with torch.no_grad():  # away from the init (zero biases, log_std constant)
        for p in ac.parameters():
            p.add_(0.2 * torch.randn_like(p))
    opt = FlatAdam(ac.parameters(), lr=1e-3, eps=1e-5)
    update = ppo.make_update(ac, opt, cfg)
    g = torch.Generator().manual_seed(1)
    rows = cfg.minibatch_size
    obs = torch.randn(rows, 4, generator=g, dtype=F64) * 2
    act = torch.randn(rows, 2, generator=g, dtype=F64)
    with torch.no_grad():
        logp, _, value = ac.evaluate(obs, act)
    # old log-probs and values around the current ones: ratios and value changes on both sides
    # of the clip range, and inside it
    logp_old = logp + 0.4 * torch.randn(rows, generator=g, dtype=F64)
    val = value + 0.4 * torch.randn(rows, generator=g, dtype=F64)
    ret = value + torch.randn(rows, generator=g, dtype=F64)
    adv = torch.randn(rows, generator=g, dtype=F64)
    out = (torch.empty(rows, dtype=F64), torch.empty(rows, dtype=F64))
    out += (torch.empty(rows, dtype=F64), torch.empty((), dtype=F64))
    update((obs, act, logp_old, adv, ret, val), out)
    data = {"ratio": (logp - logp_old).exp(), "adv": adv, "dv": value - val}
    return type(update).__name__, opt.grad.clone(), opt.flat.clone(), out, data


@pytest.mark.parametrize(
    ("activation", "hidden", "rows"),
    [("tanh", (64, 64), 512), ("tanh", (16, 8), 64), ("relu", (16, 8, 8), 64)],
)
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"ent_coef": 0.01},
        {"clip_vloss": False},
        {"max_grad_norm": 1e9},  # no clipping: the raw gradient
        {"clip_coef": 0.1, "vf_coef": 1.3, "ent_coef": 0.2, "max_grad_norm": 1e9},
    ],
)
def test_manual_update_equals_autograd(activation, hidden, rows, changes):
    # 512 rows take ActorCritic's folded-sigmoid form of tanh, 64 rows the plain one
    cfg = ppo.PPOConfig(num_envs=rows, num_steps=2, num_minibatches=2, **changes)
    name_a, grad_a, flat_a, out_a, data = _update_run(False, cfg, activation, hidden)
    name_m, grad_m, flat_m, out_m, _ = _update_run(True, cfg, activation, hidden)
    assert (name_a, name_m) == ("_AutogradUpdate", "_ManualGaussianUpdate")
    # the data covers every branch of the min / clamp and of the value clip
    eps = cfg.clip_coef
    ratio, adv, dv = data["ratio"], data["adv"], data["dv"]
    for above in (ratio > 1 + eps, ratio < 1 - eps, (ratio - 1).abs() < eps):
        assert (above & (adv > 0)).sum() > 3 and (above & (adv < 0)).sum() > 3
    assert (dv > eps).sum() > 3 and (dv < -eps).sum() > 3 and (dv.abs() < eps).sum() > 3
    # diagnostics: log-ratio, surrogate, value term, minus the entropy
    for a, m in zip(out_a, out_m):
        torch.testing.assert_close(m, a, rtol=1e-12, atol=1e-12)
    assert grad_a.abs().max() > 1e-3
    torch.testing.assert_close(grad_m, grad_a, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(flat_m, flat_a, rtol=1e-9, atol=1e-12)


def _autograd_surrogate(ratio, adv, eps):
    r = ratio.clone().requires_grad_()
    ppo.clipped_surrogate(r, adv, eps).sum().backward()
    return r.grad * ratio  # d / d log rho


def test_surrogate_subgradients_at_ties():
    eps = 0.2
    # at the clamp's bounds, inside, outside on both sides with both signs of A, A = 0
    ratio = torch.tensor([0.8, 1.2, 1.0, 0.5, 1.5, 1.5, 0.5, 1.1, 0.0], dtype=F64)
    adv = torch.tensor([1.0, -2.0, 0.0, 1.0, 1.0, -1.0, -1.0, 3.0, 1.0], dtype=F64)
    # just outside the range, where rho A and clip(rho) A round to the same: a tie of the min
    f64 = lambda x: torch.tensor(x, dtype=F64)  # noqa: E731
    ties = torch.stack([torch.nextafter(f64(1.2), f64(2.0)), torch.nextafter(f64(0.8), f64(0.0))])
    ratio, adv = torch.cat([ratio, ties]), torch.cat([adv, f64([-1.74, -2.999])])
    clipped = ratio.clamp(1 - eps, 1 + eps)
    assert torch.equal((ratio * adv)[-2:], (clipped * adv)[-2:])
    assert not torch.equal(ratio[-2:], clipped[-2:])
    out = torch.empty_like(ratio)
    g = ppo._surrogate_grad(ratio, adv, eps, f64(0.5), out)
    torch.testing.assert_close(out, ppo.clipped_surrogate(ratio, adv, eps), rtol=0, atol=0)
    torch.testing.assert_close(g, _autograd_surrogate(ratio, adv, eps), rtol=0, atol=0)
    torch.testing.assert_close(g[-2:], 0.5 * (ratio * adv)[-2:], rtol=0, atol=0)  # half shares


def test_value_subgradients_at_ties():
    eps = 0.25
    # dyadic numbers, so that V_old + (V - V_old) == V exactly inside the range
    values = torch.tensor([0.125, 0.25, -0.25, 1.0, 1.0, -1.0, 0.5], dtype=F64)
    old = torch.zeros(7, dtype=F64)
    returns = torch.tensor([1.0, -1.0, 0.5, 0.625, 2.0, 0.0, 0.0], dtype=F64)
    # rows: inside, at both bounds, a tie of the max outside the range (|1 - 0.625| ==
    # |0.25 - 0.625|), clipped term larger, unclipped larger
    half = torch.tensor(0.5, dtype=F64)
    for clip in (eps, None):
        out = torch.empty(7, dtype=F64)
        grad = ppo._value_grad(values, old, returns, clip, half, out)
        v = values.clone().requires_grad_()
        terms = ppo._value_terms(v, old, returns, clip)
        (0.5 * terms.sum()).backward()
        torch.testing.assert_close(out, terms.detach(), rtol=0, atol=0)
        torch.testing.assert_close(grad, v.grad, rtol=0, atol=0)
    assert grad[3] != 0  # (the tie row has a gradient: the half share)


def test_update_dispatch_supported_and_unsupported():
    cfg = ppo.PPOConfig(num_envs=8, num_steps=8, num_minibatches=2)

    def kind(ac, config=cfg):
        return type(ppo.make_update(ac, FlatAdam(ac.parameters(), lr=1e-3), config)).__name__

    assert kind(GaussianActorCritic(3, 1, (8, 8), "tanh")) == "_ManualGaussianUpdate"
    assert kind(GaussianActorCritic(3, 1, (8, 8), "relu")) == "_ManualGaussianUpdate"
    autograd = dataclasses.replace(cfg, manual_grad=False)
    assert kind(GaussianActorCritic(3, 1, (8, 8), "tanh"), autograd) == "_AutogradUpdate"
    assert kind(GaussianActorCritic(3, 1, (8, 8), "elu")) == "_AutogradUpdate"
    assert kind(CategoricalActorCritic(3, 2, (8, 8), "tanh")) == "_AutogradUpdate"
    with pytest.raises(ValueError, match="activation"):
        ManualActorCritic(GaussianActorCritic(3, 1, (8, 8), "elu"), 16)
    with pytest.raises(ValueError, match="no .grad views"):
        ManualActorCritic(GaussianActorCritic(3, 1, (8, 8), "tanh"), 16)
    ac = GaussianActorCritic(3, 1, (8, 8), "tanh")
    for p in ac.parameters():
        p.grad = torch.zeros_like(p)
    with pytest.raises(ValueError, match="one flat buffer"):
        ManualActorCritic(ac, 16)


@pytest.mark.parametrize(
    ("env", "changes"),
    [
        ("pendulum", {}),  # minibatches of 512 rows: the folded tanh
        ("pendulum", {"num_minibatches": 8, "norm_adv": False, "ent_coef": 0.01}),
        ("pendulum", {"activation": "relu", "clip_vloss": False}),
    ],
)
def test_training_history_manual_equals_autograd(env, changes):
    cfg = ppo.PPOConfig(
        total_steps=3 * 1024, num_envs=8, num_steps=128, num_minibatches=2, update_epochs=3
    )
    cfg = dataclasses.replace(cfg, **changes)
    runs = [ppo.train(env, dataclasses.replace(cfg, manual_grad=m), seed=2) for m in (0, 1)]
    for rec_a, rec_m in zip(*(r.history for r in runs), strict=True):
        for key, value in rec_a.items():
            if key != "wall_time":
                assert rec_m[key] == pytest.approx(value, rel=1e-3, abs=1e-3, nan_ok=True), key
    for pa, pm in zip(*(r.agent.parameters() for r in runs), strict=True):
        torch.testing.assert_close(pm, pa, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("rows", [16, 264])  # plain tanh and the folded sigmoid form
def test_rollout_sampler_draws_as_sample(rows):
    # rows * act_dim a multiple of 16: the rollout's noise drawn at once is the same stream
    torch.manual_seed(0)
    ac = GaussianActorCritic(3, 2, (16, 16), "tanh", log_std_init=-0.5)
    obs = torch.randn(rows, 3)
    draw, log_probs = ac.rollout_sampler(rows, 3, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    for t in range(3):
        a, logp = ac.sample(obs, g)
        assert torch.equal(a, draw(obs))
        assert torch.equal(logp, log_probs[t])


class _SampleOnly(torch.nn.Module):
    """The same actor seen through ``sample`` only (no ``rollout_sampler``)."""

    def __init__(self, ac: GaussianActorCritic) -> None:
        super().__init__()
        self.ac = ac

    def sample(self, obs, generator):
        return self.ac.sample(obs, generator)


@pytest.mark.parametrize("num_envs", [16, 256])
def test_collect_on_policy_same_batch_with_and_without_rollout_sampler(num_envs):
    cfg = ppo.PPOConfig(num_envs=num_envs, num_steps=32, num_minibatches=1)
    batches = []
    for wrap in (False, True):
        runner = VecEnv(make("pendulum"), num_envs, seed=0)
        agent = ppo.make_agent(runner.spec, cfg, seed=1)
        agent.obs_normalizer.update(torch.randn(64, 3, generator=torch.Generator().manual_seed(2)))
        if wrap:
            agent = Agent(
                "ppo", runner.spec, cfg, _SampleOnly(agent.actor), None, agent.obs_normalizer
            )
        gen = torch.Generator().manual_seed(3)
        batches.append(collect_on_policy(runner, agent, runner.reset(seed=0), 32, gen))
    (new, obs_new), (old, obs_old) = batches
    assert torch.equal(obs_new, obs_old)
    for key in old:
        assert torch.equal(new[key], old[key]), key
