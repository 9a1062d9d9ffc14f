"""``diffctl bench mbrl --env mujoco:HalfCheetah-v5``: the rows and the verdict note, on a tiny
preset (the real one takes an hour; its figures are in the README)."""

from __future__ import annotations

import math

import pytest

from diffctl.bench import mbrl_task
from diffctl.configs.agents import SACConfig
from diffctl.models import FitConfig

pytestmark = pytest.mark.mujoco

TINY = dict(
    model="ensemble", hidden=(8,), num_members=2, planner="icem", horizon=3, num_samples=8,
    num_elites=2, plan_iterations=1, particles=1, compile=False, initial_episodes=1,
    refit="continue",
)  # fmt: skip
TINY_MBPO = dict(
    hidden=(8,), num_members=2, ensemble_elites=2, random_steps=1000, model_train_every=500,
    rollouts_per_step=2, updates_per_step=1, sac=SACConfig(hidden=(8,), batch_size=16),
    fit=FitConfig(epochs=1, val_fraction=0.0, eval_horizon=3, progress=False),
)  # fmt: skip


def test_rows_curve_and_verdict(monkeypatch):
    monkeypatch.setitem(mbrl_task.PRESETS, "mujoco:HalfCheetah-v5", TINY)
    monkeypatch.setitem(mbrl_task.MBPO_PRESETS, "mujoco:HalfCheetah-v5", TINY_MBPO)
    # SAC's runners are `diffctl bench sac`'s (tested there): here a stand-in with its row
    import diffctl.bench.sac as sac

    def fake(env, cfg, seed, marks, n_eval):
        assert marks == [2000, 3000] and cfg.total_steps == 3000
        return {"library": "diffctl", "return_at_2000": 1.0, "return_at_3000": 1e9,
                "train_time_s": 1.0}  # fmt: skip

    monkeypatch.setattr(sac, "run_ours_at", fake)
    args = ["--env", "mujoco:HalfCheetah-v5", "--mbrl-steps", "2000", "--sac-steps", "3000",
            "--skip-peer", "--threads", "1", "--eval-episodes", "1"]  # fmt: skip
    result = mbrl_task.run_task(args)
    mb, po, ours = result.rows
    assert mb["method"].startswith("mbrl") and math.isfinite(mb["return_at_2000"])
    assert po["method"].startswith("mbpo") and math.isfinite(po["return_at_2000"])
    assert mb["solve_ms"] > 0 and ours["return_at_3000"] == 1e9
    misses = [n for n in result.notes if "misses the target (1.5x fewer samples)" in n]
    assert [n.split(" (")[0] for n in misses] == ["mbrl", "mbpo"]
    # MBPO against SAC alone
    result = mbrl_task.run_task([*args, "--skip-pets"])
    assert [r["method"].split(" ")[0] for r in result.rows] == ["mbpo", "sac"]
    assert [n.split(" (")[0] for n in result.notes if "misses" in n] == ["mbpo"]


def test_bad_arguments_name_the_flag():
    with pytest.raises(ValueError, match="--mbrl-steps"):
        mbrl_task.run_task(["--env", "mujoco:HalfCheetah-v5", "--mbrl-steps", "1500"])
    with pytest.raises(SystemExit):
        mbrl_task.run_task(["--env", "mujoco:Hopper-v5"])  # no preset
