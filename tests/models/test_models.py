"""Model forward passes: shapes, functorch compatibility, ensemble batching and sampling."""

from __future__ import annotations

import math

import pytest
import torch
from diffctl.envs import make
from torch.func import jacrev, vmap

from diffctl.models import EnsembleDynamics, GreyBoxModel, LinearModel, MLPDynamics


def all_models():
    torch.manual_seed(0)
    return [
        LinearModel(2, 1),
        MLPDynamics(2, 1, hidden=(16, 16), angle_dims=(0,)),
        EnsembleDynamics(2, 1, num_members=3, hidden=(16,), angle_dims=(0,)),
        GreyBoxModel(make("pendulum"), ["m", "l"]),
    ]


@pytest.mark.parametrize("model", all_models(), ids=lambda m: m.kind)
def test_batched_shapes_and_jacrev_vmap(model):
    model = model.double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    u = torch.randn(5, 1, generator=g, dtype=torch.float64)
    assert model(x, u).shape == (5, 2)
    assert model(x[None].expand(3, 5, 2), u[None].expand(3, 5, 1)).shape == (3, 5, 2)
    assert model(x[0], u[0]).shape == (2,)
    # the MPC linearises with vmap(jacrev): compare with finite differences
    jx, ju = vmap(jacrev(model, argnums=(0, 1)))(x, u)
    assert jx.shape == (5, 2, 2) and ju.shape == (5, 2, 1)
    eps = 1e-6
    for i in range(2):
        d = torch.zeros(2, dtype=torch.float64)
        d[i] = eps
        fd = (model(x + d, u) - model(x - d, u)) / (2 * eps)
        torch.testing.assert_close(jx[..., i], fd, atol=1e-6, rtol=1e-5)
    fd_u = (model(x, u + eps) - model(x, u - eps)) / (2 * eps)
    torch.testing.assert_close(ju[..., 0], fd_u, atol=1e-6, rtol=1e-5)


def test_greybox_forward_equals_env_with_estimated_params():
    env = make("pendulum")
    model = GreyBoxModel(env, ["m", "l"], init={"m": 1.5, "l": 0.7})
    x = env.initial_state(8, torch.Generator().manual_seed(0))
    u = torch.ones(8, 1)
    torch.testing.assert_close(model(x, u), env.replace(m=1.5, l=0.7).dynamics(x, u))
    est = model.estimates()
    assert set(est) == {"m", "l"} and est["m"].requires_grad
    with pytest.raises(ValueError, match="params"):
        GreyBoxModel(env, ["mass"])
    with pytest.raises(ValueError, match="init"):
        GreyBoxModel(env, ["m"], init={"m": -1.0})


def member_reference(model: EnsembleDynamics, feats: torch.Tensor, m: int) -> torch.Tensor:
    """Member ``m``'s raw network output computed layer by layer with its own weights."""
    h = feats
    layers = list(model.net)
    for layer in layers:
        if hasattr(layer, "weight"):
            h = h @ layer.weight[m] + layer.bias[m, 0]
        else:
            h = layer(h)
    return h


def test_ensemble_batched_members_equal_per_member_networks():
    torch.manual_seed(0)
    model = EnsembleDynamics(3, 2, num_members=4, hidden=(8, 8))
    x, u = torch.randn(6, 3), torch.randn(6, 2)
    mu, var = model.member_predictions(x, u)
    feats = model._features(x, u)
    for m in range(4):
        out = member_reference(model, feats, m)
        torch.testing.assert_close(mu[m], x + model.out_norm.denormalize(out[:, :3]))
    assert (var > 0).all()
    torch.testing.assert_close(model(x, u), mu.mean(0))
    torch.testing.assert_close(model.mean(x, u), mu.mean(0))
    torch.testing.assert_close(model.spread(x, u), mu.std(0, unbiased=False))


def test_ensemble_logvar_is_soft_bounded():
    model = EnsembleDynamics(2, 1, num_members=2, hidden=(4,), max_logvar=0.5, min_logvar=-3.0)
    with torch.no_grad():
        model.net[-1].bias[..., 2:] = 100.0
        _, hi = model._gaussian(torch.zeros(2, 1, 3))
        model.net[-1].bias[..., 2:] = -100.0
        _, lo = model._gaussian(torch.zeros(2, 1, 3))
    # PETS applies the upper then the lower softplus bound, so the top sits a hair above
    # max_logvar: max + log(1 + exp(-(max - min)))
    top = 0.5 + math.log1p(math.exp(-3.5))
    assert (hi <= top + 1e-6).all() and (hi > top - 1e-3).all()
    assert (lo >= -3.0 - 1e-6).all() and (lo < -3.0 + 1e-3).all()


def test_trajectory_sampling_member_assignment():
    torch.manual_seed(0)
    model = EnsembleDynamics(2, 1, num_members=3, hidden=(8,))
    x, u = torch.randn(12, 2), torch.randn(12, 1)
    mu, _ = model.member_predictions(x, u)
    # TS-inf without noise: row i follows member i % E
    det = model.sample(x, u, mode="tsinf", noise=False)
    torch.testing.assert_close(det, mu[torch.arange(12) % 3, torch.arange(12)])
    # TS-1 without noise: every row follows some member, members balanced, re-drawn per call
    g = torch.Generator().manual_seed(0)
    outs = [model.sample(x, u, mode="ts1", noise=False, generator=g) for _ in range(2)]
    for out in outs:
        match = (out[None] - mu).abs().amax(-1) < 1e-6  # [E, N]
        assert (match.sum(0) >= 1).all()
        assert match.float().argmax(0).bincount(minlength=3).tolist() == [4, 4, 4]
    assert not torch.equal(outs[0], outs[1])
    # with noise: reproducible from the generator, and different from the mean
    s1 = model.sample(x, u, generator=torch.Generator().manual_seed(3))
    s2 = model.sample(x, u, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(s1, s2)
    assert not torch.allclose(s1, det)
    # a batch that is not a multiple of E still assigns row i to member i % E
    torch.testing.assert_close(model.sample(x[:10], u[:10], noise=False), det[:10])
    # the planners' convention: forward(x, u, member) predicts with each row's member
    member = torch.tensor([2, 0, 1, 1] * 3)
    torch.testing.assert_close(model(x, u, member), mu[member, torch.arange(12)])
    with pytest.raises(ValueError, match="mode"):
        model.sample(x, u, mode="ts2")


def test_ensemble_bootstrap_indices_differ_per_member():
    model = EnsembleDynamics(2, 1, num_members=4, hidden=(4,))
    idx = model.bootstrap_indices(100, torch.Generator().manual_seed(0))
    assert idx.shape == (4, 100) and idx.min() >= 0 and idx.max() < 100
    assert len({tuple(r.tolist()) for r in idx}) == 4
    # a bootstrap resample leaves out about 1/e of the rows
    assert 0.25 < 1 - idx[0].unique().numel() / 100 < 0.5


def test_model_argument_validation():
    with pytest.raises(ValueError, match="state_dim"):
        MLPDynamics(0, 1)
    with pytest.raises(ValueError, match="hidden"):
        MLPDynamics(2, 1, hidden=())
    with pytest.raises(ValueError, match="activation"):
        MLPDynamics(2, 1, activation="gelu6")
    with pytest.raises(ValueError, match="angle_dims"):
        MLPDynamics(2, 1, angle_dims=(2,))
    with pytest.raises(ValueError, match="num_members"):
        EnsembleDynamics(2, 1, num_members=0)
    with pytest.raises(ValueError, match="max_logvar"):
        EnsembleDynamics(2, 1, max_logvar=-1.0, min_logvar=0.0)
