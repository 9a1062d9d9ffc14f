"""``diffctl bench evolution`` at its smallest: the throughput rows and the learning rows."""

from __future__ import annotations

import pytest

from diffctl.bench.evolution import run

TINY = ["--population", "64", "--per-policy", "2", "--seeds", "1", "--max-generations", "1",
        "--eval-every", "1", "--eval-episodes", "2"]  # fmt: skip


def test_bench_evolution_runs_ours() -> None:
    result = run([*TINY, "--skip-peer"])
    rows = result.rows
    batched = [r for r in rows if r.get("path", "").endswith("one batch")]
    assert [r["system"] for r in batched] == ["cartpole", "pendulum"]
    assert all(r["policies"] == 64 and r["steps_per_s"] > 0 for r in batched)
    assert batched[1]["env_steps"] == 64 * 200  # pendulum: every episode to the time limit
    single = [r for r in rows if "one policy at a time" in r.get("path", "")]
    assert len(single) == 2 and all(r["policies"] == 2 and r["ratio"] > 0 for r in single)
    learned = [r for r in rows if "library" in r]
    assert [r["library"] for r in learned] == ["diffctl es", "diffctl ars"]
    assert "peer skipped (--skip-peer)" in result.notes


def test_bench_evolution_refuses_an_odd_population() -> None:
    with pytest.raises(ValueError, match="--population"):
        run(["--population", "3"])


@pytest.mark.slow
def test_bench_evolution_runs_the_peers() -> None:
    pytest.importorskip("sb3_contrib")
    pytest.importorskip("gymnasium")
    result = run(TINY)
    paths = [r.get("path", "") for r in result.rows]
    assert sum("gymnasium env" in p for p in paths) == 2
    libraries = [r.get("library") for r in result.rows if "library" in r]
    assert libraries.count("sb3-contrib ars") == 2
    assert libraries.count("ratio peer/ours") == 2
