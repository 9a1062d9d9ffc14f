"""Dataset I/O: round trip, metadata, atomic write, and every kind of bad file."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from diffctl.envs import VecEnv, make

import diffctl
from diffctl.data import Trajectory, load_dataset, rollout, save_dataset, spec_to_dict


@pytest.fixture(scope="module")
def traj():
    env = make("pendulum")
    venv = VecEnv(env, 3, seed=0, max_steps=4)
    g = torch.Generator().manual_seed(0)

    def policy(o):
        u = torch.rand(o.shape[0], 1, generator=g) * 4 - 2
        return u, {"logp": -(u[:, 0] ** 2)}

    return rollout(venv, policy, 6)


def _save(tmp_path, traj, name="d.npz"):
    spec = make("pendulum").spec
    return save_dataset(tmp_path / name, traj, {"env": "pendulum", "spec": spec, "seed": 3})


def test_round_trip_and_metadata(tmp_path, traj):
    path = _save(tmp_path, traj)
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]  # no temp file left behind
    back, meta = load_dataset(path)
    for name in (
        "obs",
        "actions",
        "rewards",
        "next_obs",
        "terminated",
        "truncated",
        "states",
        "next_states",
    ):
        assert torch.equal(getattr(back, name), getattr(traj, name)), name
    assert torch.equal(back.extras["logp"], traj.extras["logp"])
    assert back.truncated.any()  # the time limit of 4 fired
    assert meta["env"] == "pendulum" and meta["seed"] == 3
    assert meta["spec"] == spec_to_dict(make("pendulum").spec)
    assert meta["spec"]["action_low"] == [-2.0] and meta["spec"]["obs_dim"] == 3
    assert meta["diffctl_version"] == diffctl.__version__
    assert meta["format"] == "diffctl.dataset/1" and meta["created"].endswith("+00:00")


def test_discrete_actions_without_states(tmp_path):
    T, B = 3, 2
    tr = Trajectory(
        obs=torch.zeros(T, B, 4),
        actions=torch.ones(T, B, dtype=torch.int64),
        rewards=torch.ones(T, B),
        next_obs=torch.zeros(T, B, 4),
        terminated=torch.zeros(T, B, dtype=torch.bool),
        truncated=torch.zeros(T, B, dtype=torch.bool),
    )
    back, meta = load_dataset(save_dataset(tmp_path / "c.npz", tr))
    assert back.actions.dtype == torch.int64 and back.states is None
    assert meta["format"] == "diffctl.dataset/1"


def test_atomic_write_keeps_old_file_on_failure(tmp_path, traj):
    path = _save(tmp_path, traj)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="meta"):
        save_dataset(path, traj, {"bad": object()})
    bad = traj.replace(rewards=traj.rewards.clone())
    bad.rewards[2, 1] = float("nan")
    bad.rewards[4, 0] = float("inf")
    with pytest.raises(ValueError, match=r"rewards.*2 of 18 rows.*t=2, env=1"):
        save_dataset(path, bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]


def _rewrite(src, dst, change):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)
    return dst


def test_bad_files_name_the_file_and_the_field(tmp_path, traj):
    path = _save(tmp_path, traj)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_dataset(tmp_path / "missing.npz")
    raw = path.read_bytes()
    for cut in (len(raw) // 2, 100, len(raw) - 30):
        (tmp_path / "cut.npz").write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="cut.npz"):
            load_dataset(tmp_path / "cut.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="junk.npz"):
        load_dataset(tmp_path / "junk.npz")
    # a member whose bytes are damaged (CRC mismatch) is named
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("rewards.npy")
    damaged = bytearray(raw)
    off = info.header_offset + 30 + len(info.filename) + len(info.extra) + 140
    damaged[off : off + 8] = b"\xff" * 8
    (tmp_path / "crc.npz").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"crc.npz.*'rewards'"):
        load_dataset(tmp_path / "crc.npz")

    def drop(key):
        return lambda a: a.pop(key)

    cases = {
        "nokey.npz": (drop("next_obs"), r"nokey.npz: missing field 'next_obs'"),
        "nometa.npz": (drop("__meta__"), r"nometa.npz: missing field '__meta__'"),
        "shape.npz": (lambda a: a.update(obs=a["obs"][:, :2]), r"shape.npz: obs"),
        "dtype.npz": (
            lambda a: a.update(terminated=a["terminated"].astype(np.float32)),
            r"dtype.npz: terminated",
        ),
        "meta.npz": (lambda a: a.update(__meta__=np.array("{oops")), r"meta.npz.*__meta__"),
        "fmt.npz": (
            lambda a: a.update(__meta__=np.array(json.dumps({"format": "x"}))),
            r"fmt.npz.*format",
        ),
    }
    for name, (change, pattern) in cases.items():
        with pytest.raises(ValueError, match=pattern):
            load_dataset(_rewrite(path, tmp_path / name, change))

    def nan_obs(a):
        a["next_obs"] = a["next_obs"].copy()
        a["next_obs"][3, 2, 1] = np.nan
        a["next_obs"][5, 0, 0] = np.nan

    with pytest.raises(ValueError, match=r"nan.npz: field 'next_obs': 2 of 18 rows.*t=3, env=2"):
        load_dataset(_rewrite(path, tmp_path / "nan.npz", nan_obs))


def test_bad_arguments(tmp_path, traj):
    with pytest.raises(TypeError, match="trajectory"):
        save_dataset(tmp_path / "x.npz", {"obs": 1})
    with pytest.raises(TypeError, match="path"):
        save_dataset(3, traj)
    with pytest.raises(TypeError, match="meta"):
        save_dataset(tmp_path / "x.npz", traj, [1, 2])
    with pytest.raises(FileNotFoundError, match="path"):
        save_dataset(tmp_path / "no" / "dir.npz", traj)
    with pytest.raises(TypeError, match="spec"):
        spec_to_dict({"a": 1})
