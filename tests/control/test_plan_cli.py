"""``diffctl plan``: every planner on a tiny budget, the plot, the learned-model hooks, errors."""

from __future__ import annotations

import sys

import pytest

from diffctl.cli import main

TINY = {
    "mpc": ["--mpc.horizon", "5", "--mpc.max-iter", "3"],
    "cem": [
        "--cem.horizon",
        "5",
        "--cem.num-samples",
        "20",
        "--cem.num-elites",
        "4",
        "--cem.iterations",
        "2",
    ],
    "icem": (
        "--icem.horizon 5 --icem.num-samples 20 --icem.num-elites 4 --icem.iterations 2"
    ).split(),
    "mppi": ["--mppi.horizon", "5", "--mppi.num-samples", "20"],
    "shooting": ["--shooting.horizon", "5", "--shooting.iterations", "3"],
}


@pytest.mark.parametrize("planner", list(TINY))
def test_each_planner_runs(planner, capsys):
    rc = main(
        [
            "plan",
            "--env",
            "pendulum",
            "--planner",
            planner,
            "--episodes",
            "2",
            "--steps",
            "4",
            "--seed",
            "1",
            *TINY[planner],
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "mean return" in out and "solve time per step" in out and "converged" in out
    assert out.count("\n0 ") + out.count("\n1 ") == 2  # one row per episode


def test_plot_is_written(tmp_path, capsys):
    png = tmp_path / "sub" / "plan.png"
    rc = main(
        [
            "plan",
            "--planner",
            "mppi",
            "--episodes",
            "1",
            "--steps",
            "3",
            "--plot",
            str(png),
            *TINY["mppi"],
        ]
    )
    assert rc == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in capsys.readouterr().out


def test_same_seed_same_returns(capsys):
    args = [
        "plan",
        "--planner",
        "cem",
        "--episodes",
        "2",
        "--steps",
        "3",
        "--seed",
        "5",
        *TINY["cem"],
    ]
    main(args)
    first = capsys.readouterr().out.split("mean return")[1].split("|")[0]
    main(args)
    assert capsys.readouterr().out.split("mean return")[1].split("|")[0] == first


def test_learned_model_hook(tmp_path, capsys):
    models = pytest.importorskip("diffctl.models")
    path = tmp_path / "lin.pt"
    models.save_model(path, models.LinearModel(2, 1), {"env": "pendulum", "source": "states"})
    rc = main(
        [
            "plan",
            "--planner",
            "mppi",
            "--episodes",
            "1",
            "--steps",
            "2",
            "--model",
            str(path),
            *TINY["mppi"],
        ]
    )
    assert rc == 0, capsys.readouterr().err
    obs = tmp_path / "obs.pt"
    models.save_model(obs, models.LinearModel(3, 1), {"env": "pendulum", "source": "obs"})
    rc = main(["plan", "--planner", "mppi", "--model", str(obs)])
    assert rc == 1 and "--model" in capsys.readouterr().err  # a file that does not fit: runtime


def test_errors_name_the_flag(tmp_path, monkeypatch, capsys):
    assert main(["plan", "--model", str(tmp_path / "missing.pt")]) == 2
    assert "--model: no such file" in capsys.readouterr().err
    assert main(["plan", "--episodes", "0"]) == 2
    assert "episodes" in capsys.readouterr().err
    assert main(["plan", "--planner", "cem", "--cem.num-elites", "900"]) == 2
    assert "num_elites" in capsys.readouterr().err
    models = pytest.importorskip("diffctl.models")
    dyn = tmp_path / "dyn.pt"  # a dynamics checkpoint is not a reward file
    models.save_model(dyn, models.LinearModel(2, 1), {"env": "pendulum", "source": "states"})
    assert main(["plan", "--reward", str(dyn)]) == 1  # a file of the wrong kind: runtime
    assert "--reward: path:" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "diffctl.models", None)  # learned models unavailable
    assert main(["plan", "--model", str(dyn)]) == 1
    assert "--model: learned models need diffctl.models.load_model" in capsys.readouterr().err


def test_ensemble_plans_over_its_elites():
    from diffctl.envs import make

    from diffctl.cli.plan import PlanCommandConfig, build_planner
    from diffctl.models import EnsembleDynamics

    model = EnsembleDynamics(2, 1, num_members=7, num_elites=5, hidden=(8,))
    planner = build_planner(PlanCommandConfig(planner="cem"), make("pendulum"), dynamics=model)
    # the fast path (one member per block of particles) needs ensemble_size == num_elites
    assert planner.config.ensemble_size == 5 and planner._members_step() is not None
