"""FlatAdam (one flat parameter/gradient buffer) against torch.optim.Adam, and Polyak averaging."""

from __future__ import annotations

import pytest
import torch

from diffctl.agents.common import FlatAdam
from diffctl.agents.networks import GaussianActor, ValueCritic
from diffctl.agents.offpolicy import soft_update


def _nets(seed: int, dtype: torch.dtype = torch.float64) -> list[torch.nn.Module]:
    torch.manual_seed(seed)
    return [GaussianActor(3, 2, log_std_init=-0.5).to(dtype), ValueCritic(3).to(dtype)]


def _loss(nets: list[torch.nn.Module], x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    logp, entropy = nets[0].log_prob_entropy(x, a)
    return (nets[1](x) - logp).square().mean() - 0.01 * entropy.mean()


# float64 divides the gradient by the clip factor before the kernel, float32 inside it
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_flat_adam_matches_torch_adam_with_grad_clipping(dtype: torch.dtype, rtol: float) -> None:
    ours, ref = _nets(0, dtype), _nets(0, dtype)
    params = [p for n in ours for p in n.parameters()]
    ref_params = [p for n in ref for p in n.parameters()]
    opt = FlatAdam(params, lr=3e-3, eps=1e-5)
    ref_opt = torch.optim.Adam(ref_params, lr=3e-3, eps=1e-5, foreach=False)
    flat_storage = opt.grad.untyped_storage().data_ptr()
    assert all(p.grad.untyped_storage().data_ptr() == flat_storage for p in params)
    g = torch.Generator().manual_seed(1)
    for step in range(30):
        x = torch.randn(64, 3, generator=g, dtype=dtype)
        a = torch.randn(64, 2, generator=g, dtype=dtype)
        opt.zero_grad()
        _loss(ours, x, a).backward()
        opt.step(max_grad_norm=0.05)
        ref_opt.zero_grad()
        _loss(ref, x, a).backward()
        ref_norm = torch.nn.utils.clip_grad_norm_(ref_params, 0.05)
        ref_opt.step()
        if step == 0:
            assert ref_norm > 0.05  # the clip is active
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q, rtol=rtol, atol=rtol * 1e-2)


def test_flat_adam_resumes_exactly_from_its_state() -> None:
    torch.manual_seed(0)
    nets = [ValueCritic(4, hidden=(6,)).double() for _ in range(2)]
    opt = FlatAdam(nets[0].parameters(), lr=1e-2)
    grads = torch.randn(8, opt.flat.numel(), dtype=torch.float64)
    for g in grads[:5]:
        opt.grad.copy_(g)
        opt.step(max_grad_norm=1.0)
    again = FlatAdam(nets[1].parameters(), lr=0.5)
    again.flat.copy_(opt.flat)
    again.load_state_dict(opt.state_dict())
    for g in grads[5:]:
        for o in (opt, again):
            o.grad.copy_(g)
            o.step(max_grad_norm=1.0)
    assert torch.equal(opt.flat, again.flat) and torch.equal(opt.exp_avg, again.exp_avg)


def test_flat_adam_state_round_trip_and_shape_check() -> None:
    nets = _nets(0)
    opt = FlatAdam([p for n in nets for p in n.parameters()], lr=1e-3)
    x, a = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    _loss(nets, x, a).backward()
    opt.step()
    state = opt.state_dict()
    other = FlatAdam([p for n in _nets(1) for p in n.parameters()], lr=0.5)
    other.load_state_dict(state)
    assert other.steps == 1 and other.lr == 1e-3
    torch.testing.assert_close(other.exp_avg_sq, opt.exp_avg_sq)
    small = FlatAdam(ValueCritic(3, hidden=(4,)).parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="exp_avg has shape"):
        small.load_state_dict(state)
    with pytest.raises(ValueError, match="not a FlatAdam state"):
        small.load_state_dict(torch.optim.Adam(nets[1].parameters()).state_dict())


def test_soft_update_of_several_pairs() -> None:
    torch.manual_seed(0)
    src = [ValueCritic(3), ValueCritic(3)]
    tgt = [ValueCritic(3), ValueCritic(3)]
    before = [[p.detach().clone() for p in t.parameters()] for t in tgt]
    soft_update(list(zip(tgt, src)), 0.25)
    for t, s, b in zip(tgt, src, before):
        for p, q, p0 in zip(t.parameters(), s.parameters(), b):
            torch.testing.assert_close(p, 0.75 * p0 + 0.25 * q)
