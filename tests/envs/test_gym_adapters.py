"""gymnasium adapters: ``to_gymnasium`` (check_env), ``to_gymnasium_vector`` and
``from_gymnasium`` (the ``VecEnv`` API over any gymnasium env)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from diffctl.envs import VecEnv, make, registered_names

gym = pytest.importorskip("gymnasium")
from diffctl.envs import from_gymnasium, to_gymnasium, to_gymnasium_vector  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

SYSTEMS = [n for n in registered_names() if not n.startswith("brax")]


@pytest.mark.parametrize("name", SYSTEMS)
def test_check_env_passes(name: str) -> None:
    genv = to_gymnasium(make(name), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite observation bounds are reported as warnings
        check_env(genv, skip_render_check=True)
    assert genv.observation_space.dtype == np.float32
    obs, _ = genv.reset(seed=1)
    assert obs.dtype == np.float32 and obs.shape == (genv.env.spec.obs_dim,)


@pytest.mark.parametrize("name", SYSTEMS)
def test_sb3_check_env_passes(name: str) -> None:
    """SB3's checker refuses an infinite action box: every env's default bounds are finite."""
    sb3_check_env = pytest.importorskip("stable_baselines3.common.env_checker").check_env
    genv = to_gymnasium(make(name), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3 recommends a [-1, 1] box: a warning only
        sb3_check_env(genv, warn=True)  # (its finite-bounds assertion runs with warn=True)


def test_to_gymnasium_steps_like_the_env_and_truncates() -> None:
    env = make("pendulum", dtype=torch.float64)
    genv = to_gymnasium(env)
    x = torch.tensor([0.5, -0.3], dtype=torch.float64)
    obs, _ = genv.reset(seed=0, options={"state": x.numpy()})
    np.testing.assert_allclose(obs, env.observe(x).numpy(), atol=1e-6)
    for t in range(1, env.spec.max_steps + 1):
        u = torch.tensor([math.sin(t)], dtype=torch.float64)
        x1 = env.dynamics(x, u)
        obs, r, term, trunc, _ = genv.step(u.numpy().astype(np.float32))
        assert abs(r - float(env.reward(x, u, x1))) < 1e-4
        np.testing.assert_allclose(genv.state, x1.numpy(), atol=1e-6)
        assert not term and trunc == (t == env.spec.max_steps)
        x = torch.as_tensor(genv.state)
    # seeded resets are reproducible and draw from the env's start distribution
    a, _ = genv.reset(seed=7)
    b, _ = genv.reset(seed=7)
    np.testing.assert_array_equal(a, b)
    assert abs(genv.state[0]) <= math.pi and abs(genv.state[1]) <= 1.0


def test_to_gymnasium_discrete_terminates() -> None:
    genv = to_gymnasium(make("cartpole"), seed=0)
    genv.reset()
    for _ in range(500):
        _, r, term, trunc, _ = genv.step(1)  # always push right: the pole falls
        assert r == 1.0
        if term:
            break
    assert term and not trunc


def test_to_gymnasium_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="env"):
        to_gymnasium("pendulum")
    with pytest.raises(TypeError, match="seed"):
        to_gymnasium(make("pendulum"), seed=1.5)
    genv = to_gymnasium(make("pendulum"))
    with pytest.raises(RuntimeError, match="reset"):
        genv.step(np.zeros(1, np.float32))
    genv.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        genv.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="action"):
        genv.step(np.array([np.nan], np.float32))
    with pytest.raises(ValueError, match=r"options\['state'\]"):
        genv.reset(options={"state": np.zeros(3)})
    dgenv = to_gymnasium(make("cartpole"))
    dgenv.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        dgenv.step(2)
    with pytest.raises(TypeError, match="action"):
        dgenv.step(0.5)
    with pytest.raises(TypeError, match="action"):
        dgenv.step(True)
    assert dgenv.step(np.int64(1))[1] == 1.0


def test_to_gymnasium_vector_matches_vecenv_and_autoresets_in_the_same_step() -> None:
    env = make("cartpole")
    genv = to_gymnasium_vector(env, 8, seed=0)
    assert isinstance(genv, gym.vector.VectorEnv)
    assert genv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert genv.observation_space.shape == (8, 4) and genv.action_space.shape == (8,)
    ref = VecEnv(env, 8, seed=0)
    obs, _ = genv.reset(seed=0)
    np.testing.assert_array_equal(obs, ref.reset(seed=0).numpy())
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(60):
        a = rng.integers(0, 2, size=8)
        obs, r, term, trunc, infos = genv.step(a)
        robs, rr, rterm, rtrunc, rinfo = ref.step(torch.as_tensor(a))
        np.testing.assert_array_equal(obs, robs.numpy())
        np.testing.assert_array_equal(term, rterm.numpy())
        assert obs.dtype == np.float32 and r.dtype == np.float64 and (r == 1.0).all()
        if term.any():
            finished += int(term.sum())
            np.testing.assert_array_equal(infos["_final_obs"], term | trunc)
            for i in np.flatnonzero(term):
                np.testing.assert_array_equal(infos["final_obs"][i], rinfo["final_obs"][i].numpy())
                assert np.abs(infos["final_obs"][i][[0, 2]]).max() > 0.2  # past a threshold
                assert np.abs(obs[i]).max() <= 0.05  # already reset
        else:
            assert "final_obs" not in infos
    assert finished > 5


def test_to_gymnasium_vector_works_with_gymnasium_episode_statistics() -> None:
    venv = gym.wrappers.vector.RecordEpisodeStatistics(to_gymnasium_vector(make("cartpole"), 4))
    venv.reset(seed=0)
    returns = np.zeros(4)
    seen = 0
    for _ in range(100):
        _, r, term, trunc, info = venv.step(np.ones(4, dtype=np.int64))
        returns += r
        if "episode" in info:
            done = info["_episode"]
            np.testing.assert_array_equal(info["episode"]["r"][done], returns[done])
            returns[done] = 0.0
            seen += int(done.sum())
    assert seen >= 4


def test_from_gymnasium_pendulum_agrees_with_our_vecenv() -> None:
    n = 4
    runner = from_gymnasium("Pendulum-v1", num_envs=n, seed=0)
    assert runner.spec.obs_dim == 3 and runner.spec.act_dim == 1 and not runner.spec.discrete
    assert runner.spec.action_low == (-2.0,) and runner.spec.max_steps == 200
    assert runner.spec.dt == 0.05 and runner.num_envs == n and runner.device.type == "cpu"
    obs = runner.reset()
    x0 = torch.tensor(
        np.stack([e.unwrapped.state for e in runner.vector_env.envs]), dtype=torch.float64
    )
    ours = VecEnv(make("pendulum", dtype=torch.float64), n, seed=0)
    ours.reset()
    np.testing.assert_allclose(obs.numpy(), ours.set_state(x0).numpy(), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    for t in range(200):
        # on a 1/1024 grid, where gymnasium's float32 action arithmetic is exact
        u = torch.round((4 * torch.rand(n, 1, generator=g) - 2) * 1024) / 1024
        o1, r1, te1, tr1, i1 = runner.step(u.float())
        o2, r2, te2, tr2, i2 = ours.step(u.double())
        assert o1.dtype == torch.float32 and r1.dtype == torch.float32
        np.testing.assert_allclose(r1.numpy(), r2.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(i1["final_obs"].numpy(), i2["final_obs"].numpy(), atol=1e-5)
        assert torch.equal(tr1, tr2) and torch.equal(te1, te2) and tr1.all() == (t == 199)
    s1, s2 = runner.episode_statistics(), ours.episode_statistics()
    assert s1["count"] == s2["count"] == n
    np.testing.assert_allclose(s1["last_returns"], s2["last_returns"].float(), rtol=1e-5)
    np.testing.assert_allclose(s1["mean_return"], s2["mean_return"], rtol=1e-5)
    assert runner.episode_statistics()["count"] == 0  # cleared


def test_from_gymnasium_discrete_cartpole() -> None:
    runner = from_gymnasium("CartPole-v1", num_envs=5, seed=1)
    assert runner.spec.discrete and runner.spec.num_actions == 2 and runner.spec.act_dim == 0
    obs = runner.reset()
    assert obs.shape == (5, 4) and runner.last_obs is obs
    g = torch.Generator().manual_seed(0)
    lengths, total = [], 0
    ep_len = np.zeros(5, dtype=int)
    for _ in range(150):
        obs, r, term, trunc, info = runner.step(torch.randint(2, (5,), generator=g))
        assert (r == 1.0).all() and obs.dtype == torch.float32
        ep_len += 1
        for i in torch.nonzero(info["done"]).flatten().tolist():
            fo = info["final_obs"][i]
            assert fo[0].abs() > 2.4 or fo[2].abs() > 12 * 2 * math.pi / 360
            assert obs[i].abs().max() <= 0.05  # reset in the same step
            lengths.append(int(ep_len[i]))
            ep_len[i] = 0
        assert runner.elapsed_steps.tolist() == ep_len.tolist()
        not_done = ~info["done"]
        assert torch.equal(info["final_obs"][not_done], obs[not_done])
        total += int(info["done"].sum())
    stats = runner.episode_statistics()
    assert stats["count"] == total == len(lengths) > 10
    assert stats["mean_return"] == pytest.approx(np.mean(lengths))  # reward 1 per step
    assert stats["std_return"] == pytest.approx(np.std(lengths))
    runner.close()


def test_from_gymnasium_runs_through_the_data_rollout() -> None:
    data = pytest.importorskip("diffctl.data")
    runner = from_gymnasium("Pendulum-v1", num_envs=3, seed=0)
    traj = data.rollout(runner, lambda obs: torch.zeros(obs.shape[0], 1), 20)
    assert traj.obs.shape == (20, 3, 3) and traj.rewards.shape == (20, 3)
    assert torch.equal(traj.obs[1:], traj.next_obs[:-1])  # no episode ended in 20 steps


def test_from_gymnasium_factory_and_seeding() -> None:
    a = from_gymnasium(lambda: gym.make("Pendulum-v1"), num_envs=2, seed=5).reset()
    b = from_gymnasium("Pendulum-v1", num_envs=2, seed=5).reset()
    c = from_gymnasium("Pendulum-v1", num_envs=2, seed=6).reset()
    assert torch.equal(a, b) and not torch.equal(b, c)


class _DictObsEnv(gym.Env):
    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,))})
    action_space = gym.spaces.Discrete(2)


def test_from_gymnasium_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="env: unknown gymnasium id 'NoSuchEnv-v0'"):
        from_gymnasium("NoSuchEnv-v0")
    with pytest.raises(TypeError, match="env: the factory must return a gymnasium.Env"):
        from_gymnasium(lambda: "not an env")
    with pytest.raises(TypeError, match="env"):
        from_gymnasium(3)
    with pytest.raises(ValueError, match="only Box observation spaces"):
        from_gymnasium(_DictObsEnv)
    with pytest.raises(ValueError, match="num_envs"):
        from_gymnasium("Pendulum-v1", num_envs=0)
    with pytest.raises(TypeError, match="seed"):
        from_gymnasium("Pendulum-v1", seed="0")
    runner = from_gymnasium("Pendulum-v1", num_envs=2)
    with pytest.raises(RuntimeError, match="reset"):
        runner.step(torch.zeros(2, 1))
    runner.reset()
    with pytest.raises(ValueError, match="u: expected shape"):
        runner.step(torch.zeros(3, 1))
    with pytest.raises(TypeError, match="u: expected a floating dtype"):
        runner.step(torch.zeros(2, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="u: tensor is on meta"):
        runner.step(torch.zeros(2, 1, device="meta"))
    with pytest.raises(ValueError, match="u: action contains NaN"):
        runner.step(torch.full((2, 1), float("nan")))
    with pytest.raises(TypeError, match="u: expected a torch.Tensor"):
        runner.step(np.zeros((2, 1)))
    druns = from_gymnasium("CartPole-v1", num_envs=2)
    druns.reset()
    with pytest.raises(ValueError, match=r"u: action index outside \[0, 2\)"):
        druns.step(torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="u: expected int64"):
        druns.step(torch.zeros(2))
