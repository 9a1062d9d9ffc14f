"""RunningNormalizer: exact streaming statistics (Chan et al.), round trips, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffctl.data import RunningNormalizer


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_streaming_stats_equal_batch_stats(sizes, seed):
    rng = np.random.default_rng(seed)
    batches = [rng.normal(3.0, 2.0, size=(n, 2, 3)) for n in sizes]
    norm = RunningNormalizer((2, 3))
    for b in batches:
        norm.update(torch.as_tensor(b))
    data = np.concatenate(batches)
    if len(data) == 0:
        assert norm.count == 0 and torch.equal(norm.var, torch.ones(2, 3))
        return
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), atol=1e-10)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), atol=1e-10)
    assert norm.count.item() == len(data)


def test_normalize_denormalize_clip_and_leading_dims():
    g = torch.Generator().manual_seed(0)
    x = 5.0 + 3.0 * torch.randn(4, 256, 3, generator=g)  # [T, B, obs_dim]
    norm = RunningNormalizer(3, clip=2.0)
    assert torch.allclose(norm.normalize(x), x.clamp(-2, 2), atol=1e-6)  # identity at start
    norm.update(x)
    y = norm.normalize(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert y.abs().max() <= 2.0
    free = RunningNormalizer(3)
    free.update(x)
    z = free.normalize(x)
    torch.testing.assert_close(z.reshape(-1, 3).mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        z.reshape(-1, 3).std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(free.denormalize(z), x, atol=1e-4, rtol=0)


def test_return_normaliser_scalar_shape():
    # discounted returns of 8 envs over 50 steps, as PPO's reward scaling feeds them
    g = torch.Generator().manual_seed(1)
    r = torch.randn(50, 8, generator=g)
    norm = RunningNormalizer(())
    ret = torch.zeros(8)
    seen = []
    for t in range(50):
        ret = r[t] + 0.99 * ret
        norm.update(ret)
        seen.append(ret)
    allr = torch.stack(seen).double()
    torch.testing.assert_close(norm.std, torch.sqrt(allr.var(unbiased=False) + 1e-8))


def test_update_never_syncs_with_the_host():
    # a meta tensor has no data: any .item()/bool() inside update or normalize would raise
    norm = RunningNormalizer(4, device="meta")
    x = torch.empty(16, 4, device="meta")
    norm.update(x)
    assert norm.normalize(x).device.type == "meta"


def test_state_dict_round_trip_and_errors():
    a = RunningNormalizer(2)
    a.update(torch.randn(10, 2))
    b = RunningNormalizer(2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 2)
    torch.testing.assert_close(a.normalize(x), b.normalize(x))
    assert b.count.item() == 10
    with pytest.raises(ValueError, match="count"):
        b.load_state_dict({"mean": torch.zeros(2), "var": torch.ones(2)})
    with pytest.raises(ValueError, match="mean"):
        b.load_state_dict({"mean": torch.zeros(3), "var": torch.ones(2), "count": torch.ones(())})


def test_bad_inputs_name_the_argument():
    norm = RunningNormalizer(3)
    with pytest.raises(ValueError, match="x"):
        norm.update(torch.zeros(5, 2))
    with pytest.raises(TypeError, match="x"):
        norm.normalize(torch.zeros(5, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="x"):
        norm.update([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="x"):
        norm.update(torch.zeros(5, 3, device="meta"))
    with pytest.raises(ValueError, match="shape"):
        RunningNormalizer((0,))
    with pytest.raises(ValueError, match="clip"):
        RunningNormalizer(3, clip=-1.0)
    with pytest.raises(ValueError, match="eps"):
        RunningNormalizer(3, eps=-1.0)
