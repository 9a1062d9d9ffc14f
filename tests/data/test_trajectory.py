"""Trajectory container: validation, slicing, flattening, concatenation, devices."""

from __future__ import annotations

import pytest
import torch

from diffctl.data import Trajectory


def make_traj(T=4, B=3, obs_dim=2, act_dim=1, discrete=False, states=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    actions = (
        torch.randint(0, 2, (T, B), generator=g)
        if discrete
        else torch.randn(T, B, act_dim, generator=g)
    )
    return Trajectory(
        obs=torch.randn(T, B, obs_dim, generator=g),
        actions=actions,
        rewards=torch.randn(T, B, generator=g),
        next_obs=torch.randn(T, B, obs_dim, generator=g),
        terminated=torch.rand(T, B, generator=g) < 0.3,
        truncated=torch.zeros(T, B, dtype=torch.bool),
        states=torch.randn(T, B, 5, generator=g) if states else None,
        next_states=torch.randn(T, B, 5, generator=g) if states else None,
        extras={"logp": torch.randn(T, B, generator=g)},
    )


def test_properties_and_flatten():
    tr = make_traj()
    assert (tr.num_steps, tr.batch_size, len(tr)) == (4, 3, 4)
    assert not tr.discrete and make_traj(discrete=True).discrete
    flat = tr.flatten()
    assert set(flat) == {
        "obs",
        "actions",
        "rewards",
        "next_obs",
        "terminated",
        "truncated",
        "states",
        "next_states",
        "logp",
    }
    assert flat["obs"].shape == (12, 2) and flat["rewards"].shape == (12,)
    # row t * B + b is step t of env b
    assert torch.equal(flat["obs"][2 * 3 + 1], tr.obs[2, 1])
    assert torch.equal(flat["logp"][5], tr.extras["logp"][1, 2])
    assert make_traj(discrete=True).flatten()["actions"].shape == (12,)


def test_slicing_time_and_envs():
    tr = make_traj()
    part = tr[1:3]
    assert part.num_steps == 2 and torch.equal(part.rewards, tr.rewards[1:3])
    assert torch.equal(part.extras["logp"], tr.extras["logp"][1:3])
    sub = tr[:, [0, 2]]
    assert sub.batch_size == 2 and torch.equal(sub.obs, tr.obs[:, [0, 2]])
    mask = torch.tensor([False, True, False])
    assert torch.equal(tr[:, mask].states, tr.states[:, 1:2])
    assert torch.equal(tr[:, -1].actions, tr.actions[:, 2:])
    with pytest.raises(TypeError, match="key"):
        tr[0]
    with pytest.raises(ValueError, match="key"):
        tr[10:]


def test_cat_time_and_envs():
    a, b = make_traj(seed=1), make_traj(seed=2)
    t = Trajectory.cat([a, b], dim=0)
    assert t.num_steps == 8 and torch.equal(t.rewards[4:], b.rewards)
    e = Trajectory.cat([a, b], dim=1)
    assert e.batch_size == 6 and torch.equal(e.states[:, 3:], b.states)
    assert torch.equal(e.extras["logp"][:, :3], a.extras["logp"])
    with pytest.raises(ValueError, match="states"):
        Trajectory.cat([a, make_traj(states=False)])
    with pytest.raises(ValueError, match="obs"):
        Trajectory.cat([a, make_traj(obs_dim=4)], dim=0)
    with pytest.raises(ValueError, match="dim"):
        Trajectory.cat([a, b], dim=2)
    with pytest.raises(ValueError, match="trajectories"):
        Trajectory.cat([])
    with pytest.raises(TypeError, match=r"trajectories\[1\]"):
        Trajectory.cat([a, "b"])


def test_to_detach_and_replace():
    tr = make_traj()
    d = tr.to(dtype=torch.float64)
    assert d.obs.dtype == torch.float64 and d.terminated.dtype == torch.bool
    assert d.to("meta").obs.device.type == "meta"
    r = tr.rewards.clone().requires_grad_()
    assert not tr.replace(rewards=r).detach().rewards.requires_grad
    with pytest.raises(ValueError, match="rewards"):
        tr.replace(rewards=torch.zeros(4, 2))


def test_episode_returns():
    r = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    term = torch.tensor([[False, False], [True, False], [False, False], [False, True]])
    trunc = torch.tensor([[False, False], [False, False], [False, True], [False, False]])
    tr = Trajectory(
        obs=torch.zeros(4, 2, 1),
        actions=torch.zeros(4, 2, 1),
        rewards=r,
        next_obs=torch.zeros(4, 2, 1),
        terminated=term,
        truncated=trunc,
    )
    returns, lengths = tr.episode_returns()
    # env 0 ends at t=1 (1+2); env 1 ends at t=2 (10+20+30) then t=3 (40)
    assert returns.tolist() == [3.0, 60.0, 40.0]
    assert lengths.tolist() == [2, 3, 1]


@pytest.mark.parametrize(
    ("field", "value", "err"),
    [
        ("obs", torch.zeros(4, 3), ValueError),
        ("obs", torch.zeros(4, 3, 2, dtype=torch.int64), TypeError),
        ("next_obs", torch.zeros(4, 3, 5), ValueError),
        ("actions", torch.zeros(4, 3), ValueError),
        ("actions", torch.zeros(4, 3, 1, dtype=torch.bool), TypeError),
        ("rewards", torch.zeros(4, 3, 1), ValueError),
        ("rewards", torch.zeros(4, 3, dtype=torch.int64), TypeError),
        ("terminated", torch.zeros(4, 3), TypeError),
        ("truncated", torch.zeros(4, 2, dtype=torch.bool), ValueError),
        ("states", torch.zeros(3, 3, 5), ValueError),
        ("next_states", torch.zeros(4, 3, 6), ValueError),
        ("obs", [[0.0]], TypeError),
        ("obs", torch.zeros(4, 3, 2, device="meta"), ValueError),
        ("extras", {"v": torch.zeros(3, 3)}, ValueError),
        ("extras", {"obs": torch.zeros(4, 3)}, ValueError),
    ],
)
def test_validation_names_the_field(field, value, err):
    tr = make_traj()
    name = "extras" if field == "extras" else field
    with pytest.raises(err, match=name):
        tr.replace(**{field: value})
