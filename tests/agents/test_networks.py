"""Networks: log-densities against torch.distributions, init, bounds."""

from __future__ import annotations

import math

import torch
from torch.distributions import Categorical, Independent, Normal, TransformedDistribution
from torch.distributions.transforms import AffineTransform, TanhTransform

from diffctl.agents.networks import (
    CategoricalActor,
    DeterministicActor,
    GaussianActor,
    QCritic,
    SquashedGaussianActor,
    ValueCritic,
    mlp,
)


def test_gaussian_actor_log_prob_entropy_kl() -> None:
    torch.manual_seed(0)
    actor = GaussianActor(3, 2, log_std_init=-0.3).double()
    obs = torch.randn(5, 3, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    a, logp = actor.sample(obs, g)
    mu, log_std = actor.distribution(obs)
    ref = Independent(Normal(mu, log_std.exp()), 1)
    torch.testing.assert_close(logp, ref.log_prob(a))
    lp, ent = actor.log_prob_entropy(obs, a)
    torch.testing.assert_close(lp, ref.log_prob(a))
    torch.testing.assert_close(ent, ref.entropy())
    old = Independent(Normal(mu + 0.1, (log_std - 0.2).exp()), 1)
    kl = actor.kl(obs, mu + 0.1, log_std - 0.2)
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(old, ref))


def test_categorical_actor_matches_torch() -> None:
    torch.manual_seed(0)
    actor = CategoricalActor(4, 3)
    obs = torch.randn(7, 4)
    a, logp = actor.sample(obs, torch.Generator().manual_seed(0))
    assert a.dtype == torch.int64 and a.shape == (7,)
    ref = Categorical(logits=actor.logits(obs))
    torch.testing.assert_close(logp, ref.log_prob(a))
    lp, ent = actor.log_prob_entropy(obs, a)
    torch.testing.assert_close(ent, ref.entropy())
    assert actor.mode(obs).tolist() == ref.probs.argmax(-1).tolist()


def test_squashed_gaussian_log_prob_and_bounds() -> None:
    torch.manual_seed(0)
    actor = SquashedGaussianActor(3, 2, (-2.0, 0.0), (2.0, 1.0), hidden=(16, 16)).double()
    obs = torch.randn(64, 3, dtype=torch.float64) * 3
    a, logp = actor.sample(obs, torch.Generator().manual_seed(3))
    assert (a[:, 0].abs() <= 2).all() and ((a[:, 1] >= 0) & (a[:, 1] <= 1)).all()
    mu, log_std = actor.head(actor.act_fn(actor.trunk(obs))).chunk(2, -1)
    log_std = log_std.clamp(actor.log_std_min, actor.log_std_max)
    ref = TransformedDistribution(
        Normal(mu, log_std.exp()),
        [TanhTransform(), AffineTransform(actor.bias, actor.scale)],
    )
    a_in = a.clamp(actor.bias - actor.scale + 1e-9, actor.bias + actor.scale - 1e-9)
    torch.testing.assert_close(logp, ref.log_prob(a_in).sum(-1), rtol=1e-6, atol=1e-6)


def test_orthogonal_init_and_heads() -> None:
    torch.manual_seed(0)
    net = mlp(5, (8, 8), 2, out_gain=0.01)
    w = net[0].weight  # [8, 5]: orthonormal columns scaled by sqrt(2)
    torch.testing.assert_close(w.T @ w, 2 * torch.eye(5), atol=1e-5, rtol=1e-5)
    assert all((layer.bias == 0).all() for layer in net if isinstance(layer, torch.nn.Linear))
    assert net[-1].weight.norm(dim=1).max() <= 0.01 + 1e-6
    actor = DeterministicActor(3, 1, (-2.0,), (2.0,))
    assert actor(torch.randn(4, 3) * 100).abs().max() <= 2.0
    assert ValueCritic(3)(torch.randn(4, 3)).shape == (4,)
    assert QCritic(3, 1)(torch.randn(4, 3), torch.randn(4, 1)).shape == (4,)
    assert math.isclose(GaussianActor(2, 1, log_std_init=-1.0).log_std.item(), -1.0)


def test_layer_norm_normalises_every_hidden_layer() -> None:
    torch.manual_seed(0)
    net = mlp(5, (8, 6), 2, activation="relu", layer_norm=True)
    assert [type(m).__name__ for m in net] == [
        "Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU", "Linear"
    ]  # fmt: skip
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in mlp(5, (8, 6), 2))
    # the first layer's bias is zero, so its normalised output does not depend on the input's
    # scale: the output is bounded however far the input lies off the data
    x = torch.randn(4, 5, dtype=torch.float64)
    net = net.double()
    torch.testing.assert_close(net(1e4 * x), net(x), rtol=1e-4, atol=1e-4)
    q = QCritic(3, 1, (8, 8), layer_norm=True).double()
    o, a = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
    torch.testing.assert_close(q(1e4 * o, 1e4 * a), q(o, a), rtol=1e-4, atol=1e-4)
    plain = QCritic(3, 1, (8, 8)).double()
    assert (plain(1e4 * o, 1e4 * a) - plain(o, a)).abs().max() > 1.0
