"""Pendulum's fused eager transition (``_transition``) against its parts, bit for bit, on the
paths VecEnv's eager step takes: consecutive steps from the state the previous call returned
(which reuse its angle, speed and sine), states changed in place or needing a gradient; and
the all-false flags of the eager step between time limits."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import VecEnv, make

_BITS = {torch.float32: torch.int32, torch.float64: torch.int64}


def _reference(env, x, u):
    x1 = env._dynamics(x, u)
    return x1, env._reward(x, u, x1), env._observe(x1)


def _assert_bits(got, want):
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and torch.equal(a.view(_BITS[a.dtype]), b.view(_BITS[b.dtype]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [3, 16, 1000])
def test_consecutive_transitions_equal_their_parts_bit_for_bit(dtype, n):
    env = make("pendulum", dtype=dtype)
    g = torch.Generator().manual_seed(0)
    x = (4 * torch.randn(n, 2, generator=g)).to(dtype)
    x[0] = 0.0  # at rest upright with no torque: a reward of -0.0
    for step in range(6):
        u = (3 * torch.randn(n, 1, generator=g)).to(dtype)
        u[0] = 0.0
        out = env._transition(x, u)
        _assert_bits(out, _reference(env, x, u))
        if step == 0:
            assert out[1][0].item() == 0.0 and str(out[1][0].item()) == "-0.0"
        x = out[0]


def test_transition_from_a_changed_or_differentiated_state_recomputes():
    env = make("pendulum")
    g = torch.Generator().manual_seed(1)
    x, u = torch.randn(4, 2, generator=g), torch.randn(4, 1, generator=g)
    x1 = env._transition(x, u)[0]
    x1[:, 0] += 1.0  # the returned state changed in place
    _assert_bits(env._transition(x1, u), _reference(env, x1, u))
    x2 = env._transition(x1, u)[0].requires_grad_()
    (grad,) = torch.autograd.grad(env._transition(x2, u)[1].sum(), x2)
    (expected,) = torch.autograd.grad(env._reward(x2, u, env._dynamics(x2, u)).sum(), x2)
    assert torch.equal(grad, expected) and grad.abs().sum() > 0


def test_eager_step_flags_between_time_limits_are_false_and_not_shared():
    venv = VecEnv(make("pendulum"), 3, seed=0, max_steps=4)
    venv.reset()
    flags = []
    for _ in range(8):
        _, _, term, trunc, info = venv.step(torch.zeros(3, 1))
        flags.append((term, trunc, info["done"]))
    for term, trunc, done in flags[:3]:
        assert term.dtype == torch.bool and term.shape == (3,)
        for flag in (term, trunc, done):  # a caller's write reaches no other step's flags
            flag.fill_(True)
    assert [t.tolist() for t, _, _ in flags[3:]] == [[False] * 3] * 5
    assert [d.any().item() for _, _, d in flags[3:]] == [True, False, False, False, True]
