"""``diffctl collect`` through the CLI dispatcher, its policy registry and its errors."""

from __future__ import annotations

import math

import pytest
import torch
from diffctl.envs import make

from diffctl.cli import main
from diffctl.cli.collect import POLICIES, CollectConfig, collect, random_policy, register_policy
from diffctl.data import load_dataset


def test_collect_pendulum_writes_a_dataset_that_reloads(tmp_path, capsys):
    out = tmp_path / "logs.npz"
    rc = main(
        [
            "collect",
            "--env",
            "pendulum",
            "--policy",
            "random",
            "--episodes",
            "3",
            "--out",
            str(out),
            "--seed",
            "0",
            "--no-progress",
        ]
    )
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("collected 3 episodes, 600 transitions from pendulum")
    assert "mean return" in line and str(out) in line
    traj, meta = load_dataset(out)
    assert traj.obs.shape == (200, 3, 3) and traj.actions.shape == (200, 3, 1)
    assert traj.truncated[-1].all() and traj.dones[:-1].sum() == 0
    assert traj.actions.abs().max() <= 2.0 and traj.actions.std() > 0.5
    assert meta["env"] == "pendulum" and meta["policy"] == "random" and meta["episodes"] == 3
    assert meta["spec"]["obs_dim"] == 3 and meta["seed"] == 0
    mean = traj.rewards.sum(0).mean().item()
    assert f"mean return {mean:.2f}" in line
    # same seed, same data
    assert (
        main(["collect", "--episodes", "3", "--out", str(tmp_path / "b.npz"), "--no-progress"]) == 0
    )
    assert torch.equal(load_dataset(tmp_path / "b.npz")[0].actions, traj.actions)


def test_collect_discrete_variable_length_episodes(tmp_path):
    cfg = CollectConfig(
        env="cartpole",
        policy="random",
        episodes=7,
        num_envs=2,
        out=tmp_path / "cp.npz",
        progress=False,
    )
    res = collect(cfg)
    traj = res.trajectory
    assert traj.actions.dtype == torch.int64 and set(traj.actions.unique().tolist()) == {0, 1}
    # stopped at the step where the 7th episode finished
    assert res.returns.numel() >= 7 and traj.dones[-1].any()
    assert traj.dones[:-1].sum() < 7
    assert torch.equal(res.returns, res.lengths.float())  # cart-pole pays 1 per step
    back, meta = load_dataset(tmp_path / "cp.npz")
    assert torch.equal(back.actions, traj.actions) and meta["num_envs"] == 2


def test_random_policy_bounds_and_unbounded_gaussian():
    env = make("car")
    pol = random_policy(env, seed=0, device=torch.device("cpu"), args={})
    u = pol(torch.zeros(4000, env.spec.obs_dim))
    low, high = env.spec.action_bounds()
    assert (u >= low).all() and (u <= high).all()
    torch.testing.assert_close(u.mean(0), (low + high) / 2, atol=0.05, rtol=0)
    lin = make("linear", action_low=-math.inf, action_high=math.inf)  # unbounded: unit Gaussian
    u = random_policy(lin, seed=0, device=torch.device("cpu"), args={})(
        torch.zeros(4000, lin.spec.obs_dim)
    )
    assert abs(u.mean().item()) < 0.1 and abs(u.std().item() - 1.0) < 0.1


def test_zero_policy_and_registry(tmp_path):
    res = collect(CollectConfig(policy="zero", episodes=1, out=tmp_path / "z.npz", progress=False))
    assert (res.trajectory.actions == 0).all()
    calls = {}

    def const(env, *, seed, device, args):
        calls.update(args)
        return lambda obs: torch.full((obs.shape[0], 1), float(args["u"]))

    register_policy("const-test", const)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_policy("const-test", const)
        assert (
            main(
                [
                    "collect",
                    "--policy",
                    "const-test",
                    "--policy-args",
                    "u=0.5",
                    "--episodes",
                    "1",
                    "--out",
                    str(tmp_path / "c.npz"),
                    "--no-progress",
                ]
            )
            == 0
        )
        assert calls == {"u": "0.5"}
        assert (load_dataset(tmp_path / "c.npz")[0].actions == 0.5).all()
    finally:
        POLICIES.pop("const-test")


def test_bad_flags_fail_with_a_message(tmp_path, capsys):
    out = str(tmp_path / "x.npz")
    assert main(["collect", "--episodes", "0", "--out", out]) == 2
    assert "episodes" in capsys.readouterr().err
    assert main(["collect", "--policy", "nope", "--out", out]) == 2
    assert "policy" in capsys.readouterr().err
    assert main(["collect", "--env", "nope", "--out", out, "--no-progress"]) == 2
    assert "unknown environment 'nope'" in capsys.readouterr().err
    assert (
        main(
            ["collect", "--episodes", "1", "--out", str(tmp_path / "no" / "x.npz"), "--no-progress"]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert (
        main(["collect", "--policy", "zero", "--policy-args", "a=1", "--out", out, "--no-progress"])
        == 2
    )
    assert "policy_args" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["collect", "--device", "cuda", "--out", out, "--no-progress"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert main(["collect", "--device", "nonsense", "--out", out, "--no-progress"]) == 2
    assert "device" in capsys.readouterr().err
    assert main(["collect", "--help"]) == 0
    assert "--num-envs" in capsys.readouterr().out
