"""The benchmarks' multi-seed summary: medians of times with "never reached" ranked last,
means of returns, one row per group."""

from __future__ import annotations

import argparse
import math

import pytest

from diffctl.bench.common import BenchResult, add_seed_arguments, seed_summary

NAN = float("nan")


def _runs(lib: str, times: list[float], returns: list[float]) -> list[dict]:
    return [
        {"library": lib, "seed": s, "t": t, "r": r} for s, (t, r) in enumerate(zip(times, returns))
    ]


def test_seed_summary_medians_times_and_means_returns_per_group():
    runs = _runs("ours", [3.0, 1.0, 2.0], [-100, -200, -300]) + _runs(
        "peer", [4.0, 8.0], [-150, -250]
    )
    ours, peer = seed_summary(runs, ("library",), ("t",), ("r",))
    assert ours == {"library": "ours", "seed": "3 seeds", "t": 2.0, "r": -200.0}
    assert peer == {"library": "peer", "seed": "2 seeds", "t": 6.0, "r": -200.0}


def test_seed_summary_ranks_a_missed_threshold_as_the_slowest():
    # one miss of three: the median is the slower of the two that reached it
    (row,) = seed_summary(_runs("a", [NAN, 1.0, 5.0], [0, 0, 0]), ("library",), ("t",), ())
    assert row["t"] == 5.0
    # two misses of three, or a miss in the middle pair of four: never reached
    (row,) = seed_summary(_runs("a", [NAN, 1.0, NAN], [0, 0, 0]), ("library",), ("t",), ())
    assert math.isnan(row["t"])
    (row,) = seed_summary(_runs("a", [NAN, 1.0, NAN, 2.0], [0] * 4), ("library",), ("t",), ())
    assert math.isnan(row["t"])


def test_peer_available_notes_a_skipped_or_missing_peer():
    result = BenchResult(name="x")
    assert result.peer_available("json")
    assert not result.peer_available("json", skip=True)
    assert not result.peer_available("diffctl_no_such_peer")
    assert result.notes[0] == "peer skipped (--skip-peer)"
    assert result.notes[1].startswith("peer missing: diffctl_no_such_peer not importable")


def test_seed_arguments_refuse_a_non_positive_count(capsys):
    parser = argparse.ArgumentParser()
    add_seed_arguments(parser)
    assert parser.parse_args(["--seed", "4", "--seeds", "2"]) == argparse.Namespace(seed=4, seeds=2)
    with pytest.raises(SystemExit):
        parser.parse_args(["--seeds", "0"])
    assert "--seeds: expected a positive int, got 0" in capsys.readouterr().err


def test_sac_bench_time_to_threshold_slides_by_one_episode():
    from diffctl.bench.sac import first_window_reach as _first_reach

    # (end time, return): the mean of episodes 2-6 is the first of any 5 in a row >= -200;
    # fixed chunks of 5 (episodes 0-4, 5-9) never reach it
    returns = [-900, -600, -300, -150, -150, -150, -200, -900, -900, -100]
    episodes = [(float(t), float(r)) for t, r in enumerate(returns)]
    assert _first_reach(episodes, -200.0) == 6.0
    assert _first_reach(episodes, -200.0, k=1) == 3.0
    assert math.isnan(_first_reach(episodes, -50.0))
    assert math.isnan(_first_reach(episodes[:4], -1000.0))  # fewer than k episodes
