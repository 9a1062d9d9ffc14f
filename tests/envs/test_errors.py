"""Bad input to every system's public methods raises an error naming the argument."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import make

SYSTEMS = [
    "pendulum",
    "cartpole",
    "cartpole-continuous",
    "acrobot",
    "acrobot-continuous",
    "mountaincar-continuous",
    "linear",
    "car",
    "reacher",
]


def _good(name: str):
    env = make(name)
    x = env.initial_state(3, torch.Generator().manual_seed(0))
    if env.spec.discrete:
        u = torch.zeros(3, dtype=torch.int64)
    else:
        u = torch.zeros(3, env.spec.act_dim)
    return env, x, u


@pytest.mark.parametrize("name", SYSTEMS)
def test_bad_state(name: str) -> None:
    env, x, u = _good(name)
    nx = env.spec.state_dim
    with pytest.raises(ValueError, match=rf"x: expected shape \[\.\.\., {nx}\]"):
        env.dynamics(x[:, :-1], u)
    with pytest.raises(ValueError, match="x: expected shape"):
        env.dynamics(torch.tensor(1.0), u)
    with pytest.raises(TypeError, match="x: expected a floating dtype"):
        env.dynamics(x.long(), u)
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        env.dynamics(x.tolist(), u)
    with pytest.raises(ValueError, match="x: tensor is on meta"):
        env.dynamics(x.to("meta"), u)
    for method in (env.observe, env.terminated):
        with pytest.raises(ValueError, match="x: expected shape"):
            method(x[:, :-1])
        with pytest.raises(ValueError, match="x: tensor is on meta"):
            method(x.to("meta"))
    x1 = env.dynamics(x, u)
    with pytest.raises(ValueError, match=r"x_next: expected shape \(3, "):
        env.reward(x, u, x1[:2])
    with pytest.raises(ValueError, match="x_next: tensor is on meta"):
        env.reward(x, u, x1.to("meta"))


@pytest.mark.parametrize("name", SYSTEMS)
def test_bad_action(name: str) -> None:
    env, x, u = _good(name)
    with pytest.raises(ValueError, match="u: expected shape"):
        env.dynamics(x, u[:2])
    with pytest.raises(ValueError, match="u: tensor is on meta"):
        env.dynamics(x, u.to("meta"))
    with pytest.raises(TypeError, match="u: expected a torch.Tensor"):
        env.dynamics(x, u.tolist())
    if env.spec.discrete:
        with pytest.raises(TypeError, match="u: expected int64 action indices"):
            env.dynamics(x, u.float())
        with pytest.raises(ValueError, match="u: expected shape"):
            env.dynamics(x, u[:, None])
    else:
        with pytest.raises(TypeError, match="u: expected a floating dtype"):
            env.dynamics(x, u.long())
        with pytest.raises(ValueError, match="u: expected shape"):
            env.dynamics(x, torch.zeros(3, env.spec.act_dim + 1))
    with pytest.raises(ValueError, match="u: expected shape"):
        env.reward(x, u[:2], x)


@pytest.mark.parametrize("name", SYSTEMS)
def test_bad_initial_state_arguments(name: str) -> None:
    env = make(name)
    with pytest.raises(ValueError, match="n: expected a positive int"):
        env.initial_state(0)
    with pytest.raises(ValueError, match="n: expected a positive int"):
        env.initial_state(2.0)
    with pytest.raises(TypeError, match="generator"):
        env.initial_state(2, generator=0)
