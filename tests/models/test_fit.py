"""fit/evaluate: splitting, early stopping, metrics, learning acceptance and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from diffctl.data import Trajectory
from diffctl.models import (
    EnsembleDynamics,
    FitConfig,
    LinearModel,
    MLPDynamics,
    evaluate,
    fit,
    split_episodes,
    train_val_split,
    transitions_from,
)

QUIET = {"progress": False}


def as_dict(traj: Trajectory) -> dict:
    return {
        "states": traj.states,
        "next_states": traj.next_states,
        "actions": traj.actions,
        "terminated": traj.terminated,
        "truncated": traj.truncated,
    }


# ---------------------------------------------------------------- learning acceptance
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "ensemble"])
def test_fits_pendulum_open_loop_far_below_linear_baseline(pendulum_logs, kind):
    torch.manual_seed(0)
    cfg = FitConfig(epochs=15, batch_size=256, lr=3e-3, eval_horizon=50, **QUIET)
    # baseline: the best affine model (exact least squares) on the same split and windows;
    # measured 50-step normalised RMSE 0.95 (a zero-change model x_{t+k} = x_t: about 0.98)
    baseline = fit(LinearModel(2, 1), pendulum_logs, cfg).metrics["k_step_nrmse"]
    assert baseline > 0.8
    if kind == "mlp":
        model = MLPDynamics(2, 1, hidden=(64, 64), angle_dims=(0,))
    else:
        model = EnsembleDynamics(2, 1, num_members=5, hidden=(64, 64), angle_dims=(0,))
    result = fit(model, pendulum_logs, cfg)
    m = result.metrics
    assert m["train_transitions"] == 16_000 and m["k_step_horizon"] == 50
    # measured 0.186 (mlp) and 0.183 (ensemble) here, 0.07 after 30 epochs; require < 0.3x
    assert m["k_step_nrmse"] < 0.3 * baseline, (m, baseline)
    assert m["one_step_nmse"] < 1e-3
    if kind == "ensemble":
        x = pendulum_logs.states.reshape(-1, 2)[:2000]
        u = pendulum_logs.actions.reshape(-1, 1)[:2000]
        g = torch.Generator().manual_seed(1)
        # far states: angular speeds of 15-25 rad/s, never seen (the pendulum clips at 8)
        far = torch.stack(
            [6 * torch.rand(2000, generator=g) - 3, 15 + 10 * torch.rand(2000, generator=g)], -1
        )
        s_train = model.spread(x, u).norm(dim=-1).mean()
        s_far = model.spread(far, u).norm(dim=-1).mean()
        assert s_far > 5 * s_train


# ---------------------------------------------------------------- mechanics
def test_history_early_stopping_restores_best_epoch(pendulum_logs):
    torch.manual_seed(0)
    model = MLPDynamics(2, 1, hidden=(16,))
    result = fit(model, pendulum_logs[:20], FitConfig(epochs=6, patience=2, lr=0.05, **QUIET))
    h = result.history
    assert set(h[0]) == {"epoch", "train_loss", "val_loss", "wall_time"}
    assert [r["epoch"] for r in h] == list(range(len(h)))
    data = transitions_from(pendulum_logs[:20])
    _, val = split_episodes(data, 0.2, torch.Generator().manual_seed(0))
    # the returned model is the best validation epoch's
    best = min(r["val_loss"] for r in h)
    final_loss = model.loss(val.x, val.u, val.x_next).item()
    assert math.isclose(final_loss, best, rel_tol=1e-4)


def test_split_is_by_whole_episodes_and_windows_stay_inside_them(pendulum_logs):
    traj = pendulum_logs[:30]
    d = as_dict(traj)
    # an episode boundary inside every column at t = 9
    d["truncated"] = d["truncated"].clone()
    d["truncated"][9] = True
    data = transitions_from(d)
    assert data.num_episodes == 200 and data.lengths.tolist() == [10, 20] * 100
    train, val = split_episodes(data, 0.25, torch.Generator().manual_seed(0))
    assert train.num_episodes == 150 and val.num_episodes == 50
    assert len(train) + len(val) == len(data)
    train_rows = {tuple(r) for r in train.x.tolist()}
    assert not train_rows & {tuple(r) for r in val.x.tolist()}
    starts = train.window_starts(15)
    assert len(starts) == 6 * (train.lengths == 20).sum()
    idx = starts[:, None] + torch.arange(15)
    assert (train.episode[idx] == train.episode[starts][:, None]).all()
    inside = idx[:, :-1]
    torch.testing.assert_close(train.x_next[inside], train.x[inside + 1])


def test_broken_continuity_starts_a_new_episode():
    x = torch.arange(10.0).reshape(10, 1, 1).expand(10, 1, 2).clone()
    xn = x + 1
    xn[4] = 100.0  # row 5 does not start where row 4 ended
    data = transitions_from({"states": x, "next_states": xn, "actions": torch.zeros(10, 1, 1)})
    assert data.lengths.tolist() == [5, 5]


def test_multi_step_training_loss_and_float64(pendulum_logs):
    torch.manual_seed(0)
    model = MLPDynamics(2, 1, hidden=(16,)).double()
    result = fit(model, pendulum_logs[:20], FitConfig(epochs=2, train_horizon=5, **QUIET))
    assert len(result.history) == 2 and math.isfinite(result.metrics["k_step_nrmse"])
    assert next(model.parameters()).dtype == torch.float64


def test_evaluate_on_perfect_model_is_zero(pendulum_logs):
    from diffctl.envs import make

    from diffctl.models import GreyBoxModel

    m = evaluate(GreyBoxModel(make("pendulum")), pendulum_logs[:60], eval_horizon=50)
    assert m["one_step_mse"] < 1e-10 and m["k_step_nrmse"] < 1e-4
    assert m["k_step_horizon"] == 50 and m["k_step_windows"] == 11 * 100


# ---------------------------------------------------------------- bad input
def test_missing_keys(pendulum_logs):
    d = as_dict(pendulum_logs)
    del d["next_states"]
    d["obs"] = pendulum_logs.obs
    with pytest.raises(ValueError, match=r"missing key\(s\) \['next_obs'\]"):
        fit(MLPDynamics(3, 1), d, FitConfig(**QUIET))
    with pytest.raises(ValueError, match="missing key"):
        fit(MLPDynamics(2, 1), d, FitConfig(source="states", **QUIET))


def test_dims_not_matching_the_model(pendulum_logs):
    with pytest.raises(ValueError, match=r"state dimension 2 does not match .* state_dim=3"):
        fit(MLPDynamics(3, 1), pendulum_logs, FitConfig(**QUIET))
    with pytest.raises(ValueError, match=r"action dimension 1 does not match .* act_dim=2"):
        fit(LinearModel(2, 2), pendulum_logs, FitConfig(**QUIET))


def test_nan_rows_are_counted_and_located(pendulum_logs):
    d = as_dict(pendulum_logs[:20])
    d["states"] = d["states"].clone()
    d["states"][5, 2, 0] = float("nan")
    d["states"][7, 3, 1] = float("inf")
    with pytest.raises(
        ValueError,
        match=r"'states'\]: 2 of 2000 rows .* \(t=5, env=2\), "
        r"\(t=7, env=3\)",
    ):
        fit(MLPDynamics(2, 1), d, FitConfig(**QUIET))


def test_too_little_data_for_validation_split(pendulum_logs):
    one = pendulum_logs[:50]
    d = {k: v[:, :1] for k, v in as_dict(one).items()}
    with pytest.raises(ValueError, match="too little data for a validation split"):
        fit(MLPDynamics(2, 1), d, FitConfig(**QUIET))
    fit(LinearModel(2, 1), d, FitConfig(val_fraction=0.0, eval_horizon=10, **QUIET))


def test_other_bad_input(pendulum_logs, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        fit(MLPDynamics(2, 1), tmp_path / "nope.npz", FitConfig(**QUIET))
    with pytest.raises(TypeError, match="dataset"):
        fit(MLPDynamics(2, 1), [1, 2, 3], FitConfig(**QUIET))
    d = as_dict(pendulum_logs[:5])
    d["actions"] = torch.zeros(5, 100, dtype=torch.int64)
    with pytest.raises(TypeError, match="continuous"):
        fit(MLPDynamics(2, 1), d, FitConfig(**QUIET))
    with pytest.raises(ValueError, match="train_horizon"):
        fit(
            EnsembleDynamics(2, 1, hidden=(4,)),
            pendulum_logs[:5],
            FitConfig(train_horizon=3, **QUIET),
        )
    # two episodes, 30 and 5 steps; a seed whose split holds out the short one
    two = {k: v[:, :1] for k, v in as_dict(pendulum_logs[:35]).items()}
    two["truncated"] = two["truncated"].clone()
    two["truncated"][29] = True
    seed = next(
        s
        for s in range(20)
        if train_val_split(transitions_from(two), FitConfig(val_fraction=0.5, seed=s))[
            1
        ].lengths.tolist()
        == [5]
    )
    with pytest.raises(ValueError, match="no validation episode has 10"):
        fit(
            MLPDynamics(2, 1),
            two,
            FitConfig(train_horizon=10, val_fraction=0.5, seed=seed, **QUIET),
        )
    with pytest.raises(ValueError, match="no training episode has 50"):
        fit(MLPDynamics(2, 1), pendulum_logs[:5], FitConfig(train_horizon=50, **QUIET))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("lr", 0.0),
        ("val_fraction", 1.0),
        ("patience", -1),
        ("train_horizon", 0),
        ("source", "pixels"),
        ("max_grad_norm", 0.0),
        ("eval_horizon", 0),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        FitConfig(**{field: value})
