"""``diffctl bench humanoid``: keep gymnasium's humanoid standing under pushes, in real time.

Predictive sampling (MJPC's planner, ``diffctl.control.predictive.PredictiveSampling``) plans
on the true model of ``mujoco:Humanoid-v5`` (gymnasium's ``humanoid.xml``, frame skip 5,
``dt = 0.015`` s), stepped like MJPC's agent at the control step (one Euler step of 0.015 s
where the env takes five RK4 substeps of 3 ms), with the stand cost of
``diffctl.control.humanoid`` (the seed's torso ``roll^2 + pitch^2``, height, capture point
over the feet, velocities, control). Each start begins from gymnasium's
reset noise; every ``--push-every`` seconds the torso gets a horizontal velocity kick of
``--push-speed`` m/s in a random direction. A start succeeds when the torso height stays above
1.0 m and ``|roll|``, ``|pitch|`` below 0.3 rad for all ``--steps`` control steps (acceptance:
at least 9 of 10 starts over 1,000 steps). The real-time factor is simulated seconds per wall
second of the closed loops (planning and simulation together; goal >= 0.5 on 2 CPU cores; a
start that fails stops there): MuJoCo's rollouts run on ``--threads`` threads, torch (the
cost, a few small ops) on one.

By default iLQG (``diffctl.control.ilqg``: Li & Todorov 2004, Tassa et al. 2012 and 2014;
``mjd_transitionFD`` Jacobians of the same Euler planning model, box-constrained backward pass,
one iteration per control step from the shifted plan, on one thread) and predictive sampling
run side by side on the same starts and pushes (``--planners``); ``--updates best,mppi`` adds
the MPPI-weighted update of the sampler. There is no peer library here: the reference
is MJPC's real-time humanoid (C++), which is not run.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from diffctl.bench.common import BenchResult, set_threads

HELP = (
    "predictive sampling or iLQG keeps mujoco:Humanoid-v5 standing under pushes (real-time factor)"
)

_PLANNERS = ("sampling", "ilqg")
_UPDATES = ("best", "mppi")
"""``diffctl.control.predictive.UPDATES`` for the help, which must not import that module (it
imports torch); ``tests/test_cli_help_fast.py`` checks that the two agree."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffctl bench humanoid", description=HELP)
    p.add_argument("--starts", type=int, default=10, help="starts (seeds seed, seed+1, ...)")
    p.add_argument("--steps", type=int, help="control steps per start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="MuJoCo rollout threads")
    p.add_argument(
        "--planners",
        default="ilqg,sampling",
        help=f"comma-separated of {_PLANNERS}, run side by side on the same starts",
    )
    p.add_argument("--updates", default="best", help=f"sampling: comma-separated of {_UPDATES}")
    p.add_argument("--push-speed", type=float)
    p.add_argument("--push-every", type=float)
    p.add_argument("--horizon", type=int)
    p.add_argument("--num-samples", type=int)
    p.add_argument("--noise-std", type=float)
    p.add_argument("--temperature", type=float)
    p.add_argument("--replan-every", type=int, help="predictive sampling's")
    p.add_argument("--ilqg-replan-every", type=int, help="iLQG's (gains in between)")
    p.add_argument("--ilqg-iterations", type=int)
    return p


def _args(argv: list[str]) -> argparse.Namespace:
    """The parsed flags. A flag left out that has no default in ``_parser`` takes the default of
    its config's field: the help shows no defaults, so the configs (whose modules import torch)
    are read only after parsing."""
    args = _parser().parse_args(argv)
    from diffctl.control.humanoid import BalanceConfig
    from diffctl.control.ilqg import ILQGConfig
    from diffctl.control.predictive import PredictiveSamplingConfig

    d, b, g = PredictiveSamplingConfig(), BalanceConfig(), ILQGConfig()
    defaults = {
        "steps": b.steps,
        "push_speed": b.push_speed,
        "push_every": b.push_every,
        "horizon": d.horizon,
        "num_samples": d.num_samples,
        "noise_std": d.noise_std,
        "temperature": d.temperature,
        "replan_every": d.replan_every,
        "ilqg_replan_every": g.replan_every,
        "ilqg_iterations": g.iterations,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def run(argv: list[str]) -> BenchResult:
    args = _args(argv)
    import torch

    from diffctl.control.humanoid import (
        BalanceConfig,
        HumanoidStandCost,
        balance,
        humanoid_env,
    )
    from diffctl.control.ilqg import ILQG, ILQGConfig
    from diffctl.control.predictive import UPDATES, PredictiveSampling, PredictiveSamplingConfig

    if args.starts < 1 or args.steps < 1:
        raise ValueError("--starts and --steps: expected positive ints")
    planners = [u.strip() for u in args.planners.split(",") if u.strip()]
    for name in planners:
        if name not in _PLANNERS:
            raise ValueError(f"--planners: expected names from {_PLANNERS}, got {name!r}")
    updates = [u.strip() for u in args.updates.split(",") if u.strip()]
    for u in updates:
        if u not in UPDATES:
            raise ValueError(f"--updates: expected names from {UPDATES}, got {u!r}")
    threads = set_threads(args.threads)
    torch.set_num_threads(1)  # the cost is a few small ops; MuJoCo gets the cores
    res = BenchResult("humanoid")
    env = humanoid_env(nthread=threads)
    cost = HumanoidStandCost(env)
    runs_of: list[tuple[str, Any, dict[str, Any]]] = []
    for name in planners:
        if name == "ilqg":
            icfg = ILQGConfig(replan_every=args.ilqg_replan_every, iterations=args.ilqg_iterations)
            runs_of.append(
                (
                    "ilqg",
                    lambda icfg=icfg: ILQG(env, cost.config, icfg),
                    {"planner": "iLQG", "samples": "-", "horizon": icfg.horizon, "threads": 1},
                )
            )
            continue
        for update in updates:
            cfg = PredictiveSamplingConfig(
                horizon=args.horizon,
                num_samples=args.num_samples,
                noise_std=args.noise_std,
                update=update,
                temperature=args.temperature,
                replan_every=args.replan_every,
                nthread=threads,
                seed=args.seed,
            )
            runs_of.append(
                (
                    update,
                    lambda cfg=cfg: PredictiveSampling(env, cost, cfg),
                    {
                        "planner": "predictive sampling" if update == "best" else "mppi update",
                        "samples": cfg.num_samples,
                        "horizon": cfg.horizon,
                        "threads": threads,
                    },
                )
            )
    for label, make, row in runs_of:
        planner = make()
        runs = []
        t0 = time.perf_counter()
        for i in range(args.starts):
            bc = BalanceConfig(
                steps=args.steps,
                push_every=args.push_every,
                push_speed=args.push_speed,
                seed=args.seed + i,
            )
            r = balance(env, planner, bc)
            runs.append(r)
            print(
                f"bench humanoid: {label} start {args.seed + i}: "
                + ("stood" if r.success else f"left the bounds at step {r.failed_at}")
                + f" (real-time factor {r.real_time_factor:.2f})",
                flush=True,
            )
            if not r.success:
                res.notes.append(
                    f"{label}: start {args.seed + i} left the bounds at step {r.failed_at} "
                    f"(min height {r.min_height:.3f}, max |roll| {r.max_roll:.3f}, "
                    f"max |pitch| {r.max_pitch:.3f})"
                )
        planner.close()
        sim = sum(r.sim_s for r in runs)
        wall = sum(r.wall_s for r in runs)
        steps = sum(r.steps for r in runs)
        res.rows.append(
            {
                "planner": row["planner"],
                "samples": row["samples"],
                "horizon": row["horizon"],
                "starts": args.starts,
                "steps": args.steps,
                "push_m_s": args.push_speed,
                "successes": f"{sum(r.success for r in runs)}/{args.starts}",
                "min_height": min(r.min_height for r in runs),
                "max_roll": max(r.max_roll for r in runs),
                "max_pitch": max(r.max_pitch for r in runs),
                "ms_per_step": 1e3 * wall / steps,
                "plan_ms": 1e3 * sum(r.plan_s for r in runs) / steps,
                "real_time_factor": sim / wall,
                "threads": row["threads"],
                "total_wall_s": time.perf_counter() - t0,
            }
        )
    res.notes.append(
        "success: torso height > 1.0 m and |roll|, |pitch| < 0.3 rad at every step; "
        "real_time_factor = simulated s / wall s of the closed loops (goal >= 0.5 on 2 cores)"
    )
    return res
