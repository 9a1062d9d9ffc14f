"""IRL on finite MDPs: MaxEnt (linear and deep), projection and max-margin; reward files."""

from __future__ import annotations

import pytest
import torch

from diffctl.irl import (
    MaxEntConfig,
    MaxMarginConfig,
    ProjectionConfig,
    RewardConfig,
    RewardModel,
    expected_value_difference,
    load_reward,
    max_margin_irl,
    max_margin_loss,
    maxent_irl,
    projection_irl,
)
from diffctl.mdp import gridworld, policy_evaluation, sample_trajectories, value_iteration

D = torch.float64


@pytest.fixture(scope="module")
def task():
    reward_map = torch.zeros(8, 8, dtype=D)
    reward_map[7, 7] = 1.0
    reward_map[2, 5] = reward_map[5, 2] = reward_map[4, 4] = -1.0
    reward_map[0, 7] = 0.5
    mdp = gridworld(8, slip=0.2, gamma=0.9, reward_map=reward_map)
    expert = value_iteration(mdp)
    g = torch.Generator().manual_seed(0)
    demos = sample_trajectories(mdp, expert.policy, 30, 200, generator=g)
    uniform = torch.full((64, 4), 0.25, dtype=D)
    evd_random = ((expert.V - policy_evaluation(mdp, uniform).V) * mdp.initial).sum()
    return mdp, demos, evd_random


@pytest.mark.slow
def test_maxent_gridworld_evd(task) -> None:
    mdp, demos, evd_random = task
    res = maxent_irl(mdp, demos, MaxEntConfig(iterations=120))
    evd = expected_value_difference(mdp, res.rewards)
    assert evd <= 0.05 * evd_random
    assert res.history[-1]["feature_gap"] < res.history[0]["feature_gap"]
    assert torch.allclose(res.policy.sum(-1), torch.ones(30, 64, dtype=D))


@pytest.mark.slow
def test_deep_maxent_and_stationary(task) -> None:
    mdp, demos, evd_random = task
    deep = maxent_irl(mdp, demos, MaxEntConfig(iterations=80, reward="mlp", lr=1e-2))
    assert expected_value_difference(mdp, deep.rewards) <= 0.05 * evd_random
    mce = maxent_irl(mdp, demos, MaxEntConfig(iterations=60, stationary=True))
    assert expected_value_difference(mdp, mce.rewards) <= 0.05 * evd_random


@pytest.mark.slow
def test_projection_and_max_margin(task) -> None:
    mdp, demos, evd_random = task
    proj = projection_irl(mdp, demos, ProjectionConfig(iterations=25))
    assert proj.history[-1]["t"] < proj.history[0]["t"]
    best = ((value_iteration(mdp).V - policy_evaluation(mdp, proj.policy).V) * mdp.initial).sum()
    assert best <= 0.05 * evd_random
    mm = max_margin_irl(mdp, demos, MaxMarginConfig(iterations=40))
    assert expected_value_difference(mdp, mm.rewards) <= 0.05 * evd_random


def test_max_margin_loss_matches_notes_formula() -> None:
    model = RewardModel(RewardConfig(state_dim=2, kind="linear")).double()
    with torch.no_grad():
        model.net.weight.copy_(torch.tensor([[1.0, -2.0]], dtype=D))
    expert = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=D)  # R = 2
    cand = torch.tensor([[[0.0, 0.0], [3.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]], dtype=D)  # R = 0, 1
    loss = max_margin_loss(model, (expert, None, None), (cand, None, None))
    assert loss.item() == pytest.approx(5.0 + 0.0)  # ||w||^2 + ReLU(1 - 2)
    loss = max_margin_loss(model, (expert, None, None), (cand, None, None), margin=2.0, l2=0.5)
    assert loss.item() == pytest.approx(2.5 + 1.0)


def test_reward_model_save_load(tmp_path) -> None:
    model = RewardModel(
        RewardConfig(state_dim=3, act_dim=1, use_action=True, use_next_state=True, hidden=(8,))
    )
    x, u = torch.randn(5, 3), torch.randn(5, 1)
    path = tmp_path / "r.pt"
    model.save(path, meta={"method": "test"})
    loaded = load_reward(path)
    assert torch.allclose(loaded(x, u, x), model(x, u, x))
    assert loaded.meta == {"method": "test"}
    with pytest.raises(FileNotFoundError, match="path"):
        load_reward(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="path"):
        load_reward(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="x: expected shape"):
        model(torch.randn(5, 4), u, x)
    with pytest.raises(ValueError, match="u: this reward depends on the action"):
        model(x, None, x)
    with pytest.raises(ValueError, match="kind"):
        RewardConfig(state_dim=3, kind="cubic")
    # as a planner cost: -r(x, u, f(x, u))
    A = torch.randn(3, 3)
    f = lambda x, u: x @ A.T + u  # noqa: E731
    cost = model.stage_cost(f)
    assert torch.allclose(cost(x, u), -model(x, u, f(x, u)))
    with pytest.raises(ValueError, match="dynamics"):
        model.stage_cost()


def test_bad_demos(task) -> None:
    mdp, demos, _ = task
    with pytest.raises(ValueError, match="demos: empty"):
        maxent_irl(mdp, torch.zeros(0, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="demos: state indices"):
        maxent_irl(mdp, torch.full((5, 2), 64, dtype=torch.int64))
    with pytest.raises(TypeError, match="demos"):
        projection_irl(mdp, [1, 2, 3])
    with pytest.raises(ValueError, match="iterations"):
        MaxEntConfig(iterations=0)
