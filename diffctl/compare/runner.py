"""Run the comparison: one task per (env, method, seed), serially or as Ray tasks.

Each task is ``run_task(spec) -> Row``, a pure function of its ``TaskSpec``: it sets its own
thread count and seeds, so the same spec gives the same returns in this process, in another
process or on a Ray worker. Rows are written to ``results.json`` / ``results.csv`` atomically
as each one completes, so an interrupted run keeps every finished row and never leaves half a
file.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .methods import METHODS, Curve

__all__ = [
    "TaskSpec", "Row", "run_task", "run_serial", "run_pool", "run_ray", "summarize",
    "save_results",
]  # fmt: skip


@dataclass(frozen=True)
class TaskSpec:
    """One run of one method on one env with one seed."""

    env: str
    method: str
    seed: int
    budget: float = 1.0
    episodes: int = 10
    device: str = "cpu"
    threads: int = 1

    def wants_gpu(self) -> bool:
        return self.device.startswith("cuda")


@dataclass
class Row:
    """What one task measured. ``returns`` are the evaluation episodes' returns; a task that
    failed has none and its one-line ``error``."""

    env: str
    method: str
    seed: int
    returns: list[float]
    env_steps: int
    wall_time: float
    solve_ms_per_step: float = float("nan")
    curve: list[dict[str, float]] = field(default_factory=list)
    notes: str = ""
    error: str = ""

    @property
    def mean_return(self) -> float:
        return sum(self.returns) / len(self.returns) if self.returns else float("nan")

    @property
    def std_return(self) -> float:
        if len(self.returns) < 2:
            return 0.0
        m = self.mean_return
        return math.sqrt(sum((r - m) ** 2 for r in self.returns) / len(self.returns))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean_return"] = self.mean_return
        d["std_return"] = self.std_return
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        keys = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in keys})


def run_task(spec: TaskSpec) -> Row:
    """Run one task (deterministic given ``spec``; wall times aside). A task that raises gives
    a row with the error (type and message, one line) so that the others still run."""
    import torch

    if spec.method not in METHODS:
        raise ValueError(f"method: unknown {spec.method!r}; known: {', '.join(METHODS)}")
    torch.set_num_threads(spec.threads)
    t0 = time.perf_counter()
    try:
        out = METHODS[spec.method](spec)
    except Exception as e:  # noqa: BLE001 - reported in the row, never swallowed silently
        message = " ".join(str(e).split()) or "no message"
        error = f"{type(e).__name__}: {message}"
        return Row(spec.env, spec.method, spec.seed, [], 0, time.perf_counter() - t0, error=error)
    wall = time.perf_counter() - t0
    curve: Curve = out.get("curve", [])
    return Row(
        env=spec.env, method=spec.method, seed=spec.seed,
        returns=[float(r) for r in out["returns"]],
        env_steps=int(out.get("env_steps", 0)), wall_time=wall,
        solve_ms_per_step=float(out.get("solve_ms_per_step", float("nan"))),
        curve=list(curve), notes=str(out.get("notes", "")),
    )  # fmt: skip


def run_serial(specs: Iterable[TaskSpec], on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Run the tasks one after another in this process."""
    rows = []
    for spec in specs:
        row = run_task(spec)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def run_pool(
    specs: list[TaskSpec], jobs: int, on_row: Callable[[Row], None] | None = None
) -> list[Row]:
    """Run the tasks in ``jobs`` worker processes of this machine (spawned, so each worker
    starts clean); rows come back in the order of ``specs``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    rows: list[Row | None] = [None] * len(specs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(run_task, s): i for i, s in enumerate(specs)}
        try:
            for fut in as_completed(futures):
                row = fut.result()
                rows[futures[fut]] = row
                if on_row is not None:
                    on_row(row)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return [r for r in rows if r is not None]


def run_ray(
    specs: list[TaskSpec],
    address: str | None = None,
    on_row: Callable[[Row], None] | None = None,
    num_cpus: int | None = None,
) -> list[Row]:
    """Fan the tasks out as Ray tasks (one per spec; a GPU requested for CUDA runs).

    ``address`` is a cluster address, or ``None`` / ``"local"`` for a local cluster (with
    ``num_cpus`` CPUs). Rows come back in the order of ``specs``.
    """
    try:
        import ray
    except ImportError as e:
        raise RuntimeError(
            "--ray needs Ray: pip install 'diffctl[ray]' (or pip install ray)"
        ) from e
    started_here = False
    if not ray.is_initialized():
        if address in (None, "", "local"):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started_here = True
    try:
        remote = ray.remote(run_task)
        refs = [
            remote.options(num_cpus=s.threads, num_gpus=1 if s.wants_gpu() else 0).remote(s)
            for s in specs
        ]
        index = {ref: i for i, ref in enumerate(refs)}
        rows: list[Row | None] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            row = ray.get(done[0])
            rows[index[done[0]]] = row
            if on_row is not None:
                on_row(row)
        return [r for r in rows if r is not None]
    finally:
        if started_here:
            ray.shutdown()


def summarize(rows: list[Row]) -> list[dict[str, Any]]:
    """One table line per (env, method): returns pooled over seeds."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.env, r.method), []).append(r)
    table = []
    for (env, method), rs in groups.items():
        pooled = Row(env, method, -1, [x for r in rs for x in r.returns], 0, 0.0)
        solve = [r.solve_ms_per_step for r in rs if not math.isnan(r.solve_ms_per_step)]
        failed = [f"seed {r.seed}: {r.error}" for r in rs if r.error]
        notes = sorted({r.notes for r in rs if r.notes}) + [f"failed ({e})" for e in failed]
        table.append({
            "env": env,
            "method": method,
            "return": "failed" if len(failed) == len(rs) else
                      f"{pooled.mean_return:.1f} ± {pooled.std_return:.1f}",
            "mean_return": pooled.mean_return,
            "env_steps": int(sum(r.env_steps for r in rs) / len(rs)),
            "wall_s": sum(r.wall_time for r in rs) / len(rs),
            "solve_ms/step": sum(solve) / len(solve) if solve else float("nan"),
            "seeds": len(rs),
            "notes": "; ".join(notes),
        })  # fmt: skip
    return table


def _atomic_write(path: str, text: str) -> None:
    from diffctl.data import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode()))


def save_results(out: str, rows: list[Row], meta: dict[str, Any]) -> None:
    """Write ``results.json`` (rows with curves) and ``results.csv`` (the table) atomically."""
    import json

    payload = {"meta": meta, "rows": [r.to_dict() for r in rows], "table": summarize(rows)}
    _atomic_write(os.path.join(out, "results.json"), json.dumps(payload, indent=2, default=str))
    table = payload["table"]
    buf = io.StringIO()
    if table:
        writer = csv.DictWriter(buf, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    _atomic_write(os.path.join(out, "results.csv"), buf.getvalue())
