"""VecEnv: auto-reset, time limits, episode statistics, fused == eager, validation."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import VecEnv, make
from diffctl.envs.pendulum import Pendulum


def _run(venv: VecEnv, steps: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    venv.reset()
    out = []
    for _ in range(steps):
        u = 4 * torch.rand(venv.num_envs, 1, generator=g) - 2
        obs, r, term, trunc, info = venv.step(u)
        out.append((obs, r, term, trunc, info["final_obs"], venv.state.clone()))
    return out


def test_shapes_and_time_limit_auto_reset():
    venv = VecEnv(make("pendulum"), 5, seed=0, max_steps=7)
    obs = venv.reset()
    assert obs.shape == (5, 3)
    u = torch.zeros(5, 1)
    for t in range(7):
        prev_state = venv.state.clone()
        obs, r, term, trunc, info = venv.step(u)
        assert obs.shape == (5, 3) and r.shape == (5,) and term.dtype == torch.bool
        expected_next = venv.env.dynamics(prev_state, u)
        torch.testing.assert_close(info["final_state"], expected_next)
        torch.testing.assert_close(info["final_obs"], venv.env.observe(expected_next))
        torch.testing.assert_close(r, venv.env.reward(prev_state, u, expected_next))
        if t < 6:
            assert not trunc.any() and torch.equal(obs, info["final_obs"])
    # step 7 hits the time limit: truncated, reset to a fresh start, counters cleared
    assert trunc.all() and not term.any() and info["done"].all()
    assert not torch.equal(obs, info["final_obs"])
    torch.testing.assert_close(obs, venv.env.observe(venv.state))
    assert (venv.elapsed_steps == 0).all()


def test_episode_statistics_match_manual_sums():
    venv = VecEnv(make("pendulum"), 3, seed=0, max_steps=10)
    venv.reset()
    manual = torch.zeros(3)
    finished = []
    g = torch.Generator().manual_seed(0)
    for _ in range(25):
        u = 4 * torch.rand(3, 1, generator=g) - 2
        _, r, _, _, info = venv.step(u)
        manual += r
        for i in torch.nonzero(info["done"]).flatten().tolist():
            finished.append(manual[i].item())
            manual[i] = 0
    stats = venv.episode_statistics()
    assert stats["count"] == len(finished) == 6
    f = torch.tensor(finished, dtype=torch.float64)
    assert stats["mean_return"] == pytest.approx(f.mean().item(), rel=1e-5)
    assert stats["std_return"] == pytest.approx(f.std(unbiased=False).item(), rel=1e-4)
    torch.testing.assert_close(stats["last_returns"], torch.tensor(finished[-3:]))
    assert (stats["last_lengths"] == 10).all()
    assert venv.episode_statistics()["count"] == 0  # cleared on read


def test_same_seed_same_numbers_and_different_seed_differs():
    a = _run(VecEnv(make("pendulum"), 4, seed=3, max_steps=5), 12)
    b = _run(VecEnv(make("pendulum"), 4, seed=3, max_steps=5), 12)
    c = _run(VecEnv(make("pendulum"), 4, seed=4, max_steps=5), 12)
    for x, y in zip(a, b):
        for s, t in zip(x, y):
            assert torch.equal(s, t)
    assert not torch.equal(a[-1][0], c[-1][0])


def test_fused_path_equals_eager_reference(capsys):
    eager = _run(VecEnv(make("pendulum"), 16, seed=0, max_steps=9), 30)
    fused = _run(VecEnv(make("pendulum"), 16, seed=0, max_steps=9, fused=True), 30)
    err = capsys.readouterr().err  # the one-off compile is announced, once
    assert err.count("VecEnv: compiling the step of pendulum for 16 envs") == 1
    assert err.count("VecEnv: compiled in") == 1
    for x, y in zip(eager, fused):
        for s, t in zip(x, y):
            torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-5)


def test_fused_step_under_inference_mode_with_gradients_and_parameter_changes():
    env = make("pendulum", g=9.0)
    fused, eager = (VecEnv(env, 8, seed=0, max_steps=6, fused=f) for f in (True, False))
    for venv in (fused, eager):
        venv.reset()
    u = torch.full((8, 1), 0.5)
    with torch.inference_mode():  # (trainers collect rollouts so)
        for _ in range(4):
            (obs_f, r_f, *_), (obs_e, r_e, *_) = fused.step(u), eager.step(u)
            torch.testing.assert_close((obs_f, r_f), (obs_e, r_e))
            assert obs_f.stride() == obs_e.stride()
    env.params["g"].fill_(3.0)  # parameters changed in place or replaced: the step reads them
    env.params["l"] = torch.tensor(1.5)
    x = fused.state.clone()
    u = u.clone().requires_grad_()
    _, r, _, _, info = fused.step(u)
    torch.testing.assert_close(info["final_state"], env.dynamics(x, u.detach()))
    (grad,) = torch.autograd.grad(r.sum(), u)  # the compiled step is differentiable
    torch.testing.assert_close(grad, torch.full((8, 1), -0.001))


@pytest.mark.slow
def test_more_fused_runners_than_torch_compiles_per_function():
    # torch.compile allows 8 compiles per code object; each runner compiles its own step
    for n in range(1, 11):
        venv = VecEnv(make("pendulum"), n, seed=0, fused=True, validate=False)
        venv.reset()
        assert venv.step(torch.zeros(n, 1))[0].shape == (n, 3)


def test_fused_cartpole_equals_eager_with_terminations_and_statistics():
    runs = {}
    for fused in (False, True):
        venv = VecEnv(make("cartpole"), 32, seed=2, max_steps=40, fused=fused)
        obs = venv.reset()
        g = torch.Generator().manual_seed(0)
        first, steps = obs.clone(), []
        for _ in range(60):  # random pushes: poles fall (terminated) and some hit the limit
            obs, r, term, trunc, info = venv.step(torch.randint(0, 2, (32,), generator=g))
            steps.append((obs, r, term, trunc, info["final_obs"], info["done"], venv.state))
            if len(steps) == 1:
                snapshot = [s.clone() for s in steps[0]]
        assert all(s[2].dtype == torch.bool and s[5].dtype == torch.bool for s in steps)
        for s, kept in zip(steps[0], snapshot):  # returned tensors are never written again
            assert torch.equal(s, kept)
        runs[fused] = (first, steps, venv.episode_statistics(), venv.elapsed_steps)
    (first_e, eager, stats_e, t_e), (first_f, fused, stats_f, t_f) = runs[False], runs[True]
    torch.testing.assert_close(first_e, first_f)
    for x, y in zip(eager, fused):
        for s, t in zip(x, y):
            torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-5)
    assert any(s[2].any() for s in eager) and any(s[3].any() for s in eager)
    assert stats_e["count"] == stats_f["count"] > 32
    assert stats_f["mean_return"] == pytest.approx(stats_e["mean_return"], rel=1e-6)
    torch.testing.assert_close(stats_f["last_lengths"], stats_e["last_lengths"])
    assert torch.equal(t_e, t_f) and t_f.dtype == torch.int64


def test_set_state_and_float64():
    venv = VecEnv(make("pendulum", dtype=torch.float64), 2, seed=0)
    x = torch.tensor([[0.1, 0.0], [3.0, -1.0]], dtype=torch.float64)
    obs = venv.set_state(x)
    assert obs.dtype == torch.float64
    torch.testing.assert_close(venv.state, x)
    with pytest.raises(ValueError, match="x: expected shape"):
        venv.set_state(torch.zeros(3, 2, dtype=torch.float64))


@pytest.mark.parametrize(
    ("u", "exc", "match"),
    [
        (torch.zeros(4, 2), ValueError, "u: expected shape"),
        (torch.zeros(4), ValueError, "u: expected shape"),
        (torch.zeros(4, 1, dtype=torch.int64), TypeError, "u: expected a floating dtype"),
        (torch.full((4, 1), float("nan")), ValueError, "u: action contains NaN"),
        (torch.zeros(4, 1, device="meta"), ValueError, "u: tensor is on meta"),
        ([[0.0]] * 4, TypeError, "u: expected a torch.Tensor"),
    ],
)
def test_validate_rejects_bad_actions(u, exc, match):
    venv = VecEnv(make("pendulum"), 4, seed=0)
    venv.reset()
    with pytest.raises(exc, match=match):
        venv.step(u)


def test_bad_constructor_arguments():
    env = make("pendulum")
    with pytest.raises(ValueError, match="num_envs"):
        VecEnv(env, 0)
    with pytest.raises(TypeError, match="env: expected a diffctl Env"):
        VecEnv("pendulum", 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_steps"):
        VecEnv(env, 2, max_steps=0)
    with pytest.raises(RuntimeError, match="reset"):
        VecEnv(env, 2).step(torch.zeros(2, 1))


def test_hash_uniform_statistics_and_determinism():
    from diffctl.envs.vec_env import hash_uniform

    c = torch.tensor(7, dtype=torch.int32)
    u = hash_uniform(0, c, (50000, 3), torch.float64)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.005
    assert abs(u.var().item() - 1 / 12) < 0.002
    flat = u.flatten()
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()) < 0.01
    assert torch.equal(u, hash_uniform(0, c, (50000, 3), torch.float64))
    assert not torch.equal(u, hash_uniform(0, c + 1, (50000, 3), torch.float64))
    assert not torch.equal(u, hash_uniform(1, c, (50000, 3), torch.float64))


def test_auto_resets_draw_fresh_starts_from_the_reset_distribution():
    venv = VecEnv(make("pendulum"), 2000, seed=0, max_steps=1)
    venv.reset()
    starts = []
    for _ in range(2):  # every step ends every episode (max_steps=1): all envs restart
        venv.step(torch.zeros(2000, 1))
        starts.append(venv.state.clone())
    a, b = starts
    assert not torch.equal(a, b)  # a new start every episode
    for x in (a, b):
        assert x[:, 0].abs().max() <= torch.pi and x[:, 1].abs().max() <= 1
        assert abs(x[:, 0].mean().item()) < 0.1 and x[:, 0].std().item() > 1.7  # U(-pi, pi)


def test_state_dict_round_trip_continues_exactly():
    a = VecEnv(make("cartpole"), 8, seed=5)
    a.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        a.step(torch.randint(0, 2, (8,), generator=g))
    saved = a.state_dict()
    b = VecEnv(make("cartpole"), 8, seed=99)
    b.reset()
    b.load_state_dict(saved)
    for _ in range(60):
        u = torch.randint(0, 2, (8,), generator=g)
        oa, ra, *_ = a.step(u)
        ob, rb, *_ = b.step(u)
        assert torch.equal(oa, ob) and torch.equal(ra, rb)
    with pytest.raises(ValueError, match="missing keys"):
        b.load_state_dict({"state": saved["state"]})


class _PendulumViaStepCore(Pendulum):
    """Pendulum with its own ``_terminated`` (still never true): VecEnv's eager step then runs
    the general ``_step_core`` instead of the lockstep path of never-terminating envs."""

    def _terminated(self, x):
        return torch.zeros(x.shape[:-1], dtype=torch.bool, device=x.device)


def test_lockstep_step_of_a_never_terminating_env_equals_step_core():
    runs = []
    for env in (make("pendulum"), _PendulumViaStepCore()):
        venv = VecEnv(env, 3, seed=4, max_steps=6)
        assert venv._lockstep == (type(env) is not _PendulumViaStepCore)
        g = torch.Generator().manual_seed(0)
        steps = [venv.reset()]
        for i in range(20):
            obs, r, term, trunc, info = venv.step(4 * torch.rand(3, 1, generator=g) - 2)
            steps += [obs, r, term, trunc, info["final_obs"], info["final_state"], info["done"]]
            steps += [venv.state, venv.elapsed_steps]
            if i == 8:  # mid-episode: the saved counts continue either path exactly
                saved = venv.state_dict()
        stats = venv.episode_statistics()
        steps += [stats["last_returns"], stats["last_lengths"], torch.tensor(stats["mean_return"])]
        venv.load_state_dict(saved)
        steps += [venv.step(torch.ones(3, 1))[0], venv.elapsed_steps]
        runs.append(steps)
    for a, b in zip(*runs):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert sum(bool(t.all()) for t in runs[0][4 : 1 + 9 * 20 : 9]) == 3  # three time limits


def test_lockstep_env_loads_unequal_step_counts_into_the_general_step():
    venv = VecEnv(make("pendulum"), 2, seed=0, max_steps=5)
    venv.reset()
    saved = venv.state_dict()
    saved["t"] = torch.tensor([1, 3])
    venv.load_state_dict(saved)
    trunc = [venv.step(torch.zeros(2, 1))[3].tolist() for _ in range(4)]
    assert trunc == [[False, False], [False, True], [False, False], [True, False]]
    assert venv.elapsed_steps.tolist() == [0, 2]


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


def test_env_stepped_under_inference_mode_still_differentiates_afterwards():
    # a trainer may run a user's env under inference mode; nothing the env keeps from then
    # may stop a later pass from saving tensors for backward
    env = make("pendulum")
    with torch.inference_mode():
        venv = VecEnv(env, 4, seed=0, validate=False)
        venv.reset()
        for _ in range(3):
            venv.step(torch.ones(4, 1))
    venv = VecEnv(env, 4, seed=0)
    venv.reset()
    u = torch.full((4, 1), 0.5, requires_grad=True)
    obs, r, *_ = venv.step(u)
    (grad,) = torch.autograd.grad(r.sum() + obs.sum(), u)
    assert grad.isfinite().all() and grad.abs().sum() > 0
