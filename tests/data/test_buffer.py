"""ReplayBuffer: ring semantics, uniform sampling, save/load, errors."""

from __future__ import annotations

import pytest
import torch
from diffctl.envs import make

from diffctl.data import ReplayBuffer, rollout


def _batch(start, n, obs_dim=2, act_dim=1):
    ids = torch.arange(start, start + n, dtype=torch.float32)
    return (
        ids[:, None].expand(n, obs_dim).clone(),
        ids[:, None].expand(n, act_dim).clone(),
        ids.clone(),
        ids[:, None].expand(n, obs_dim) + 0.5,
        (ids % 2 == 0),
    )


def test_ring_overwrites_oldest_and_keeps_order():
    buf = ReplayBuffer(5, 2, 1)
    buf.add(*_batch(0, 3))
    assert len(buf) == 3 and not buf.full
    buf.add(*_batch(3, 4))  # wraps: keeps 2..6
    assert len(buf) == 5 and buf.full
    assert buf.data()["rewards"].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    buf.add(*_batch(7, 12))  # more than capacity: only the last 5
    assert buf.data()["rewards"].tolist() == [14.0, 15.0, 16.0, 17.0, 18.0]
    d = buf.data()
    # fields stay aligned row by row
    assert torch.equal(d["obs"][:, 0], d["rewards"]) and torch.equal(
        d["next_obs"][:, 1], d["rewards"] + 0.5
    )
    assert torch.equal(d["terminated"], d["rewards"] % 2 == 0)


def test_unbatched_add_is_a_batch_of_one_and_discrete_actions():
    buf = ReplayBuffer(4, 3, 0, discrete=True)
    buf.add(torch.zeros(3), torch.tensor(2), torch.tensor(1.0), torch.ones(3), torch.tensor(True))
    buf.add(
        torch.zeros(2, 3),
        torch.tensor([0, 1]),
        torch.zeros(2),
        torch.ones(2, 3),
        torch.zeros(2, dtype=torch.bool),
    )
    assert len(buf) == 3 and buf.data()["actions"].tolist() == [2, 0, 1]
    assert buf.sample(7)["actions"].dtype == torch.int64


def test_sampling_is_uniform_over_stored_items_and_seeded():
    buf = ReplayBuffer(100, 2, 1)
    buf.add(*_batch(0, 10))
    s = buf.sample(20000, torch.Generator().manual_seed(0))
    assert s["obs"].shape == (20000, 2) and s["rewards"].shape == (20000,)
    counts = torch.bincount(s["rewards"].long(), minlength=10).float()
    assert counts.numel() == 10  # nothing beyond the 10 stored rows
    # chi-square against uniform, 9 dof: 99.9% quantile is 27.9
    chi2 = ((counts - 2000.0) ** 2 / 2000.0).sum()
    assert chi2 < 27.9
    torch.testing.assert_close(s["next_obs"][:, 0], s["rewards"] + 0.5)
    s2 = buf.sample(20000, torch.Generator().manual_seed(0))
    assert torch.equal(s["rewards"], s2["rewards"])


def test_add_trajectory_with_states_and_round_trip(tmp_path):
    env = make("pendulum")
    tr = rollout(env, lambda o: torch.zeros(o.shape[0], 1), 6, num_envs=3)
    buf = ReplayBuffer(30, 3, 1, state_dim=2)
    buf.add_trajectory(tr)
    assert len(buf) == 18
    torch.testing.assert_close(buf.data()["next_states"], tr.flatten()["next_states"])
    path = buf.save(tmp_path / "buf.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["buf.pt"]  # no temp file left
    back = ReplayBuffer.load(path)
    assert len(back) == 18 and back.state_dim == 2 and back.capacity == 30
    for k, v in buf.data().items():
        assert torch.equal(back.data()[k], v), k
    # a full, wrapped buffer reloads in the same order and keeps overwriting the oldest
    small = ReplayBuffer(4, 2, 1)
    small.add(*_batch(0, 6))
    small.save(tmp_path / "small.pt")
    again = ReplayBuffer.load(tmp_path / "small.pt")
    again.add(*_batch(6, 1))
    assert again.data()["rewards"].tolist() == [3.0, 4.0, 5.0, 6.0]


def test_add_never_syncs_with_the_host():
    buf = ReplayBuffer(8, 2, 1, device="meta")
    batch = [x.to("meta") for x in _batch(0, 3)]
    buf.add(*batch)
    assert len(buf) == 3
    assert buf.sample(4)["obs"].device.type == "meta"


def test_load_errors_name_file_and_field(tmp_path):
    buf = ReplayBuffer(4, 2, 1)
    buf.add(*_batch(0, 3))
    path = buf.save(tmp_path / "b.pt")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        ReplayBuffer.load(tmp_path / "nope.pt")
    raw = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cut.pt"):
        ReplayBuffer.load(tmp_path / "cut.pt")
    payload = torch.load(path, weights_only=True)
    del payload["data"]["rewards"]
    torch.save(payload, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"missing.pt.*data\.rewards"):
        ReplayBuffer.load(tmp_path / "missing.pt")
    payload = torch.load(path, weights_only=True)
    payload["data"]["obs"] = torch.zeros(3, 5)
    torch.save(payload, tmp_path / "shape.pt")
    with pytest.raises(ValueError, match=r"shape.pt.*data\.obs"):
        ReplayBuffer.load(tmp_path / "shape.pt")
    payload = torch.load(path, weights_only=True)
    payload["data"]["rewards"][1] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=r"nan.pt.*data\.rewards.*1 rows"):
        ReplayBuffer.load(tmp_path / "nan.pt")


def test_bad_arguments_name_the_argument():
    buf = ReplayBuffer(4, 2, 1, check_finite=True)
    obs, act, rew, nxt, term = _batch(0, 3)
    with pytest.raises(ValueError, match="action"):
        buf.add(obs, act[:2], rew, nxt, term)
    with pytest.raises(TypeError, match="terminated"):
        buf.add(obs, act, rew, nxt, term.float())
    with pytest.raises(TypeError, match="reward"):
        buf.add(obs, act, rew.long(), nxt, term)
    with pytest.raises(ValueError, match="obs"):
        buf.add(obs.to("meta"), act, rew, nxt, term)
    with pytest.raises(ValueError, match="next_obs"):
        buf.add(obs, act, rew, nxt * float("nan"), term)
    with pytest.raises(ValueError, match="state"):
        buf.add(obs, act, rew, nxt, term, state=obs, next_state=obs)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(3)
    buf.add(obs, act, rew, nxt, term)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(0)
    with pytest.raises(TypeError, match="generator"):
        buf.sample(2, generator=0)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, 2, 1)
    with pytest.raises(ValueError, match="act_dim"):
        ReplayBuffer(3, 2, 0)


def test_state_dict_restores_the_exact_ring():
    buf = ReplayBuffer(4, 2, 1)
    buf.add(*_batch(0, 6))
    other = ReplayBuffer(4, 2, 1)
    other.load_state_dict(buf.state_dict())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(buf.sample(16, g1)["rewards"], other.sample(16, g2)["rewards"])
    other.add(*_batch(6, 1))
    assert other.data()["rewards"].tolist() == [3.0, 4.0, 5.0, 6.0]
    state = buf.state_dict()
    state["storage"]["obs"] = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"storage.*obs"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="size"):
        other.load_state_dict({**buf.state_dict(), "size": 9})


def test_fields_stay_aligned_in_samples_across_the_wrap_and_after_load_state_dict():
    buf = ReplayBuffer(7, 2, 1, state_dim=3)
    for start, n in ((0, 5), (5, 4), (9, 2)):  # the second add wraps
        obs, act, rew, nxt, term = _batch(start, n)
        ids = rew[:, None]
        buf.add(obs, act, rew, nxt, term, state=ids.expand(n, 3) - 1, next_state=ids.expand(n, 3))
    assert buf.data()["rewards"].tolist() == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    other = ReplayBuffer(7, 2, 1, state_dim=3)
    other.load_state_dict(buf.state_dict())  # written into the existing storage
    for b in (buf, other):
        s = b.sample(64, torch.Generator().manual_seed(1))
        r = s["rewards"]
        assert r.min() >= 4 and len(set(r.tolist())) > 3
        assert torch.equal(s["obs"], r[:, None].expand(64, 2))
        assert torch.equal(s["actions"], r[:, None]) and torch.equal(s["next_obs"], s["obs"] + 0.5)
        assert torch.equal(s["terminated"], r % 2 == 0)
        assert torch.equal(s["states"], r[:, None].expand(64, 3) - 1)
        assert torch.equal(s["next_states"], r[:, None].expand(64, 3))


def test_unchecked_add_writes_what_add_writes():
    a, b = ReplayBuffer(5, 2, 1), ReplayBuffer(5, 2, 1)
    for start, n in ((0, 3), (3, 4), (7, 9)):  # plain, wrapping, longer than the ring
        a.add(*_batch(start, n))
        b.add(*_batch(start, n), check=False)
    for k, v in a.state_dict()["storage"].items():
        assert torch.equal(v, b.state_dict()["storage"][k])
    assert (a.state_dict()["ptr"], len(a)) == (b.state_dict()["ptr"], len(b))
