"""``diffctl bench dqn``: our DQN on our batched ``cartpole`` vs Stable-Baselines3's DQN on
gymnasium's ``CartPole-v1``, same hyperparameters, same CPU and thread count, one process.

Both run ``PRESETS["cartpole"]`` of ``diffctl.agents.dqn`` (DQN with 3-step returns; SB3's
DQN has ``n_steps`` but no double / dueling / prioritised switches): the same number of
envs, buffer, batch, warm-up, learning rate (and its linear decay), network, Huber loss,
gradient-norm clip, target copies, n-step returns and epsilon schedule. SB3 counts
``train_freq`` in vector steps, so it gets ``train_frequency // num_envs`` (the same env steps
between update phases), and ``target_update_interval`` in env steps, as ours.

Reported per library: wall time until the mean return of the last 5 points reaches
``--threshold`` (475) (SB3: its episodes; ours: its history records, one every 500 env steps,
each the mean of the episodes finished in it: near the threshold, about one episode each),
total training time, and the final policy's deterministic mean return over
``--eval-episodes`` episodes (seeded ``seed + 1000``), for each of ``--seeds`` seeds, then the
median times and mean final return over the seeds; ratios are SB3 / ours (of the medians).
``train_cpu_s`` is the process CPU time of training: on a shared machine it moves less with
the other load than the wall time does (the runs are one after the other).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from typing import Any

from diffctl.bench.common import BenchResult, add_seed_arguments, seed_summary, set_threads
from diffctl.bench.sac import first_window_reach

HELP = "DQN: ours (batched cartpole) vs Stable-Baselines3 (CartPole-v1), time to 475"
CARTPOLE = "cartpole"


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="diffctl bench dqn", description=HELP)
    p.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help="env steps per run (default: the preset's, 50000)",
    )
    p.add_argument("--quick", action="store_true", help="short runs (10000 steps)")
    p.add_argument("--threshold", type=float, default=475.0)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    add_seed_arguments(p)
    p.add_argument("--skip-peer", action="store_true", help="run ours only")
    return p.parse_args(argv)


def run_ours(cfg: Any, seed: int, threshold: float, n_eval: int) -> dict[str, Any]:
    from diffctl.agents import evaluate
    from diffctl.agents.dqn import train

    t0, c0 = time.perf_counter(), time.process_time()
    result = train(CARTPOLE, cfg, seed)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    points = [
        (r["wall_time"], r["mean_return"])
        for r in result.history
        if not math.isnan(r["mean_return"])
    ]
    final = evaluate(result.agent, CARTPOLE, n_eval, seed=seed + 1000)["mean_return"]
    return {
        "library": "diffctl",
        "time_to_threshold_s": first_window_reach(points, threshold),
        "train_time_s": total,
        "train_cpu_s": cpu,
        "final_return": final,
    }


def run_sb3(cfg: Any, seed: int, threshold: float, n_eval: int) -> dict[str, Any]:
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    venv = make_vec_env("CartPole-v1", n_envs=cfg.num_envs, seed=seed)
    episodes: list[tuple[float, float]] = []

    class Track(BaseCallback):
        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    episodes.append((time.perf_counter() - self.t0, float(info["episode"]["r"])))
            return True

    lr = cfg.learning_rate
    model = DQN(
        "MlpPolicy",
        venv,
        learning_rate=(lambda p: p * lr) if cfg.anneal_lr else lr,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        train_freq=max(cfg.train_frequency // cfg.num_envs, 1),
        gradient_steps=cfg.gradient_steps,
        target_update_interval=cfg.target_update_interval,
        exploration_fraction=cfg.exploration_fraction,
        exploration_initial_eps=cfg.start_epsilon,
        exploration_final_eps=cfg.end_epsilon,
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"),
        n_steps=cfg.n_step,
        policy_kwargs={"net_arch": list(cfg.hidden), "activation_fn": torch.nn.ReLU},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=cfg.total_steps, callback=Track())
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    eval_env = Monitor(gym.make("CartPole-v1"))
    eval_env.reset(seed=seed + 1000)
    final, _ = evaluate_policy(model, eval_env, n_eval_episodes=n_eval, deterministic=True)
    return {
        "library": "stable-baselines3",
        "time_to_threshold_s": first_window_reach(episodes, threshold),
        "train_time_s": total,
        "train_cpu_s": cpu,
        "final_return": float(final),
    }


def run(argv: list[str]) -> BenchResult:
    args = _args(argv)
    from diffctl.agents.dqn import PRESETS

    threads = set_threads(args.threads)
    cfg = PRESETS[CARTPOLE]
    steps = args.total_steps or (10_000 if args.quick else cfg.total_steps)
    if steps < cfg.num_envs:
        raise ValueError(f"--total-steps: expected at least {cfg.num_envs}, got {steps}")
    # a record every 500 env steps for the time-to-threshold curve
    cfg = dataclasses.replace(cfg, total_steps=steps, log_interval=500)
    if cfg.double or cfg.dueling or cfg.prioritized or cfg.loss != "huber":
        raise ValueError(f"{CARTPOLE}: the preset has no SB3 DQN equivalent ({cfg})")
    result = BenchResult(name="dqn")
    result.notes.append(f"DQN {cfg}; torch threads {threads}; one process, same CPU")
    peer_ok = result.peer_available("stable_baselines3", skip=args.skip_peer)
    runs = []
    for seed in range(args.seed, args.seed + args.seeds):  # ours and SB3 alternate per seed
        runs.append({"seed": seed, **run_ours(cfg, seed, args.threshold, args.eval_episodes)})
        if peer_ok:
            runs.append({"seed": seed, **run_sb3(cfg, seed, args.threshold, args.eval_episodes)})
    result.rows.extend(runs)
    times = ("time_to_threshold_s", "train_time_s", "train_cpu_s")
    summary = runs
    if args.seeds > 1:
        summary = seed_summary(runs, ("library",), times, ("final_return",))
        result.rows.extend(summary)
        result.notes.append(
            f"'{args.seeds} seeds' rows: median times over the seeds (a run that never reached "
            "the threshold counts as the slowest), mean final return"
        )
    if not peer_ok:
        return result
    ours, peer = summary[0], summary[1]
    result.rows.append(
        {
            "library": "ratio sb3/ours",
            **{k: peer[k] / ours[k] for k in times},
            "final_return": ours["final_return"] - peer["final_return"],
        }
    )
    result.notes.append(
        "ratio row: time ratios are SB3/ours (>1: ours faster); final_return is ours minus "
        "SB3 (>= 0: ours at least as good); nan: threshold never reached"
    )
    return result
