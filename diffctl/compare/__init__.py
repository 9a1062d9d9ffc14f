"""``diffctl compare``: the whole story on one system, and who wins.

On the same seeds: collect logs with a random policy, fit an ensemble and a linear model, plan
with differentiable MPC and CEM on the learned models and on the true dynamics, train PPO, SAC
and DDPG, optionally learn a reward from MPC demos and re-plan with it; then print one table
and write ``results.json``, ``results.csv`` and plots into the output folder.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field

from .methods import DEFAULT_METHODS, IRL_METHODS, METHODS
from .plots import save_plots
from .runner import Row, TaskSpec, run_pool, run_ray, run_serial, save_results, summarize

__all__ = ["CompareConfig", "CompareResult", "compare", "steps_to_reach", "THRESHOLDS"]

# "Solved" return per env, for the env-steps comparison line.
THRESHOLDS = {"pendulum": -200.0, "cartpole-continuous": 400.0, "cartpole": 475.0}


@dataclass(frozen=True)
class CompareConfig:
    """Settings of ``diffctl compare``.

    Attributes:
        env: environments to compare on.
        methods: rows to run (see ``diffctl.compare.METHODS``).
        seeds: seeds; every row runs once per seed and the table pools their episodes.
        budget: scales every stage (logged steps, training steps); 1.0 is the default run.
        episodes: evaluation episodes per row and seed.
        out: output folder (default ``runs/<timestamp>``).
        with_irl: add the reward-learning rows (learn a reward from MPC demos, re-plan).
        ray: run each (env, method, seed) as a Ray task; ``local`` starts a local cluster,
            anything else is a cluster address. ``None``: run serially in this process.
        threads: torch threads of each task (the same on every path, so results match).
        jobs: tasks run at once in worker processes on this machine (without ``ray``).
        device: where tasks run (``cuda`` requests a GPU for each Ray task).
    """

    env: tuple[str, ...] = ("pendulum",)
    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: tuple[int, ...] = (0,)
    budget: float = 1.0
    episodes: int = 20
    out: str | None = None
    with_irl: bool = False
    ray: str | None = None
    threads: int = 1
    jobs: int = field(default_factory=lambda: min(os.cpu_count() or 1, 2))
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.env:
            raise ValueError("env: give at least one environment")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"methods: unknown {unknown}; known: {', '.join(METHODS)}")
        if not self.methods:
            raise ValueError("methods: give at least one method")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if not (self.budget > 0 and math.isfinite(self.budget)):
            raise ValueError(f"budget: expected a positive number, got {self.budget}")
        if self.episodes < 1:
            raise ValueError(f"episodes: expected a positive int, got {self.episodes}")
        if self.threads < 1:
            raise ValueError(f"threads: expected a positive int, got {self.threads}")
        if self.jobs < 1:
            raise ValueError(f"jobs: expected a positive int, got {self.jobs}")

    def tasks(self) -> list[TaskSpec]:
        methods = list(self.methods) + [m for m in IRL_METHODS if self.with_irl]
        return [
            TaskSpec(env=e, method=m, seed=s, budget=self.budget, episodes=self.episodes,
                     device=self.device, threads=self.threads)
            for e in self.env for m in dict.fromkeys(methods) for s in self.seeds
        ]  # fmt: skip


@dataclass
class CompareResult:
    """Rows (one per task), the pooled table, the output folder and whether it completed."""

    rows: list[Row]
    table: list[dict]
    out: str
    completed: bool
    summary: list[str]


def steps_to_reach(row: Row, threshold: float) -> int | None:
    """First env-step count at which a learner's curve reached ``threshold`` (None: never)."""
    for p in row.curve:
        if p["return"] >= threshold:
            return int(p["env_steps"])
    return None


def sample_efficiency_lines(rows: list[Row]) -> list[str]:
    """Lines comparing the env steps of model-based rows with PPO's, per env."""
    lines = []
    for env in dict.fromkeys(r.env for r in rows):
        thr = THRESHOLDS.get(env)
        if thr is None:
            continue
        mb = [
            r for r in rows
            if r.env == env
            and (r.method in ("mbrl", "pets", "mbpo")
                 or r.method.endswith(("-ensemble", "-linear")))
        ]  # fmt: skip
        ppo = [r for r in rows if r.env == env and r.method == "ppo"]
        good = [r for r in mb if r.mean_return >= thr]
        if not good:
            best = max(mb, key=lambda r: r.mean_return, default=None)
            if best is not None:
                lines.append(
                    f"{env}: no model-based row reached {thr:g} (best: {best.method} "
                    f"{best.mean_return:.1f} with {best.env_steps} env steps)"
                )
            continue
        best = min(good, key=lambda r: r.env_steps)
        line = (
            f"{env}: {best.method} reached {best.mean_return:.1f} >= {thr:g} with "
            f"{best.env_steps} env steps"
        )
        if ppo:
            reached = [steps_to_reach(r, thr) for r in ppo]
            if all(s is not None for s in reached):
                s = sum(reached) / len(reached)
                line += f"; PPO needed {s:.0f} ({s / max(best.env_steps, 1):.0f}x more)"
            else:
                budget = max(r.env_steps for r in ppo)
                line += (
                    f"; PPO did not reach {thr:g} within {budget} steps "
                    f"(> {budget / max(best.env_steps, 1):.0f}x more)"
                )
        lines.append(line)
    return lines


def compare(config: CompareConfig, *, progress: bool = True) -> CompareResult:
    """Run the comparison (see module docstring). Ctrl-C keeps every finished row on disk."""
    from tqdm.auto import tqdm

    out = config.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    specs = config.tasks()
    meta = {"config": asdict(config), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    rows: list[Row] = []
    bar = tqdm(total=len(specs), desc="compare", disable=not progress, unit="run")

    def on_row(row: Row) -> None:
        rows.append(row)
        save_results(out, rows, meta)
        bar.set_postfix_str(f"{row.method}: {row.mean_return:.1f}")
        bar.update(1)

    completed = False
    try:
        if config.ray is not None:
            bar.set_description(f"compare on Ray ({len(specs)} tasks)")
            run_ray(specs, config.ray, on_row=on_row)
        else:

            def announce(specs_iter):
                for s in specs_iter:
                    bar.set_description(f"{s.env}/{s.method}/seed {s.seed}")
                    yield s

            if config.jobs > 1 and len(specs) > 1:
                bar.set_description(f"compare ({config.jobs} processes)")
                run_pool(specs, config.jobs, on_row=on_row)
            else:
                run_serial(announce(specs), on_row=on_row)
        completed = True
    except KeyboardInterrupt:
        pass
    finally:
        bar.close()
    order = {(s.env, s.method, s.seed): i for i, s in enumerate(specs)}
    rows.sort(key=lambda r: order[(r.env, r.method, r.seed)])
    meta["completed"] = completed
    if rows:
        save_results(out, rows, meta)
        save_plots(out, rows)
    return CompareResult(rows, summarize(rows), out, completed, sample_efficiency_lines(rows))
