"""ActorCritic (policy and critic as one stacked network) against the separate networks."""

from __future__ import annotations

import pytest
import torch

from diffctl.agents.networks import (
    CategoricalActor,
    CategoricalActorCritic,
    GaussianActor,
    GaussianActorCritic,
    ValueCritic,
)


def _separate_grads(actor: torch.nn.Module, critic: ValueCritic) -> list[torch.Tensor]:
    """Gradients of the separate nets laid out as ActorCritic's parameters."""
    body = actor.mean if isinstance(actor, GaussianActor) else actor.logits
    pairs = list(zip(body[::2], critic.net[::2]))
    grads = [torch.stack([a.weight.grad.T, b.weight.grad.T]) for a, b in pairs[:-1]]
    grads += [torch.stack([a.bias.grad, b.bias.grad])[:, None] for a, b in pairs[:-1]]
    grads += [pairs[-1][0].weight.grad.T, pairs[-1][0].bias.grad]
    grads += [pairs[-1][1].weight.grad.T, pairs[-1][1].bias.grad]
    if isinstance(actor, GaussianActor):
        grads.append(actor.log_std.grad)
    return grads


def _stacked_grads(ac: torch.nn.Module) -> list[torch.Tensor]:
    grads = [w.grad for w in ac.weights] + [b.grad for b in ac.biases]
    grads += [ac.pi_weight.grad, ac.pi_bias.grad, ac.v_weight.grad, ac.v_bias.grad]
    if isinstance(ac, GaussianActorCritic):
        grads.append(ac.log_std.grad)
    return grads


@pytest.mark.parametrize(
    ("discrete", "activation", "hidden"),
    [(False, "tanh", (64, 64)), (False, "relu", (16, 8, 8)), (True, "tanh", (32, 32))],
)
def test_actor_critic_equals_separate_networks_with_gradients(discrete, activation, hidden):
    obs_dim, out_dim = 5, 3
    torch.manual_seed(0)
    if discrete:
        actor = CategoricalActor(obs_dim, out_dim, hidden, activation).double()
    else:
        actor = GaussianActor(obs_dim, out_dim, hidden, activation, log_std_init=-0.4).double()
    critic = ValueCritic(obs_dim, hidden, activation).double()
    torch.manual_seed(0)  # same seed: the same draws, so the same weights
    if discrete:
        ac = CategoricalActorCritic(obs_dim, out_dim, hidden, activation).double()
    else:
        ac = GaussianActorCritic(obs_dim, out_dim, hidden, activation, log_std_init=-0.4)
        ac = ac.double()
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(300, obs_dim, generator=g, dtype=torch.float64) * 2
    if discrete:
        act = torch.randint(0, out_dim, (300,), generator=g)
    else:
        act = torch.randn(300, out_dim, generator=g, dtype=torch.float64)

    # acting: the same draws and log-probabilities, the same mode and values
    a_ref, lp_ref = actor.sample(obs, torch.Generator().manual_seed(2))
    a, lp = ac.sample(obs, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, a_ref)
    torch.testing.assert_close(lp, lp_ref)
    torch.testing.assert_close(ac.mode(obs), actor.mode(obs))
    torch.testing.assert_close(ac.value(obs), critic(obs))

    # training: one pass of both nets, the same losses and gradients
    lp_ref, ent_ref = actor.log_prob_entropy(obs, act)
    v_ref = critic(obs)
    lp, ent, v = ac.evaluate(obs, act)
    torch.testing.assert_close(lp, lp_ref)
    torch.testing.assert_close(ent, ent_ref)
    torch.testing.assert_close(v, v_ref)
    for got, want in zip(ac.log_prob_entropy(obs, act), (lp_ref, ent_ref), strict=True):
        torch.testing.assert_close(got, want)  # the policy net alone (AIRL's discriminator)
    w = torch.randn(3, 300, generator=g, dtype=torch.float64)
    ((w[0] * lp_ref).sum() + (w[1] * ent_ref).sum() + (w[2] * v_ref).sum()).backward()
    ((w[0] * lp).sum() + (w[1] * ent).sum() + (w[2] * v).sum()).backward()
    for got, want in zip(_stacked_grads(ac), _separate_grads(actor, critic), strict=True):
        torch.testing.assert_close(got, want)


def test_sigmoid_form_of_tanh_matches_tanh_in_float32():
    """From 256 rows the nets compute tanh as 2 sigmoid(2z) - 1 folded into the next layer:
    equal to the plain tanh (smaller batches) up to float32 rounding, large inputs included."""
    torch.manual_seed(0)
    ac = GaussianActorCritic(3, 2)
    obs = torch.randn(512, 3) * 50
    mu, v = ac(obs)
    mu_tanh = torch.cat([ac.policy_output(o) for o in obs.split(128)])
    v_tanh = torch.cat([ac.value(o) for o in obs.split(128)])
    torch.testing.assert_close(mu, mu_tanh, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v, v_tanh, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ac.value(obs), v_tanh, rtol=1e-5, atol=1e-5)
    assert not torch.equal(v, v_tanh)  # the two forms did run
