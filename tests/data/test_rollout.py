"""rollout on pure Envs (functional, differentiable) and on VecEnv runners."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import VecEnv, make

from diffctl.data import Trajectory, rollout


class Linear(torch.nn.Module):
    def __init__(self, n_in, n_out, scale=0.1, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(
            scale * torch.randn(n_out, n_in, generator=g, dtype=torch.float64)
        )

    def forward(self, x):
        return x @ self.W.T


def _total_reward(env, W, x0, T):
    pol = Linear(3, 1)
    with torch.no_grad():
        pol.W.copy_(W)
    return rollout(env, pol, T, x0=x0, keep_graph=True).rewards.sum()


def test_bptt_gradients_match_finite_differences():
    env = make("pendulum", dtype=torch.float64)
    T = 15
    x0 = torch.tensor([[0.3, -0.2], [-0.5, 0.4]], dtype=torch.float64)
    pol = Linear(3, 1)
    m = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    tr = rollout(env.replace(m=m), pol, T, x0=x0, keep_graph=True)
    total = tr.rewards.sum()
    # the actions stay inside the torque bound and the speed below its clip (no kinks)
    assert tr.actions.abs().max() < 2.0 and tr.states[..., 1].abs().max() < 8.0
    gW, gm = torch.autograd.grad(total, (pol.W, m))
    eps = 1e-6
    fd = torch.zeros_like(gW)
    for i in range(gW.numel()):
        dW = torch.zeros_like(gW).view(-1)
        dW[i] = eps
        dW = dW.view_as(gW)
        with torch.no_grad():
            fp = _total_reward(env, pol.W + dW, x0, T)
            fm = _total_reward(env, pol.W - dW, x0, T)
        fd.view(-1)[i] = (fp - fm) / (2 * eps)
    torch.testing.assert_close(gW, fd, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        m_p, m_m = (torch.tensor(1.0 + s * eps, dtype=torch.float64) for s in (1, -1))
        fp = rollout(env.replace(m=m_p), pol, T, x0=x0).rewards.sum()
        fm = rollout(env.replace(m=m_m), pol, T, x0=x0).rewards.sum()
    torch.testing.assert_close(gm, (fp - fm) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_no_graph_by_default_and_env_shapes():
    env = make("pendulum")
    pol = torch.nn.Linear(3, 1)
    g = torch.Generator().manual_seed(0)
    tr = rollout(env, pol, 7, num_envs=5, generator=g)
    assert isinstance(tr, Trajectory)
    assert tr.obs.shape == (7, 5, 3) and tr.actions.shape == (7, 5, 1)
    assert tr.states.shape == (7, 5, 2) and not tr.rewards.requires_grad
    assert not tr.truncated.any()
    # functional chain: next state of step t is the state of step t + 1
    torch.testing.assert_close(tr.states[1:], tr.next_states[:-1])
    torch.testing.assert_close(tr.next_obs, env.observe(tr.next_states))
    torch.testing.assert_close(tr.rewards, env.reward(tr.states, tr.actions, tr.next_states))
    # same generator seed -> same rollout
    tr2 = rollout(env, pol, 7, num_envs=5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(tr.rewards, tr2.rewards)


def test_needs_state_policy_and_extras():
    env = make("pendulum")
    seen = []

    def planner(x):
        seen.append(x.shape)
        return -x[:, :1], {"value": x.sum(-1)}

    planner.needs_state = True
    tr = rollout(env, planner, 3, num_envs=2)
    assert seen == [(2, 2)] * 3
    torch.testing.assert_close(tr.actions, -tr.states[..., :1])
    assert tr.extras["value"].shape == (3, 2)


def test_vecenv_rollout_records_final_obs_and_continues():
    env = make("pendulum")
    venv = VecEnv(env, 4, seed=0, max_steps=5)
    zero = lambda o: torch.zeros(o.shape[0], 1)  # noqa: E731
    tr = rollout(venv, zero, 12)
    assert tr.obs.shape == (12, 4, 3) and tr.states.shape == (12, 4, 2)
    # time limit of 5: truncation at t = 4 and 9, auto-reset afterwards
    assert tr.truncated.all(1).tolist() == [t in (4, 9) for t in range(12)]
    torch.testing.assert_close(tr.next_obs, env.observe(tr.next_states))
    torch.testing.assert_close(tr.obs[1:][~tr.dones[:-1]], tr.next_obs[:-1][~tr.dones[:-1]])
    assert not torch.allclose(tr.obs[5], tr.next_obs[4])  # reset in between
    # a second rollout continues from where the runner stands
    tr2 = rollout(venv, zero, 3)
    torch.testing.assert_close(tr2.states[0], tr.next_states[-1])
    tr3 = rollout(venv, zero, 2, reset=True)
    assert not torch.allclose(tr3.states[0], tr2.next_states[-1])
    x0 = torch.zeros(4, 2)
    torch.testing.assert_close(rollout(venv, zero, 1, x0=x0).states[0], x0)


class NumpyLikeRunner:
    """A runner with the VecEnv API but no Env and no state (as a gymnasium adapter), which
    writes its observations into one reused buffer."""

    num_envs = 2

    def __init__(self):
        self.buf = torch.zeros(2, 1)

    def reset(self):
        self.buf.zero_()
        return self.buf

    def step(self, u):
        self.buf += u
        z = torch.zeros(2, dtype=torch.bool)
        return self.buf, u[:, 0], z, z, {}


def test_generic_runner_copies_reused_buffers():
    tr = rollout(NumpyLikeRunner(), lambda o: torch.ones(2, 1), 3)
    assert tr.obs[:, 0, 0].tolist() == [0.0, 1.0, 2.0]
    assert tr.next_obs[:, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert tr.states is None


def test_bad_arguments():
    env = make("pendulum")
    pol = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match="horizon"):
        rollout(env, pol, 0, num_envs=2)
    with pytest.raises(TypeError, match="policy"):
        rollout(env, "pol", 3, num_envs=2)
    with pytest.raises(ValueError, match="num_envs"):
        rollout(env, pol, 3)
    with pytest.raises(ValueError, match="num_envs"):
        rollout(env, pol, 3, num_envs=3, x0=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="x0"):
        rollout(env, pol, 3, x0=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="u"):
        rollout(env, torch.nn.Linear(3, 2), 3, num_envs=2)
    with pytest.raises(TypeError, match="policy"):
        rollout(env, lambda o: o.tolist(), 3, num_envs=2)
    with pytest.raises(TypeError, match="env_or_vecenv"):
        rollout(object(), pol, 3)
    venv = VecEnv(env, 2)
    with pytest.raises(ValueError, match="generator"):
        rollout(venv, pol, 3, generator=torch.Generator())
    with pytest.raises(ValueError, match="num_envs"):
        rollout(venv, pol, 3, num_envs=5)
    needs = lambda x: x  # noqa: E731
    needs.needs_state = True
    with pytest.raises(ValueError, match="needs_state"):
        rollout(NumpyLikeRunner(), needs, 2)


class MetaRunner:
    """A VecEnv-like runner on the meta device (tensors without data) exposing .state."""

    num_envs = 3

    def __init__(self):
        self.state = torch.empty(3, 2, device="meta")

    def reset(self):
        return torch.empty(3, 4, device="meta")

    def step(self, u):
        z = torch.empty(3, dtype=torch.bool, device="meta")
        obs = torch.empty(3, 4, device="meta")
        info = {"final_obs": obs, "final_state": self.state}
        return obs, torch.empty(3, device="meta"), z, z, info


def test_rollout_never_syncs_with_the_host():
    # meta tensors hold no data: any .item()/bool()/.cpu() in the loop would raise
    env = make("pendulum", device="meta")
    pol = torch.nn.Linear(3, 1, device="meta")
    tr = rollout(env, pol, 4, x0=torch.zeros(5, 2, device="meta"), keep_graph=True)
    assert tr.rewards.device.type == "meta" and tr.rewards.requires_grad
    tr = rollout(MetaRunner(), torch.nn.Linear(4, 1, device="meta"), 4)
    assert tr.next_states.shape == (4, 3, 2) and tr.obs.device.type == "meta"
