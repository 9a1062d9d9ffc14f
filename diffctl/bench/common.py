"""Shared helpers of the benchmarks: timing, thread settings, ratio tables.

Torch is imported by the functions that use it, not on import: the commands print their
tables with ``format_table`` and ``diffctl <command> --help`` stays free of torch."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "BenchResult",
    "timeit",
    "set_threads",
    "machine_info",
    "format_table",
    "write_json",
    "seed_summary",
    "add_seed_arguments",
]


@dataclass
class BenchResult:
    """Rows of a benchmark (dicts with the same keys) plus notes (peer missing, ...)."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=lambda: machine_info())

    def peer_available(self, module: str, *, skip: bool = False) -> bool:
        """Whether the peer's ``module`` imports (and is not skipped with ``--skip-peer``);
        if not, a note says why."""
        if skip:
            self.notes.append("peer skipped (--skip-peer)")
            return False
        try:
            importlib.import_module(module)
        except ImportError as e:
            self.notes.append(f"peer missing: {module} not importable ({e})")
            return False
        return True

    def table(self) -> str:
        text = format_table(self.rows)
        if self.notes:
            text += "\n" + "\n".join(f"note: {n}" for n in self.notes)
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_threads(n: int | None) -> int:
    """Set torch's intra-op thread count explicitly (benchmarks always do); returns it."""
    import torch

    n = n or min(os.cpu_count() or 1, 2)
    torch.set_num_threads(n)
    return n


def machine_info() -> dict[str, Any]:
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _sync(device: str | torch.device | None) -> None:
    if device is None:
        return
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timeit(
    fn: Callable[[], Any],
    *,
    warmup: int = 1,
    repeat: int = 5,
    device: str | torch.device | None = None,
    min_time: float = 0.0,
) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs after ``warmup`` runs.

    Synchronises CUDA around each run when ``device`` is a CUDA device. With ``min_time`` > 0
    each measured run repeats ``fn`` until that many seconds passed and reports the mean.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        n = 0
        t0 = time.perf_counter()
        while True:
            fn()
            n += 1
            _sync(device)
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        times.append(elapsed / n)
    times.sort()
    return times[len(times) // 2]


def _median(values: list[float]) -> float:
    """Median with NaN ("never reached") ranked above every number: a run that missed the
    threshold counts as the slowest, and the median is NaN once half the runs missed it."""
    ranked = sorted(values, key=lambda v: (v != v, v))
    n = len(ranked)
    mid = ranked[(n - 1) // 2 : n // 2 + 1]
    if any(v != v for v in mid):
        return float("nan")
    return sum(mid) / len(mid)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
    return value


def add_seed_arguments(parser: argparse.ArgumentParser, seeds: int = 3) -> None:
    """``--seed`` (the first) and ``--seeds`` (how many: ``seed, seed + 1, ...``, one run of
    each library per seed; summarised by ``seed_summary``)."""
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument(
        "--seeds",
        type=_positive_int,
        default=seeds,
        help="number of seeds (seed, seed+1, ...): one run of each library per seed",
    )


def seed_summary(
    runs: list[dict[str, Any]],
    group: tuple[str, ...],
    medians: tuple[str, ...],
    means: tuple[str, ...],
) -> list[dict[str, Any]]:
    """One row per distinct ``group`` key of ``runs`` (per-seed rows), in first-seen order: the
    median of the ``medians`` columns (times; NaN ranks last, see ``_median``), the mean of the
    ``means`` columns (returns) and ``seeds``, the number of runs."""
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        out.setdefault(tuple(r[k] for k in group), []).append(r)
    rows = []
    for key, rs in out.items():
        row: dict[str, Any] = dict(zip(group, key))
        row["seed"] = f"{len(rs)} seeds"
        row.update({k: _median([float(r[k]) for r in rs]) for k in medians})
        row.update({k: sum(float(r[k]) for r in rs) / len(rs) for k in means})
        rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 1e5 or (0 < abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``rows`` (columns in first-seen key order)."""
    if not rows:
        return "(no rows)"
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join([line, sep, *body])


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temporary file in the same folder, then rename)."""
    from diffctl.data import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    text = json.dumps(obj, indent=2, default=str)
    atomic_write(path, lambda f: f.write(text.encode()))
