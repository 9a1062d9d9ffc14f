"""Returns and advantages against brute-force Python sums."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffctl.data import discounted_returns, gae, rewards_to_go, td_lambda

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None)


@st.composite
def episodes(draw):
    """Random (rewards, values, next_values, terminated, truncated, gamma, lam) in float64."""
    T = draw(st.integers(1, 12))
    B = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    term = rng.random((T, B)) < draw(st.floats(0.0, 0.5))
    trunc = (rng.random((T, B)) < draw(st.floats(0.0, 0.5))) & ~term
    gamma = draw(st.floats(0.0, 1.0))
    lam = draw(st.floats(0.0, 1.0))
    r, v, nv = (rng.normal(size=(T, B)) for _ in range(3))
    return r, v, nv, term, trunc, gamma, lam


def _t(a, dtype=torch.float64):
    return torch.as_tensor(a, dtype=dtype)


def _episode_end(t, b, term, trunc):
    """First index >= t where the episode of (t, b) ends, or T - 1 (window end)."""
    T = term.shape[0]
    k = t
    while k < T - 1 and not (term[k, b] or trunc[k, b]):
        k += 1
    return k


def brute_gae(r, v, nv, term, trunc, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l} up to the episode end, delta with no bootstrap at
    terminal steps."""
    T, B = r.shape
    adv = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            end = _episode_end(t, b, term, trunc)
            total = 0.0
            for k in range(t, end + 1):
                boot = 0.0 if term[k, b] else nv[k, b]
                delta = r[k, b] + gamma * boot - v[k, b]
                total += (gamma * lam) ** (k - t) * delta
            adv[t, b] = total
    return adv


def brute_lambda_return(r, nv, term, trunc, gamma, lam):
    """Lambda-return as the weighted average of n-step returns (Sutton & Barto eq. 12.2), each
    n-step return stopping at the episode end (terminal: no bootstrap; else next_values)."""
    T, B = r.shape
    out = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            end = _episode_end(t, b, term, trunc)
            last_boot = 0.0 if term[end, b] else nv[end, b]
            horizon = end - t + 1  # number of n-step returns that differ
            total, weight = 0.0, 0.0
            for n in range(1, horizon):
                k = t + n - 1
                g = sum(gamma ** (j - t) * r[j, b] for j in range(t, k + 1))
                g += gamma**n * nv[k, b]  # k < end: not terminal
                w = (1 - lam) * lam ** (n - 1)
                total += w * g
                weight += w
            g_full = sum(gamma ** (j - t) * r[j, b] for j in range(t, end + 1))
            g_full += gamma**horizon * last_boot
            total += (1 - weight) * g_full  # remaining weight lam^(horizon-1)
            out[t, b] = total
    return out


@SETTINGS
@given(episodes())
def test_gae_matches_brute_force(ep):
    r, v, nv, term, trunc, gamma, lam = ep
    adv, ret = gae(_t(r), _t(v), _t(nv), _t(term, torch.bool), _t(trunc, torch.bool), gamma, lam)
    want = brute_gae(r, v, nv, term, trunc, gamma, lam)
    np.testing.assert_allclose(adv.numpy(), want, atol=1e-9)
    np.testing.assert_allclose(ret.numpy(), want + v, atol=1e-9)


@SETTINGS
@given(episodes())
def test_td_lambda_matches_brute_force(ep):
    r, v, nv, term, trunc, gamma, lam = ep
    got = td_lambda(_t(r), _t(v), _t(nv), _t(term, torch.bool), _t(trunc, torch.bool), gamma, lam)
    want = brute_lambda_return(r, nv, term, trunc, gamma, lam)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-9)


@SETTINGS
@given(episodes())
def test_td_lambda_equals_gae_returns_with_consistent_values(ep):
    r, v, nv, term, trunc, gamma, lam = ep
    done = term | trunc
    nv = nv.copy()
    nv[:-1][~done[:-1]] = v[1:][~done[:-1]]  # V(s_{t+1}) = values[t+1] inside episodes
    args = (_t(r), _t(v), _t(nv), _t(term, torch.bool), _t(trunc, torch.bool), gamma, lam)
    np.testing.assert_allclose(td_lambda(*args).numpy(), gae(*args)[1].numpy(), atol=1e-9)


@SETTINGS
@given(episodes())
def test_rewards_to_go_matches_brute_force(ep):
    r, _, _, term, trunc, gamma, _ = ep
    dones = term | trunc
    got = rewards_to_go(_t(r), gamma, _t(dones, torch.bool)).numpy()
    T, B = r.shape
    for b in range(B):
        for t in range(T):
            end = t
            while end < T - 1 and not dones[end, b]:
                end += 1
            want = sum(gamma ** (k - t) * r[k, b] for k in range(t, end + 1))
            assert got[t, b] == pytest.approx(want, abs=1e-9)


@SETTINGS
@given(episodes())
def test_discounted_returns_and_rewards_to_go_without_dones(ep):
    r, _, _, _, _, gamma, _ = ep
    want = sum(gamma**t * r[t] for t in range(r.shape[0]))
    np.testing.assert_allclose(discounted_returns(_t(r), gamma).numpy(), want, atol=1e-9)
    np.testing.assert_allclose(rewards_to_go(_t(r), gamma)[0].numpy(), want, atol=1e-9)


def test_worked_example_termination_vs_truncation():
    # one env, 3 steps; gamma = 0.5, lam = 1: GAE is Monte-Carlo return minus baseline.
    r = _t([[1.0], [2.0], [4.0]])
    v = torch.zeros(3, 1, dtype=torch.float64)
    nv = _t([[0.0], [10.0], [10.0]])  # V(s_1) = values[1] = 0 inside the episode
    no = torch.zeros(3, 1, dtype=torch.bool)
    term_mid = no.clone()
    term_mid[1] = True
    trunc_mid = no.clone()
    trunc_mid[1] = True
    # terminated at t=1: G_0 = 1 + 0.5*2 = 2; G_1 = 2; G_2 = 4 + 0.5*10 = 9
    adv, _ = gae(r, v, nv, term_mid, no, 0.5, 1.0)
    assert adv[:, 0].tolist() == [2.0, 2.0, 9.0]
    # truncated at t=1: bootstrap with next_values[1]: G_1 = 2 + 5 = 7, G_0 = 1 + 0.5*7 = 4.5
    adv, _ = gae(r, v, nv, no, trunc_mid, 0.5, 1.0)
    assert adv[:, 0].tolist() == [4.5, 7.0, 9.0]
    # terminated at the last step: no bootstrap from next_values[-1]
    term_end = no.clone()
    term_end[2] = True
    assert td_lambda(r, v, nv, term_end, no, 0.5, 1.0)[:, 0].tolist() == [3.0, 4.0, 4.0]


def test_ignores_non_finite_value_of_terminal_state():
    r = torch.ones(2, 1)
    v = torch.zeros(2, 1)
    nv = torch.tensor([[float("nan")], [0.0]])
    term = torch.tensor([[True], [False]])
    adv, _ = gae(r, v, nv, term, torch.zeros_like(term), 0.9, 0.95)
    assert torch.isfinite(adv).all()
    assert torch.isfinite(td_lambda(r, v, nv, term, torch.zeros_like(term), 0.9, 0.95)).all()


def test_gradients_flow_through_returns():
    r = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    nv = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    term = torch.rand(5, 3) < 0.3
    trunc = (torch.rand(5, 3) < 0.3) & ~term
    torch.autograd.gradcheck(lambda a, b, c: gae(a, b, c, term, trunc, 0.9, 0.8), (r, v, nv))
    torch.autograd.gradcheck(lambda a: rewards_to_go(a, 0.9, term), (r,))


def test_extra_batch_dims_and_float32():
    r = torch.randn(4, 2, 3)
    out = rewards_to_go(r, 0.9)
    assert out.shape == (4, 2, 3) and out.dtype == torch.float32
    assert discounted_returns(r, 0.9).shape == (2, 3)


def test_bad_inputs_name_the_argument():
    r = torch.zeros(3, 2)
    b = torch.zeros(3, 2, dtype=torch.bool)
    with pytest.raises(TypeError, match="rewards"):
        rewards_to_go(r.long())
    with pytest.raises(TypeError, match="rewards"):
        rewards_to_go([1.0, 2.0])
    with pytest.raises(ValueError, match="rewards"):
        discounted_returns(torch.zeros(()), 0.9)
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(r, 1.5)
    with pytest.raises(TypeError, match="dones"):
        rewards_to_go(r, 0.9, r)
    with pytest.raises(ValueError, match="dones"):
        rewards_to_go(r, 0.9, b[:2])
    with pytest.raises(ValueError, match="values"):
        gae(r, r[:2], r, b, b, 0.9, 0.9)
    with pytest.raises(ValueError, match="next_values"):
        gae(r, r, r[:, :1], b, b, 0.9, 0.9)
    with pytest.raises(TypeError, match="terminated"):
        gae(r, r, r, r, b, 0.9, 0.9)
    with pytest.raises(TypeError, match="truncated"):
        td_lambda(r, r, r, b, r, 0.9, 0.9)
    with pytest.raises(ValueError, match="lam"):
        td_lambda(r, r, r, b, b, 0.9, -0.1)
    with pytest.raises(TypeError, match="lam"):
        gae(r, r, r, b, b, 0.9, None)
    with pytest.raises(ValueError, match="values"):  # a tensor on another device
        gae(r, r.to("meta"), r, b, b, 0.9, 0.9)


def test_returns_never_sync_with_the_host():
    # meta tensors hold no data: any .item()/bool() inside would raise
    r = torch.empty(6, 4, device="meta")
    d = torch.empty(6, 4, dtype=torch.bool, device="meta")
    assert gae(r, r, r, d, d, 0.99, 0.95)[0].device.type == "meta"
    assert td_lambda(r, r, r, d, d, 0.99, 0.95).device.type == "meta"
    assert rewards_to_go(r, 0.9, d).device.type == "meta"
    assert discounted_returns(r, 0.9).device.type == "meta"
