"""``diffctl bench trpo``: our TRPO on our batched envs vs sb3-contrib's TRPO on gymnasium's
``Pendulum-v1`` / ``CartPole-v1``, same hyperparameters, same CPU and thread count, one process.

Both runs use ``PRESETS[env]`` of ``diffctl.agents.trpo`` (16 envs, max KL, conjugate-gradient
steps and damping, backtracking factor and tries, critic epochs, minibatches and learning rate,
gamma, GAE lambda, advantage normalisation, 2x64 tanh networks with orthogonal init,
observation / reward normalisation). sb3-contrib gets the same through ``VecNormalize`` and its
constructor arguments (``target_kl = max_kl``, ``cg_max_steps = cg_iters``,
``line_search_shrinking_factor = backtrack_coef``, ``n_critic_updates = vf_epochs``,
``batch_size = batch / vf_minibatches``, ``learning_rate = vf_lr``).

Reported per env and library, as ``diffctl bench ppo`` does: wall time (and env steps) until the
mean return of the episodes finished in one iteration first reaches the env's threshold
(``--threshold``; default -200 on pendulum, 475 on cart-pole; both libraries read the clock at
the end of that iteration, after its update), the total training time and process CPU time,
and the final policy's deterministic mean return over ``--eval-episodes`` episodes, for each
of ``--seeds`` seeds, then the median times and mean final return over the seeds; ratios are
sb3-contrib / ours (of the medians). The time to the threshold mixes speed with the seed's
luck; the total training time compares the speed alone. On a shared machine the wall times
move with the other load (``train_cpu_s`` less so).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from typing import Any

from diffctl.bench.common import BenchResult, add_seed_arguments, seed_summary, set_threads
from diffctl.bench.ppo import first_reach, sb3_iteration_tracker, sb3_normalized_venv

HELP = "TRPO: ours (batched pendulum, cart-pole) vs sb3-contrib (Pendulum-v1, CartPole-v1)"

#: our env -> (gymnasium id, default threshold)
ENVS = {"pendulum": ("Pendulum-v1", -200.0), "cartpole": ("CartPole-v1", 475.0)}


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="diffctl bench trpo", description=HELP)
    p.add_argument("--envs", nargs="+", choices=list(ENVS), default=list(ENVS), help="envs to run")
    p.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help="env steps per run (default: each preset's)",
    )
    p.add_argument("--quick", action="store_true", help="short runs (20k steps) for a smoke test")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="return to reach (default: -200 on pendulum, 475 on cartpole)",
    )
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    add_seed_arguments(p)
    p.add_argument("--skip-peer", action="store_true", help="run ours only")
    return p.parse_args(argv)


def run_ours(env: str, cfg: Any, seed: int, threshold: float, episodes: int) -> dict[str, Any]:
    from diffctl.agents import evaluate
    from diffctl.agents.trpo import train

    t0, c0 = time.perf_counter(), time.process_time()
    result = train(env, cfg, seed)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    pts = [(r["wall_time"], r["step"], r["mean_return"]) for r in result.history]
    final = evaluate(result.agent, env, episodes, seed=seed + 1000)["mean_return"]
    reach_s, reach_steps = first_reach(pts, threshold)
    return {
        "env": env,
        "library": "diffctl",
        "steps": result.history[-1]["step"],
        "steps_to_threshold": reach_steps,
        "time_to_threshold_s": reach_s,
        "train_time_s": total,
        "train_cpu_s": cpu,
        "final_return": final,
    }


def run_sb3(env: str, cfg: Any, seed: int, threshold: float, episodes: int) -> dict[str, Any]:
    import torch
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    gym_id = ENVS[env][0]
    venv = sb3_normalized_venv(gym_id, cfg, seed)
    points: list[tuple[float, int, float]] = []

    model = TRPO(
        "MlpPolicy",
        venv,
        learning_rate=cfg.vf_lr,
        n_steps=cfg.num_steps,
        batch_size=cfg.batch_size // cfg.vf_minibatches,
        gamma=cfg.gamma,
        cg_max_steps=cfg.cg_iters,
        cg_damping=cfg.cg_damping,
        line_search_shrinking_factor=cfg.backtrack_coef,
        line_search_max_iter=cfg.backtrack_iters,
        n_critic_updates=cfg.vf_epochs,
        gae_lambda=cfg.gae_lambda,
        normalize_advantage=cfg.norm_adv,
        target_kl=cfg.max_kl,
        seed=seed,
        device="cpu",
        policy_kwargs={
            "net_arch": {"pi": list(cfg.hidden), "vf": list(cfg.hidden)},
            "activation_fn": torch.nn.Tanh,
            "log_std_init": cfg.log_std_init,
            "ortho_init": True,
        },
        verbose=0,
    )
    track = sb3_iteration_tracker(points)
    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=cfg.total_steps, callback=track)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    # deterministic evaluation on fresh envs with the frozen normaliser
    eval_env = VecNormalize(
        make_vec_env(gym_id, n_envs=1, seed=seed + 1000),
        training=False,
        norm_obs=cfg.norm_obs,
        norm_reward=False,
    )
    if cfg.norm_obs:
        eval_env.obs_rms = venv.obs_rms
    final, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
    reach_s, reach_steps = first_reach(points, threshold)
    return {
        "env": env,
        "library": "sb3-contrib",
        "steps": model.num_timesteps,
        "steps_to_threshold": reach_steps,
        "time_to_threshold_s": reach_s,
        "train_time_s": total,
        "train_cpu_s": cpu,
        "final_return": float(final),
    }


def run(argv: list[str]) -> BenchResult:
    args = _args(argv)
    from diffctl.agents.trpo import PRESETS

    threads = set_threads(args.threads)
    result = BenchResult(name="trpo")
    peer_ok = result.peer_available("sb3_contrib", skip=args.skip_peer)
    times = ("time_to_threshold_s", "train_time_s", "train_cpu_s")
    for env in args.envs:
        cfg = PRESETS[env]
        steps = args.total_steps or (20_480 if args.quick else cfg.total_steps)
        cfg = dataclasses.replace(cfg, total_steps=steps)
        threshold = ENVS[env][1] if args.threshold is None else args.threshold
        result.notes.append(f"{env}: TRPO {cfg}; threshold {threshold}")
        runs = []
        for seed in range(args.seed, args.seed + args.seeds):  # ours and the peer alternate
            runs.append({"seed": seed, **run_ours(env, cfg, seed, threshold, args.eval_episodes)})
            if peer_ok:
                runs.append(
                    {"seed": seed, **run_sb3(env, cfg, seed, threshold, args.eval_episodes)}
                )
        result.rows.extend(runs)
        summary = runs
        if args.seeds > 1:
            summary = seed_summary(
                runs, ("env", "library"), ("steps_to_threshold", *times), ("final_return",)
            )
            result.rows.extend(summary)
        for row in summary:
            if math.isnan(row["time_to_threshold_s"]):
                result.notes.append(f"{env} {row['library']}: median run never reached {threshold}")
        if not peer_ok:
            continue
        ours, peer = summary[0], summary[1]
        result.rows.append(
            {
                "env": env,
                "library": "ratio sb3-contrib/ours",
                **{k: peer[k] / ours[k] for k in times},
                "final_return": ours["final_return"] - peer["final_return"],
            }
        )
    result.notes.append(f"torch threads {threads}; one process, same CPU")
    if args.seeds > 1:
        result.notes.append(
            f"'{args.seeds} seeds' rows: median times and steps over the seeds (a run that never "
            "reached the threshold counts as the slowest), mean final return"
        )
    if peer_ok:
        result.notes.append(
            "ratio rows: time ratios are sb3-contrib/ours (>1: ours faster); final_return is "
            "ours minus sb3-contrib (>= 0: ours at least as good)"
        )
    return result
