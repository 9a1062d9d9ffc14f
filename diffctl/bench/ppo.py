"""``diffctl bench ppo``: our PPO on our batched pendulum vs Stable-Baselines3 PPO on
gymnasium's ``Pendulum-v1``, same hyperparameters, same CPU and thread count, one process.

Both runs use ``PRESETS["pendulum"]`` of ``diffctl.agents.ppo`` (16 envs x 128 steps, 10 epochs
of 4 minibatches, lr 1e-3 annealed linearly, gamma 0.95, GAE 0.95, clip 0.2 on the policy and
the value, 2x64 tanh networks with orthogonal init, observation and reward normalisation,
grad-norm 0.5). SB3 gets the same through ``VecNormalize`` and its constructor arguments.

Reported per library: wall time (and env steps) until the mean return of the episodes
finished in one iteration first reaches ``--threshold`` (-200; both libraries read the clock at
the end of that iteration, after its update), total training time, and the
final policy's deterministic mean return over ``--eval-episodes`` episodes, for each of
``--seeds`` seeds, then the median times and mean final return over the seeds; ratios are SB3 /
ours (of the medians). The step at which a run first reaches -200 moves by tens of thousands of
steps with the seed (and with rounding-level changes of the code), so the time to -200 mixes
speed with that noise (the median over seeds damps it); the total training time compares the
speed alone.
``train_cpu_s`` is the process CPU time of training: on a shared machine it moves less with
the other load than the wall time does (ours and SB3 run one after the other).

``--compile`` compiles our minibatch loss (``PPOConfig.compile``), and our times then include
the compile: its graphs come from inductor's on-disk cache when an earlier process compiled
them (warm); for the cold figure point the cache at an empty folder
(``TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) diffctl bench ppo --compile``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from typing import Any

from diffctl.bench.common import BenchResult, add_seed_arguments, seed_summary, set_threads

HELP = "PPO: ours (batched pendulum) vs Stable-Baselines3 (Pendulum-v1), time to -200"


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="diffctl bench ppo", description=HELP)
    p.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help="env steps per run (default: the preset's, 200k)",
    )
    p.add_argument("--quick", action="store_true", help="short run (40k steps) for a smoke test")
    p.add_argument("--threshold", type=float, default=-200.0)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    add_seed_arguments(p)
    p.add_argument("--skip-peer", action="store_true", help="run ours only")
    p.add_argument("--compile", action="store_true", help="compile our minibatch loss")
    return p.parse_args(argv)


def first_reach(points: list[tuple[float, int, float]], threshold: float) -> tuple[float, float]:
    """``(wall time, env steps)`` of the first ``(time, steps, mean_return)`` point at or above
    ``threshold`` (NaNs if none)."""
    for t, steps, r in points:
        if not math.isnan(r) and r >= threshold:
            return t, steps
    return float("nan"), float("nan")


def run_ours(cfg: Any, seed: int, threshold: float, episodes: int) -> dict[str, Any]:
    from diffctl.agents import evaluate
    from diffctl.agents.ppo import train

    t0, c0 = time.perf_counter(), time.process_time()
    result = train("pendulum", cfg, seed)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    pts = [(r["wall_time"], r["step"], r["mean_return"]) for r in result.history]
    final = evaluate(result.agent, "pendulum", episodes, seed=seed + 1000)["mean_return"]
    reach_s, reach_steps = first_reach(pts, threshold)
    return {
        "library": "diffctl",
        "steps": result.history[-1]["step"],
        "steps_to_threshold": reach_steps,
        "time_to_threshold_s": reach_s,
        "train_time_s": total,
        "train_cpu_s": cpu,
        "final_return": final,
    }


def sb3_normalized_venv(gym_id: str, cfg: Any, seed: int) -> Any:
    """SB3's vector env of ``cfg.num_envs`` copies of ``gym_id`` behind ``VecNormalize`` with
    the observation and reward normalisation of our on-policy config ``cfg``."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = make_vec_env(gym_id, n_envs=cfg.num_envs, seed=seed)
    return VecNormalize(
        venv,
        norm_obs=cfg.norm_obs,
        norm_reward=cfg.norm_reward,
        clip_obs=cfg.obs_clip,
        clip_reward=cfg.reward_clip,
        gamma=cfg.gamma,
    )


def sb3_iteration_tracker(points: list[tuple[float, int, float]]) -> Any:
    """An SB3 callback appending ``(wall time, env steps, mean return)`` to ``points`` once per
    on-policy iteration: the mean of the episodes finished in its rollout, stamped after the
    iteration's update, as our history records are."""
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback

    class Track(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []
            self.mean: float | None = None  # of the last rollout's finished episodes
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            return True

        def _on_rollout_end(self) -> None:
            self.mean = float(np.mean(self.returns)) if self.returns else float("nan")
            self.returns = []

        def _stamp(self) -> None:
            points.append((time.perf_counter() - self.t0, self.num_timesteps, self.mean))

        def _on_rollout_start(self) -> None:
            if self.mean is not None:  # the previous iteration's update has run
                self._stamp()

        def _on_training_end(self) -> None:
            self._stamp()

    return Track()


def run_sb3(cfg: Any, seed: int, threshold: float, episodes: int) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = sb3_normalized_venv("Pendulum-v1", cfg, seed)
    points: list[tuple[float, int, float]] = []

    lr = cfg.learning_rate
    model = PPO(
        "MlpPolicy",
        venv,
        learning_rate=(lambda p: p * lr) if cfg.anneal_lr else lr,
        n_steps=cfg.num_steps,
        batch_size=cfg.minibatch_size,
        n_epochs=cfg.update_epochs,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        clip_range=cfg.clip_coef,
        clip_range_vf=cfg.clip_coef if cfg.clip_vloss else None,
        normalize_advantage=cfg.norm_adv,
        ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef,
        max_grad_norm=cfg.max_grad_norm,
        target_kl=cfg.target_kl,
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
        make_vec_env("Pendulum-v1", n_envs=1, seed=seed + 1000), training=False, norm_reward=False
    )
    eval_env.obs_rms = venv.obs_rms
    from stable_baselines3.common.evaluation import evaluate_policy

    final, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
    reach_s, reach_steps = first_reach(points, threshold)
    return {
        "library": "stable-baselines3",
        "steps": model.num_timesteps,
        "steps_to_threshold": reach_steps,
        "time_to_threshold_s": reach_s,
        "train_time_s": total,
        "train_cpu_s": cpu,
        "final_return": float(final),
    }


def run(argv: list[str]) -> BenchResult:
    args = _args(argv)
    from diffctl.agents.ppo import PRESETS

    threads = set_threads(args.threads)
    cfg = PRESETS["pendulum"]
    steps = args.total_steps or (40_960 if args.quick else cfg.total_steps)
    cfg = dataclasses.replace(cfg, total_steps=steps, compile=args.compile)
    result = BenchResult(name="ppo")
    result.notes.append(f"PPO {cfg}; torch threads {threads}; one process, same CPU")
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
        summary = seed_summary(
            runs, ("library",), ("steps_to_threshold", *times), ("final_return",)
        )
        result.rows.extend(summary)
        result.notes.append(
            f"'{args.seeds} seeds' rows: median times and steps over the seeds (a run that never "
            "reached the threshold counts as the slowest), mean final return"
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
        "ratio row: time ratios are SB3/ours (>1: ours faster); final_return is "
        "ours minus SB3 (>= 0: ours at least as good)"
    )
    for row in summary:
        if math.isnan(row["time_to_threshold_s"]):
            result.notes.append(f"{row['library']}: median run never reached {args.threshold}")
    return result
