"""``diffctl bench all`` runs every benchmark and prints every table; a failing benchmark or a
peer that cannot be installed is reported, never skipped silently."""

from __future__ import annotations

import json

import pytest

from diffctl.bench import BENCHES
from diffctl.cli import bench as bench_cli
from diffctl.cli import main

# Every benchmark at the smallest settings that still runs ours and the peer.
TINY = {
    "envs": ["--systems", "cartpole", "--sizes", "64", "--seconds", "0.05"],
    "mpc": ["--batches", "1", "--peer-max-batch", "1", "--repeat", "1",
            "--closed-loop-starts", "2", "--closed-loop-steps", "3"],
    "convex": ["--batch", "2", "--horizon", "5", "--repeat", "1"],
    "ppo": ["--total-steps", "4096", "--eval-episodes", "1", "--seeds", "2"],
    "sac": ["--total-steps", "1050", "--eval-episodes", "1", "--seeds", "2"],
    "dqn": ["--total-steps", "1500", "--eval-episodes", "1", "--seeds", "2"],
    "trpo": ["--total-steps", "2048", "--eval-episodes", "1", "--seeds", "2"],
    "evolution": ["--population", "64", "--per-policy", "2", "--seeds", "1",
                  "--max-generations", "1", "--eval-every", "1", "--eval-episodes", "2"],
    "irl": ["--size", "4", "--num-demos", "10", "--iterations", "3",
            "--venv", "/proc/diffctl-cannot-exist/venv"],
    "mbrl": ["--tasks", "pendulum", "--skip-ppo", "--iterations", "1", "--episode-steps", "20"],
    "mujoco": ["--tasks", "Hopper-v5", "--sizes", "2", "--steps", "2", "--repeat", "1"],
    "humanoid": ["--starts", "1", "--steps", "20"],
}  # fmt: skip


@pytest.mark.slow
def test_bench_all_runs_every_benchmark_with_its_peer(tmp_path, monkeypatch, capsys):
    assert set(TINY) == set(BENCHES) == set(bench_cli.QUICK)
    monkeypatch.setattr(bench_cli, "QUICK", TINY)
    out = tmp_path / "all.json"
    assert main(["bench", "all", "--quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"bench all: {len(BENCHES)} of {len(BENCHES)} ran" in text
    results = json.loads(out.read_text())
    assert list(results) == list(BENCHES)
    rows = {name: r["rows"] for name, r in results.items()}
    runners = {r["runner"] for r in rows["envs"]}
    assert {"gymnasium SyncVectorEnv", "gymnasium numpy vector"} <= runners
    assert rows["mpc"][0]["peer_fwd_s"] > 0 and rows["mpc"][0]["speedup_fwd_bwd"] > 0
    assert rows["convex"][0]["x_faster_fwd_bwd"] > 0
    for name in ("ppo", "sac"):
        assert any("stable-baselines3" in str(r.values()) for r in rows[name]), name
        # two seeds per library, then their summary rows, then the ratios
        assert (
            sum(r.get("seed") == "2 seeds" for r in rows[name])
            == len([r for r in rows[name] if r["library"] == "ratio sb3/ours"]) * 2
        )
    # the IRL peer's venv cannot be made here: said in the notes, our row still there
    assert rows["irl"][0]["impl"] == "diffctl maxent"
    assert any("could not make the imitation venv" in n for n in results["irl"]["notes"])
    assert rows["mbrl"][0]["env_steps"] == 40  # one random and one planned episode of 20


def test_bench_all_reports_a_failing_benchmark_and_goes_on(monkeypatch, capsys):
    import diffctl.bench.convex as convex

    def broken(argv):
        raise RuntimeError("peer exploded")

    monkeypatch.setattr(convex, "run", broken)
    monkeypatch.setattr(bench_cli, "BENCHES", {"convex": "convex"})
    assert main(["bench", "all"]) == 1
    text = capsys.readouterr().out
    assert "FAILED: bench convex: RuntimeError: peer exploded" in text
    assert "bench all: 0 of 1 ran; failed: convex" in text


def test_bench_rejects_unknown_names_and_arguments(capsys):
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    assert main(["bench", "all", "--fast"]) == 2
    assert "unknown arguments ['--fast']" in capsys.readouterr().err
