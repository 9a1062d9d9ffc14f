"""``diffctl fit`` and ``diffctl mbrl`` through ``diffctl.cli.main`` with tiny budgets."""

from __future__ import annotations

import json

import pytest
from diffctl.envs import make
from models_helpers import random_logs

from diffctl.cli import main
from diffctl.data import save_dataset
from diffctl.models import GreyBoxModel, MLPDynamics, load_model

TINY = ["--epochs", "2", "--eval-horizon", "10", "--no-progress"]


@pytest.fixture(scope="module")
def logs_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "logs.npz"
    save_dataset(path, random_logs(make("pendulum"), 10, 40, seed=0), {"env": "pendulum"})
    return path


@pytest.mark.parametrize("kind", ["linear", "mlp", "ensemble", "greybox"])
def test_fit_prints_metrics_and_saves_model_plot_history(logs_path, tmp_path, capsys, kind):
    out = tmp_path / f"{kind}.pt"
    extra = ["--hidden", "8"] if kind in ("mlp", "ensemble") else []  # others refuse it
    extra += ["--num-members", "2", "--angle-dims", "0"] if kind == "ensemble" else []
    extra += ["--params", "m", "l"] if kind == "greybox" else []
    rc = main(["fit", "--data", str(logs_path), "--model", kind, "--out", str(out), *TINY, *extra])
    text = capsys.readouterr().out
    assert rc == 0
    assert "k_step_nrmse" in text and "one_step_mse" in text
    model = load_model(out)
    assert model.kind == kind and model.meta["env"] == "pendulum"
    assert model.meta["source"] == "states"
    assert out.with_suffix(".png").stat().st_size > 1000
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["history"] and "k_step_nrmse" in saved["metrics"]
    if kind == "greybox":
        assert isinstance(model, GreyBoxModel) and model.param_names == ["m", "l"]
    if kind == "mlp":
        assert isinstance(model, MLPDynamics) and model.hidden == (8,)


def test_fit_reports_bad_input(logs_path, tmp_path, capsys):
    assert main(["fit", "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "m.pt")]) == 2
    assert "none.npz" in capsys.readouterr().err
    assert main(["fit", "--data", str(logs_path), "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert main(["fit", "--data", str(logs_path), "--out", str(tmp_path / "no" / "m.pt")]) == 2
    assert "out" in capsys.readouterr().err
    assert (
        main(
            [
                "fit",
                "--data",
                str(logs_path),
                "--val-fraction",
                "0.2",
                "--model",
                "linear",
                "--source",
                "obs",
                "--out",
                str(tmp_path / "m.pt"),
                "--no-plot",
            ]
        )
        == 0
    )
    assert load_model(tmp_path / "m.pt").state_dim == 3  # fitted on [cos, sin, thdot]


def test_mbrl_prints_return_per_iteration_and_saves(tmp_path, capsys):
    out = tmp_path / "mb.pt"
    rc = main(
        [
            "mbrl",
            "--env",
            "pendulum",
            "--iterations",
            "2",
            "--episode-steps",
            "8",
            "--num-samples",
            "16",
            "--num-elites",
            "4",
            "--horizon",
            "3",
            "--plan-iterations",
            "1",
            "--hidden",
            "8",
            "--fit.epochs",
            "2",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    lines = [ln.split() for ln in text.splitlines()]
    assert lines[0][:3] == ["iteration", "env_steps", "return"]
    assert [ln[:2] for ln in lines[2:5]] == [["0", "8"], ["1", "16"], ["2", "24"]]
    assert load_model(out).kind == "mlp"
    assert len(json.loads(out.with_suffix(".json").read_text())["history"]) == 3
    assert main(["mbrl", "--iterations", "0"]) == 2
    assert "iterations" in capsys.readouterr().err
