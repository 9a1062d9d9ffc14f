"""``diffctl bench sac --env mujoco:HalfCheetah-v5``: SAC's return at ``--eval-at`` env steps,
ours vs SB3; the pendulum bench keeps its options."""

from __future__ import annotations

import pytest

from diffctl.bench.sac import run

ENV = "mujoco:HalfCheetah-v5"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--eval-at", "1000"], "--eval-at: only with a MuJoCo --env"),
        (["--env", "mujoco:NoSuchTask-v5"], "--env: expected pendulum or one of"),
        (["--env", ENV, "--algos", "sac,td3"], "--algos: only sac has a preset"),
        (["--env", ENV, "--total-steps", "3000", "--eval-at", "1500"], "multiples of 1000"),
        (["--env", ENV, "--total-steps", "3000", "--eval-at", "4000"], "multiples of 1000"),
    ],
)
def test_bench_sac_refuses_bad_env_options(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run(argv)


@pytest.mark.slow
def test_bench_sac_task_reports_returns_at_each_eval_step() -> None:
    pytest.importorskip("mujoco")
    pytest.importorskip("gymnasium")
    # 2000 random warm-up steps (the preset starts learning at 10000): the plumbing, not learning
    result = run(
        ["--env", ENV, "--total-steps", "2000", "--eval-at", "1000"]
        + ["--eval-episodes", "1", "--seeds", "1"]
    )
    rows = {r["library"]: r for r in result.rows}
    libraries = ["diffctl", "stable-baselines3", "ratio sb3/ours"]
    if "stable-baselines3" not in rows:  # no peer here: ours alone
        assert any(n.startswith("peer missing") for n in result.notes)
        libraries = libraries[:1]
    assert list(rows) == libraries
    for lib in libraries[:2]:
        row = rows[lib]
        assert {"return_at_1000", "return_at_2000"} <= set(row)
        assert row["train_time_s"] > 0 and row["steps_per_s"] > 0
        assert row["eval_time_s"] > 0
        # an untrained actor's deterministic action is near zero: return near 0, far above the
        # uniform random policy's about -300 per episode
        assert abs(row["return_at_2000"]) < 50
    assert "HalfCheetah-v5" in result.notes[0]
