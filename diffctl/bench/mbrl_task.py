"""``diffctl bench mbrl --env mujoco:HalfCheetah-v5``: the model-based loop at robot scale,
against SAC at five times the env steps.

One process, one seed, one after the other on the same threads:

- **mbrl**: PETS on the task (``PRESETS``: a 5-member ensemble of 3 x 200 Gaussian networks on
  normalised state deltas, refitted after every episode; iCEM over a 25-step horizon, 100
  samples x 5 iterations, each sequence scored by 5 particles over the elites (TS-inf),
  compiled), one random episode and
  then planned episodes up to ``--mbrl-steps`` (20k). ``return_at_<k>`` is the return of the
  training episode that ends at ``k`` env steps (each episode is a fresh start, the planner as
  it stands then); ``solve_ms`` the mean planner time per control step.
- **mbpo**: MBPO (``diffctl.configs.models.MBPO_PRESETS``: ``MBPOConfig``'s defaults, its
  half-cheetah settings with 20 SAC updates per env step, its entropy target -3, LayerNorm
  critics) for ``--mbrl-steps``; ``return_at_<k>`` the mean deterministic return of
  ``--eval-episodes`` episodes after the training episode that ends at ``k`` env steps.
- **sac**: our SAC with its preset for the task (``diffctl.agents.sac.PRESETS``) for
  ``--sac-steps`` (100k), and SB3's SAC with the same hyperparameters on gymnasium's task (the
  outside reference), both evaluated at the same env steps (mean deterministic return of
  ``--eval-episodes`` episodes; ``diffctl bench sac``'s runners).

The claim (issue: "learned-model planner at 20k env steps >= SAC at 100k") is checked in a note
for each model-based method.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from diffctl.configs.models import MBPO_PRESETS, PETS_PRESET

from .common import BenchResult, set_threads

#: the loop's settings per task (``diffctl.configs.models.PETS_PRESET``)
PRESETS: dict[str, dict[str, Any]] = {"mujoco:HalfCheetah-v5": PETS_PRESET}


def _progress(text: str) -> None:
    print(f"[bench mbrl {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _mbrl_row(env: str, steps: int, seed: int, marks: list[int]) -> dict[str, Any]:
    from diffctl.models.mbrl import MBRLConfig, mbrl

    episode = 1000
    iterations = max(1, math.ceil(steps / episode) - PRESETS[env]["initial_episodes"])
    cfg = MBRLConfig(
        env=env, **PRESETS[env], iterations=iterations, episode_steps=episode, seed=seed,
        progress=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    result = mbrl(cfg)
    wall = time.perf_counter() - t0
    curve = {h["env_steps"]: h["return"] for h in result.history}
    _progress("mbrl curve: " + ", ".join(f"{k}: {v:.0f}" for k, v in curve.items()))
    solve = [h["solve_time"] for h in result.history if h["solve_time"] is not None]
    return {
        "method": f"mbrl (PETS, {cfg.planner})",
        "library": "diffctl",
        **{f"return_at_{k}": curve.get(k, math.nan) for k in marks},
        "train_time_s": wall,
        "solve_ms": 1e3 * sum(solve) / len(solve),
    }


def _mbpo_row(env: str, steps: int, seed: int, marks: list[int], n_eval: int) -> dict[str, Any]:
    from diffctl.models.mbpo import MBPOConfig, mbpo

    cfg = MBPOConfig(
        env=env, **MBPO_PRESETS[env], total_steps=steps, episode_steps=1000,
        eval_episodes=n_eval, seed=seed, progress=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    result = mbpo(cfg)
    wall = time.perf_counter() - t0
    curve = {h["env_steps"]: h["eval_return"] for h in result.history}
    _progress("mbpo curve: " + ", ".join(f"{k}: {v:.0f}" for k, v in curve.items()))
    return {
        "method": "mbpo (SAC on model rollouts)",
        "library": "diffctl",
        **{f"return_at_{k}": curve.get(k, math.nan) for k in marks},
        "train_time_s": wall,
    }


def run_task(argv: list[str]) -> BenchResult:
    p = argparse.ArgumentParser(prog="diffctl bench mbrl --env", description=__doc__)
    p.add_argument("--env", required=True, choices=list(PRESETS))
    p.add_argument("--mbrl-steps", type=int, default=20_000, help="env steps of the loop")
    p.add_argument("--sac-steps", type=int, default=100_000, help="env steps of SAC")
    p.add_argument("--eval-episodes", type=int, default=5, help="SAC evaluation episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-pets", action="store_true", help="no PETS row (an hour on a CPU)")
    p.add_argument("--skip-mbpo", action="store_true", help="no MBPO row")
    p.add_argument("--skip-sac", action="store_true", help="no SAC rows (ours nor SB3's)")
    p.add_argument("--skip-peer", action="store_true", help="no SB3 row")
    args = p.parse_args(argv)
    for flag in ("mbrl_steps", "sac_steps", "eval_episodes"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')}: expected a positive int")
    if args.mbrl_steps % 1000:
        raise ValueError("--mbrl-steps: expected a multiple of 1000 (the episode length)")
    threads = set_threads(args.threads)
    marks = sorted({k for k in (5_000, 10_000, 20_000) if k < args.mbrl_steps} | {args.mbrl_steps})
    sac_marks = sorted({k for k in marks if k < args.sac_steps} | {args.sac_steps})
    result = BenchResult("mbrl")
    preset = {k: v for k, v in PRESETS[args.env].items() if k != "fit"}
    result.notes.append(
        f"{args.env}, seed {args.seed}, torch threads {threads}, one process; mbrl: {preset}"
    )
    if not args.skip_pets:
        result.rows.append(_mbrl_row(args.env, args.mbrl_steps, args.seed, marks))
    if not args.skip_mbpo:
        row = _mbpo_row(args.env, args.mbrl_steps, args.seed, marks, args.eval_episodes)
        result.rows.append(row)
    model_based = list(result.rows)
    if not args.skip_sac:
        from .sac import _task_config, run_ours_at, run_sb3_at

        cfg = _task_config(args.env, args.sac_steps)
        rows = [run_ours_at(args.env, cfg, args.seed, sac_marks, args.eval_episodes)]
        if result.peer_available("stable_baselines3", skip=args.skip_peer):
            rows.append(run_sb3_at(args.env, cfg, args.seed, sac_marks, args.eval_episodes))
        for r in rows:
            keep = {k: v for k, v in r.items() if k.startswith("return_at_")}
            result.rows.append(
                {
                    "method": "sac",
                    "library": r["library"],
                    **keep,
                    "train_time_s": r["train_time_s"],
                }
            )
        sac = rows[0][f"return_at_{args.sac_steps}"]
        for row in model_based:
            ours = row[f"return_at_{args.mbrl_steps}"]
            verdict = "meets" if ours >= sac else "misses"
            result.notes.append(
                f"{row['method']} at {args.mbrl_steps} steps: {ours:.0f}; our SAC at "
                f"{args.sac_steps}: {sac:.0f}; it {verdict} the target "
                f"({args.sac_steps / args.mbrl_steps:g}x fewer samples)"
            )
    return result
