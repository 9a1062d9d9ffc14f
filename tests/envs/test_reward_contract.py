"""``Env.reward_uses_next_state`` tells the truth for every registered system."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import make, registered_names


@pytest.mark.parametrize("name", registered_names())
def test_reward_reads_next_state_only_when_declared(name):
    env = make(name, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = env.initial_state(64, g)
    if env.spec.discrete:
        u = torch.randint(0, env.spec.num_actions, (64,), generator=g)
    else:
        u = torch.rand(64, env.spec.act_dim, generator=g, dtype=torch.float64) * 2 - 1
    x1 = env.dynamics(x, u)
    other = x1 + torch.randn(x1.shape, generator=g, dtype=torch.float64)
    same = torch.equal(env.reward(x, u, x1), env.reward(x, u, other))
    if not env.reward_uses_next_state:
        assert same, f"{name} declares reward_uses_next_state=False but reads x_next"
    else:
        # acrobot's reward reads x_next only at the goal: move the reached states there
        if name.startswith("acrobot"):
            other = x1.clone()
            other[:, 0] = torch.pi
        assert not torch.equal(env.reward(x, u, x1), env.reward(x, u, other)), name
