"""The IRL benchmark's peer set-up reports, rather than hides, a venv it cannot make."""

from __future__ import annotations

from diffctl.bench.irl import IRLBenchConfig, ensure_peer_venv


def test_unmakeable_venv_is_reported() -> None:
    py, note = ensure_peer_venv("/proc/diffctl-cannot-exist/venv")
    assert py is None
    assert "could not make the imitation venv" in note


def test_bench_config_validates() -> None:
    import pytest

    with pytest.raises(ValueError, match="size"):
        IRLBenchConfig(size=0)
