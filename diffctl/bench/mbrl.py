"""``diffctl bench mbrl``: real env steps the model-based loop needs, next to PPO's.

The loop (``diffctl.models.mbrl``: one random episode, then CEM on a model refitted after
every episode) runs until a training episode reaches the target return: pendulum (target
-200, at most 10 episodes) and continuous cart-pole swing-up (target -150 over 200 steps, at
most 30 episodes; random actions score about -410, planning on the true dynamics about -107).
PPO (our tuned preset) trains on the pendulum and reports the env steps its training
episodes needed to reach -200. Success means the loop got there within its episode limit.

``--env mujoco:HalfCheetah-v5`` runs the loop and MBPO at robot scale against SAC instead
(``diffctl.bench.mbrl_task``).
"""

from __future__ import annotations

import argparse
import math
import time

from .common import BenchResult, set_threads

HELP = (
    "model-based loop: env steps to reach the target return, next to PPO's "
    "(--env mujoco:HalfCheetah-v5: PETS and MBPO's return at 20k steps vs SAC at 100k)"
)

CASES = {
    "pendulum": dict(env="pendulum", iterations=9, target_return=-200.0),
    "cartpole-swingup": dict(
        env="cartpole-continuous", env_options=("swing_up=true",), horizon=60,
        num_samples=400, num_elites=40, plan_iterations=5, episode_steps=200, iterations=29,
        target_return=-150.0,
    ),
}  # fmt: skip


def _mbrl_row(name: str, seed: int, overrides: dict) -> dict:
    from diffctl.models.mbrl import MBRLConfig, mbrl

    cfg = MBRLConfig(**{**CASES[name], **overrides}, seed=seed, progress=True)
    t0 = time.perf_counter()
    result = mbrl(cfg)
    reached = [h for h in result.history if h["return"] >= cfg.target_return]
    last = result.history[-1]
    return {
        "task": name, "method": f"mbrl ({cfg.model} + {cfg.planner})",
        "episodes": len(result.history), "env_steps": last["env_steps"],
        "target": cfg.target_return, "final_return": last["return"],
        "reached": bool(reached), "wall_s": time.perf_counter() - t0,
    }  # fmt: skip


def _ppo_row(seed: int) -> dict:
    from diffctl.agents import default_config, train

    cfg = default_config("ppo", "pendulum")
    t0 = time.perf_counter()
    result = train("ppo", "pendulum", cfg, seed=seed)
    hits = [h["step"] for h in result.history if not math.isnan(h["mean_return"])
            and h["mean_return"] >= -200]  # fmt: skip
    return {
        "task": "pendulum", "method": "ppo", "episodes": float("nan"),
        "env_steps": hits[0] if hits else cfg.total_steps, "target": -200.0,
        "final_return": result.history[-1]["mean_return"], "reached": bool(hits),
        "wall_s": time.perf_counter() - t0,
    }  # fmt: skip


def run(argv: list[str]) -> BenchResult:
    if any(a == "--env" or a.startswith("--env=") for a in argv):
        from .mbrl_task import run_task

        return run_task(argv)
    p = argparse.ArgumentParser(prog="diffctl bench mbrl", description=HELP)
    p.add_argument("--tasks", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-ppo", action="store_true", help="no PPO row")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--iterations", type=int, help="planning episodes at most (default: per task)")
    p.add_argument("--episode-steps", type=int, help="steps per episode (default: the env's)")
    args = p.parse_args(argv)
    overrides = {
        k: v for k in ("iterations", "episode_steps") if (v := getattr(args, k)) is not None
    }
    set_threads(args.threads)
    result = BenchResult("mbrl")
    for task in args.tasks:
        result.rows.append(_mbrl_row(task, args.seed, overrides))
    if not args.skip_ppo and "pendulum" in args.tasks:
        ppo = _ppo_row(args.seed)
        result.rows.append(ppo)
        mb = next(r for r in result.rows if r["task"] == "pendulum" and r["method"] != "ppo")
        if mb["reached"]:
            ratio = ppo["env_steps"] / mb["env_steps"]
            more = "" if ppo["reached"] else " (PPO never reached it: a lower bound)"
            result.notes.append(f"pendulum: PPO used {ratio:.0f}x the env steps of mbrl{more}")
    for r in result.rows:
        if not r["reached"]:
            result.notes.append(f"{r['task']}/{r['method']}: target {r['target']} not reached")
    return result


if __name__ == "__main__":
    print(run([]).table())
