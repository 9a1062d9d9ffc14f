"""diffctl compare: serial == Ray, Ctrl-C keeps finished rows, CLI outputs, Ray missing."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import pytest

from diffctl.cli import main
from diffctl.compare import CompareConfig, compare, methods, steps_to_reach

# Cheap real rows on the linear system: a linear model from random logs planned with MPC, and
# a tiny PPO run (budget 0.01: two logged episodes of 200 steps, 2,000 training steps).
FAST = dict(
    env=("linear",), methods=("mpc-linear", "ppo"), budget=0.01, episodes=2, threads=1, jobs=1
)


def _returns(result):
    return [(r.env, r.method, r.seed, r.returns, r.env_steps) for r in result.rows]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ray_and_process_pool_paths_give_the_serial_table(tmp_path):
    pytest.importorskip("ray")
    cfg = CompareConfig(**FAST, seeds=(0, 1), out=str(tmp_path / "serial"))
    serial = compare(cfg, progress=False)
    pooled = compare(replace(cfg, jobs=2, out=str(tmp_path / "pool")), progress=False)
    assert _returns(serial) == _returns(pooled)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = compare(
            CompareConfig(**FAST, seeds=(0, 1), out=str(tmp_path / "ray"), ray="local"),
            progress=False,
        )
    finally:
        ray.shutdown()
    assert serial.completed and on_ray.completed
    assert len(serial.rows) == 4
    assert _returns(serial) == _returns(on_ray)
    timing = ("wall_s", "solve_ms/step")
    strip = [{k: v for k, v in r.items() if k not in timing} for r in serial.table]
    assert strip == [{k: v for k, v in r.items() if k not in timing} for r in on_ray.table]


@pytest.mark.slow
@pytest.mark.mujoco
@pytest.mark.timeout(900)
def test_ray_sweep_runs_mujoco_tasks(tmp_path):
    """A MuJoCo task crosses to Ray workers by name and gives the serial row (SAC, 1,000
    steps: the budget's floor)."""
    pytest.importorskip("ray")
    pytest.importorskip("mujoco")
    cfg = CompareConfig(
        env=("mujoco:InvertedPendulum-v5",), methods=("sac",), budget=0.05, episodes=2,
        threads=1, jobs=1, out=str(tmp_path / "serial"),
    )  # fmt: skip
    serial = compare(cfg, progress=False)
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = compare(replace(cfg, ray="local", out=str(tmp_path / "ray")), progress=False)
    finally:
        ray.shutdown()
    assert serial.completed and on_ray.completed
    assert _returns(serial) == _returns(on_ray) and serial.rows[0].env_steps == 1000


@pytest.mark.mujoco
def test_pets_row_on_a_mujoco_task(tmp_path, monkeypatch):
    """The robot-scale PETS row, on a tiny preset (the real one is an hour per row)."""
    pytest.importorskip("mujoco")
    import diffctl.configs.models as config_models

    tiny = dict(model="ensemble", hidden=(8,), num_members=2, planner="icem", horizon=3,
                num_samples=8, num_elites=2, plan_iterations=1, refit="continue",
                episode_steps=30)  # fmt: skip
    monkeypatch.setattr(config_models, "PETS_PRESET", tiny)
    assert "pets" in methods.METHODS and "pets" not in methods.DEFAULT_METHODS
    cfg = CompareConfig(env=("mujoco:InvertedPendulum-v5",), methods=("pets",), budget=0.1,
                        episodes=2, threads=1, jobs=1, out=str(tmp_path))  # fmt: skip
    (row,) = compare(cfg, progress=False).rows
    assert len(row.returns) == 2 and len(row.curve) == 3  # round(19 * 0.1) = 2 planned
    assert row.env_steps == row.curve[-1]["env_steps"] and row.solve_ms_per_step > 0
    assert row.notes.startswith("PETS (icem)") and not row.error


@pytest.mark.mujoco
def test_mbpo_row_on_a_mujoco_task(tmp_path, monkeypatch):
    """The robot-scale MBPO row, on tiny settings (the real one is an hour per row)."""
    pytest.importorskip("mujoco")
    from diffctl.configs.agents import SACConfig
    from diffctl.configs.models import MBPO_PRESETS, FitConfig

    tiny = dict(hidden=(8,), num_members=2, ensemble_elites=2, model_train_every=100,
                rollouts_per_step=2, model_buffer_steps=100, updates_per_step=1,
                sac=SACConfig(hidden=(8,), batch_size=16), episode_steps=100,
                fit=FitConfig(epochs=1, val_fraction=0.0, progress=False))  # fmt: skip
    monkeypatch.setitem(MBPO_PRESETS, "mujoco:InvertedPendulum-v5", tiny)
    assert "mbpo" in methods.METHODS and "mbpo" not in methods.DEFAULT_METHODS
    cfg = CompareConfig(env=("mujoco:InvertedPendulum-v5",), methods=("mbpo",), budget=0.05,
                        episodes=2, threads=1, jobs=1, out=str(tmp_path))  # fmt: skip
    (row,) = compare(cfg, progress=False).rows
    assert not row.error and len(row.returns) == 2 and row.env_steps == 1000
    assert row.curve[-1]["env_steps"] <= 1000 and len(row.curve) >= 10  # 100-step episodes
    assert row.notes.startswith("MBPO: SAC on 2 model rollouts")


def test_interrupt_keeps_finished_rows_and_no_partial_files(tmp_path, monkeypatch):
    calls = []

    def fake_ok(spec):
        calls.append(spec.method)
        return {"returns": [-1.0, -3.0], "env_steps": 7}

    def fake_interrupt(spec):
        raise KeyboardInterrupt

    monkeypatch.setitem(methods.METHODS, "mpc", fake_ok)
    monkeypatch.setitem(methods.METHODS, "cem", fake_interrupt)
    out = tmp_path / "run"
    code = main(["compare", "--env", "pendulum", "--methods", "mpc", "cem", "--jobs", "1",
                 "--out", str(out)])  # fmt: skip
    assert code == 130 and calls == ["mpc"]
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["completed"] is False
    assert [r["method"] for r in data["rows"]] == ["mpc"]
    assert data["rows"][0]["mean_return"] == -2.0 and data["rows"][0]["std_return"] == 1.0
    assert (out / "results.csv").read_text().splitlines()[1].startswith("pendulum,mpc,")
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


def test_a_failing_row_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    def fake_ok(spec):
        return {"returns": [-1.0, -3.0], "env_steps": 7}

    def fake_fail(spec):
        raise RuntimeError("planner diverged\n  at step 3")

    monkeypatch.setitem(methods.METHODS, "mpc", fake_fail)
    monkeypatch.setitem(methods.METHODS, "cem", fake_ok)
    out = tmp_path / "run"
    code = main(["compare", "--env", "pendulum", "--methods", "mpc", "cem", "--seeds", "0", "1",
                 "--jobs", "1", "--out", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    err = captured.err.strip().splitlines()[-1]
    assert err == (
        "diffctl compare: error: 2 of 4 runs failed (first: pendulum/mpc seed 0: "
        "RuntimeError: planner diverged at step 3)"
    )
    table = {ln.split()[1]: ln for ln in captured.out.splitlines()[2:4]}
    assert "failed" in table["mpc"] and "-2.0" in table["cem"]
    data = json.loads((out / "results.json").read_text())
    assert [r["error"] for r in data["rows"]][:2] == [
        "RuntimeError: planner diverged at step 3",
        "RuntimeError: planner diverged at step 3",
    ]
    assert data["meta"]["completed"] is True and (out / "return_vs_steps.png").exists()


@pytest.mark.slow
def test_cli_prints_table_and_writes_results_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["compare", "--env", "linear", "--methods", "mpc-linear", "--budget", "0.01",
                 "--episodes", "2", "--threads", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "mpc-linear" in text and "±" in text
    for name in ("results.json", "results.csv", "return_vs_steps.png", "return_vs_wall.png"):
        assert (out / name).stat().st_size > 0
    row = json.loads((out / "results.json").read_text())["rows"][0]
    # LQR-like control of the double integrator from a fitted linear model beats doing nothing
    assert row["env_steps"] == 400 and row["mean_return"] > -50


def test_ray_flag_without_ray_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["compare", "--ray", "--methods", "mpc"]) == 2
    assert "pip install 'diffctl[ray]'" in capsys.readouterr().err


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="methods: unknown"):
        CompareConfig(methods=("nope",))
    with pytest.raises(ValueError, match="budget"):
        CompareConfig(budget=0)


@pytest.mark.slow
def test_headline_model_based_mpc_reaches_minus_200_with_20x_fewer_steps_than_ppo(tmp_path):
    """The README's claim from the default run, on its two rows (defaults otherwise): MPC on
    the ensemble fitted to 2,000 random steps reaches -200 on pendulum; PPO needs >= 20x the
    env steps to get there."""
    cfg = CompareConfig(methods=("mpc-ensemble", "ppo"), jobs=1, out=str(tmp_path / "run"))
    result = compare(cfg, progress=False)
    mb, ppo = result.rows
    assert mb.method == "mpc-ensemble" and mb.mean_return >= -200.0
    reached = steps_to_reach(ppo, -200.0)
    assert reached is not None and reached >= 20 * mb.env_steps
    assert any("mpc-ensemble reached" in line and "x more" in line for line in result.summary)


def test_the_seeds_other_model_free_methods_are_rows_run_when_named(tmp_path):
    """TRPO, NPG, DQN, ES and ARS are compare rows (tiny budgets here), left out of the
    default table; DQN on a continuous env is an error row naming the env."""
    assert set(methods.EXTRA_METHODS) <= set(methods.METHODS)
    assert not set(methods.EXTRA_METHODS) & set(methods.DEFAULT_METHODS)
    cfg = CompareConfig(env=("cartpole",), methods=("npg", "dqn", "es"), budget=0.02,
                        episodes=2, threads=1, jobs=1, out=str(tmp_path / "a"))  # fmt: skip
    rows = compare(cfg, progress=False).rows
    assert [r.method for r in rows] == ["npg", "dqn", "es"]
    assert all(not r.error and len(r.returns) == 2 and r.env_steps >= 1000 for r in rows)
    cfg = replace(cfg, env=("pendulum",), methods=("dqn", "ars"), out=str(tmp_path / "b"))
    dqn, ars = compare(cfg, progress=False).rows
    assert "pendulum" in dqn.error and not ars.error and len(ars.returns) == 2
