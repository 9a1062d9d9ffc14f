"""``torch.autograd.gradcheck`` of ``dynamics`` and ``reward`` w.r.t. state, action and every
physical parameter, in float64, for every system, at points away from clipping kinks.

A reward that is piecewise constant in an input (cart-pole's constant 1, acrobot's -1/0, the
mountain car's goal bonus) has a zero analytic gradient that autograd does not even record;
there the test checks by finite differences that the output does not change.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from diffctl.envs import Env, make

F64 = torch.float64

# name, make() options, states [3, nx] away from kinks, actions (continuous [3, nu] or indices)
CASES: list[tuple[str, dict, list, list]] = [
    ("pendulum", {}, [[0.3, -1.0], [2.0, 0.5], [-2.5, 3.0]], [[0.5], [-1.2], [1.9]]),
    (
        "cartpole",
        {},
        [[0.1, -0.2, 0.05, 0.3], [-0.5, 0.4, -0.1, -0.2], [1.0, 0.0, 0.15, 1.0]],
        [0, 1, 1],
    ),
    (
        "cartpole-continuous",
        {},
        [[0.1, -0.2, 0.05, 0.3], [-0.5, 0.4, -0.1, -0.2], [1.0, 0.0, 0.15, 1.0]],
        [[0.3], [-0.7], [0.9]],
    ),
    (
        "cartpole-continuous",
        {"swing_up": True},
        [[0.1, -0.2, 3.0, 0.3], [-2.3, 0.4, 1.5, -2.0], [2.6, 0.0, -0.4, 5.0]],
        [[0.3], [-0.7], [0.9]],
    ),
    (
        "acrobot",
        {},
        [[0.1, -0.2, 0.3, 0.5], [1.0, 0.5, -1.0, 2.0], [-0.5, 1.5, 0.2, -1.0]],
        [0, 1, 2],
    ),
    (
        "acrobot-continuous",
        {},
        [[0.1, -0.2, 0.3, 0.5], [1.0, 0.5, -1.0, 2.0], [-0.5, 1.5, 0.2, -1.0]],
        [[0.3], [-0.7], [0.9]],
    ),
    (
        "mountaincar-continuous",
        {},
        [[-0.5, 0.01], [-0.9, -0.02], [0.1, 0.03]],
        [[0.3], [-0.7], [0.9]],
    ),
    ("linear", {}, [[1.0, -0.5], [0.2, 0.3], [-2.0, 1.0]], [[0.3], [-0.7], [5.0]]),
    (
        "linear",
        {
            "A": [[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.2, 0.0, 0.9]],
            "B": [[0.0, 0.1], [0.1, 0.0], [0.05, 0.05]],
            "Q": [[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]],
            "R": [[1.0, 0.2], [0.2, 0.5]],
            "action_low": -1.0,
            "action_high": 1.0,
        },
        [[1.0, -0.5, 0.2], [0.2, 0.3, -1.0], [-2.0, 1.0, 0.5]],
        [[0.3, -0.2], [-0.7, 0.5], [0.9, 0.0]],
    ),
    (
        "car",
        {},
        [[0.0, 0.0, 0.3, 1.0], [2.0, -1.0, -1.0, 3.0], [4.0, 5.0, 2.0, -0.5]],
        [[0.5, 0.1], [-1.5, -0.3], [1.0, 0.45]],
    ),
    (
        "reacher",
        {},
        [[0.1, 0.2, 0.5, -0.3], [1.0, -1.5, 2.0, 1.0], [-2.0, 2.5, -1.0, 0.4]],
        [[0.5, -0.5], [1.5, 1.0], [-1.9, 0.1]],
    ),
]
IDS = [
    f"{c[0]}{'-swing_up' if c[1].get('swing_up') else ''}{'-custom' if 'A' in c[1] else ''}"
    for c in CASES
]


def _build(name: str, opts: dict, xs: list, us: list) -> tuple[Env, torch.Tensor, torch.Tensor]:
    env = make(name, dtype=F64, **opts)
    x = torch.tensor(xs, dtype=F64)
    u = torch.tensor(us) if env.spec.discrete else torch.tensor(us, dtype=F64)
    return env, x, u


def _check(fn: Callable[[torch.Tensor], torch.Tensor], inp: torch.Tensor) -> None:
    """gradcheck ``fn`` at ``inp``; if the output is piecewise constant in ``inp`` (autograd
    records nothing), check by central differences that it does not change."""
    inp = inp.detach().clone().requires_grad_(True)
    out = fn(inp)
    if out.requires_grad:
        assert torch.autograd.gradcheck(fn, (inp,), eps=1e-6, atol=1e-5, rtol=1e-4)
        return
    with torch.no_grad():
        for i in range(inp.numel()):
            d = torch.zeros_like(inp).reshape(-1)
            d[i] = 1e-6
            d = d.reshape(inp.shape)
            assert torch.equal(fn(inp + d), fn(inp - d)), f"output changes along input {i}"


@pytest.mark.parametrize(("name", "opts", "xs", "us"), CASES, ids=IDS)
def test_gradcheck_state_and_action(name: str, opts: dict, xs: list, us: list) -> None:
    env, x, u = _build(name, opts, xs, us)
    _check(lambda x: env.dynamics(x, u), x)
    _check(lambda x: env.reward(x, u, env.dynamics(x.detach(), u)), x)
    _check(lambda x1: env.reward(x, u, x1), env.dynamics(x, u))
    if not env.spec.discrete:
        _check(lambda u: env.dynamics(x, u), u)
        _check(lambda u: env.reward(x, u, env.dynamics(x, u.detach())), u)


@pytest.mark.parametrize(("name", "opts", "xs", "us"), CASES, ids=IDS)
def test_gradcheck_params(name: str, opts: dict, xs: list, us: list) -> None:
    env, x, u = _build(name, opts, xs, us)
    assert env.params, "every system exposes differentiable physical parameters"
    for pname, value in env.params.items():

        def dyn(p: torch.Tensor, pname: str = pname) -> torch.Tensor:
            return env.replace(**{pname: p}).dynamics(x, u)

        def rew(p: torch.Tensor, pname: str = pname) -> torch.Tensor:
            e = env.replace(**{pname: p})
            return e.reward(x, u, e.dynamics(x, u))

        _check(dyn, value)
        _check(rew, value)


def test_gradient_flows_through_a_rollout_to_params_and_actions() -> None:
    """Backprop through time: a 50-step swing-up rollout differentiates w.r.t. actions and
    every parameter, and the action gradient matches a finite difference."""
    env = make("cartpole-continuous", swing_up=True, dtype=F64)
    x0 = env.initial_state(2, torch.Generator().manual_seed(0))
    us = (0.5 * torch.sin(torch.arange(50, dtype=F64))[:, None, None]).expand(50, 2, 1)

    def total(us: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        e = env.replace(length=length)
        x, ret = x0, torch.zeros(2, dtype=F64)
        for t in range(us.shape[0]):
            x1 = e.dynamics(x, us[t])
            ret = ret + e.reward(x, us[t], x1)
            x = x1
        return ret.sum()

    us = us.clone().requires_grad_(True)
    length = torch.tensor(0.5, dtype=F64, requires_grad=True)
    g_u, g_l = torch.autograd.grad(total(us, length), (us, length))
    assert torch.isfinite(g_u).all() and g_u.abs().sum() > 0 and math.isfinite(float(g_l))
    d = torch.zeros_like(us)
    d[10, 1, 0] = 1e-6
    with torch.no_grad():
        fd = (total(us + d, length) - total(us - d, length)) / 2e-6
    assert abs(float(fd) - float(g_u[10, 1, 0])) < 1e-5 * max(1.0, abs(float(fd)))
