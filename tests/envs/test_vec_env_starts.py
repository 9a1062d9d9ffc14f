"""The eager VecEnv step takes its auto-reset start states from blocks drawn ahead: the same
start states, observations and counter as drawing ``hash_uniform`` step by step."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import VecEnv, make
from diffctl.envs.pendulum import Pendulum
from diffctl.envs.vec_env import _START_BLOCK, hash_uniform


class _TerminatingPendulum(Pendulum):
    """Pendulum with its own ``_terminated`` (never true): the eager step takes the general
    path, whose start states come from blocks, instead of the lockstep step, which draws them
    at the time limits only."""

    def _terminated(self, x):
        return torch.zeros(x.shape[:-1], dtype=torch.bool, device=x.device)


@pytest.mark.parametrize("env", [_TerminatingPendulum(), make("pendulum")])
def test_block_drawn_starts_equal_step_by_step_hash_draws_across_blocks_and_reseeds(env):
    n = 64
    venv = VecEnv(env, n, seed=3, max_steps=2)  # every other step resets all envs
    assert venv._lockstep == (type(env) is Pendulum)
    steps = 2 * (_START_BLOCK // n) + 5  # crosses two block boundaries
    g = torch.Generator().manual_seed(0)
    for seed in (3, 4):  # a reseeding reset discards the block drawn from the old seed
        venv.reset(seed=seed)
        for i in range(steps):
            counter = venv.state_dict()["counter"]  # (the lockstep step counts lazily)
            assert counter.item() == i
            u = 4 * torch.rand(n, 1, generator=g) - 2
            prev = venv.state.clone()
            obs, r, term, trunc, info = venv.step(u)
            x1 = venv.env.dynamics(prev, u)
            torch.testing.assert_close(info["final_state"], x1)
            if i % 2 == 1:  # the time limit: every env restarts from this step's hash draw
                assert trunc.all()
                u01 = hash_uniform(seed, counter, (n, venv.env.reset_noise_dim), torch.float32)
                x0 = venv.env._initial_state_from_uniform(u01)
                assert torch.equal(venv.state, x0)
            else:
                assert not trunc.any()
                assert torch.equal(venv.state, info["final_state"])
            assert torch.equal(obs, venv.env.observe(venv.state))
        assert venv.state_dict()["counter"].item() == steps


def test_blocked_starts_resume_mid_block_exactly():
    a = VecEnv(make("cartpole"), 16, seed=2, max_steps=7)
    a.reset()
    g = torch.Generator().manual_seed(1)
    for _ in range(_START_BLOCK // 16 + 10):  # into the second block
        a.step(torch.randint(0, 2, (16,), generator=g))
    b = VecEnv(make("cartpole"), 16, seed=0, max_steps=7)
    b.reset()
    b.load_state_dict(a.state_dict())
    for _ in range(100):
        u = torch.randint(0, 2, (16,), generator=g)
        oa, ra, ta, ua, _ = a.step(u)
        ob, rb, tb, ub, _ = b.step(u)
        assert torch.equal(oa, ob) and torch.equal(ra, rb)
        assert torch.equal(ta, tb) and torch.equal(ua, ub)
    mean_a, mean_b = (v.episode_statistics()["mean_return"] for v in (a, b))
    assert mean_a == pytest.approx(mean_b, rel=1e-6)


def test_host_engine_draws_the_finished_copies_starts_from_the_same_numbers():
    """``Env.host_engine`` (MuJoCo): the eager step draws start states after the transition,
    for the finished copies only; the episodes, flags and statistics equal those of the
    block-drawn path, terminations and time limits mixed, and the counter keeps the same
    count, so a ``state_dict`` taken mid-run continues on either path."""
    pytest.importorskip("mujoco")
    pytest.importorskip("gymnasium")
    env = make("mujoco:InvertedPendulum-v5", dtype=torch.float64)  # falls within ~10 steps
    assert env.host_engine
    blocked = make("mujoco:InvertedPendulum-v5", dtype=torch.float64)
    blocked.host_engine = False
    n, steps = 16, 60
    a, b = VecEnv(env, n, seed=5, max_steps=9), VecEnv(blocked, n, seed=5, max_steps=9)
    a.reset(), b.reset()
    g = torch.Generator().manual_seed(0)
    terms = truncs = 0
    for _ in range(steps):
        u = 6 * torch.rand(n, 1, generator=g, dtype=torch.float64) - 3
        out_a, out_b = a.step(u), b.step(u)
        for x, y in zip(out_a[:4], out_b[:4]):
            assert torch.equal(x, y)
        assert torch.equal(a.state, b.state)
        terms, truncs = terms + int(out_a[2].sum()), truncs + int(out_a[3].sum())
    assert terms > n and truncs > 0  # both kinds of reset happened, many times
    for x, y in zip(a.episode_statistics().values(), b.episode_statistics().values()):
        assert x == y if not isinstance(x, torch.Tensor) else torch.equal(x, y)
    assert a.state_dict()["counter"].item() == b.state_dict()["counter"].item() == steps
