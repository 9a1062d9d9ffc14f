"""``diffctl bench sac``: our SAC and TD3 vs Stable-Baselines3's on pendulum, same
hyperparameters, same CPU and thread count, one process.

Ours run on our batched ``pendulum`` (one env, as the configs' defaults), SB3's on gymnasium's
``Pendulum-v1``. Hyperparameters are made equal where the libraries differ: one learning rate
for every network (SB3 has a single ``learning_rate``), SAC's actor updated every step
(``policy_frequency=1``) with the initial temperature 0.2 (``ent_coef="auto_0.2"``), TD3's
exploration noise ``0.1 * max_action``; 2x64 ReLU networks, batch 256, buffer 100k, 1000
random warm-up steps, tau 0.005, gamma 0.99, one gradient step per env step.
``--compile`` runs ours with ``compile=True`` (the losses through ``torch.compile``); the
first run in a process includes the compile, which a warm inductor disk cache shortens.

Reported per library and algorithm: wall time until the mean return of the last 5 episodes
first reaches ``--threshold`` (-200; checked after every episode), total training time, and
the final policy's deterministic mean return, for each of ``--seeds`` seeds, then the median
times and mean final return over the seeds; ratios are SB3 / ours (of the medians).
``train_cpu_s`` is the process CPU time of training: on a shared machine it moves less with the
other load than the wall time does (the runs are one after the other).

``--env mujoco:HalfCheetah-v5`` (SAC only) runs ours on our MuJoCo task and SB3 on gymnasium's
``HalfCheetah-v5`` (the same physics, observations and rewards), both with our preset for it
(rl-baselines3-zoo's SAC settings, ``diffctl.agents.sac.PRESETS``), 100k env steps by default.
Each run is evaluated during training at the ``--eval-at`` env steps (default 20000 and the
last): the mean deterministic return of ``--eval-episodes`` episodes (seeded ``seed + 1000``),
``return_at_<steps>``; evaluation time is left out of ``train_time_s``, ``train_cpu_s`` and
``steps_per_s`` (env steps per second of training, updates included).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from typing import Any

from diffctl.bench.common import BenchResult, add_seed_arguments, seed_summary, set_threads

HELP = (
    "SAC and TD3: ours vs Stable-Baselines3 on pendulum, time to -200 "
    "(--env mujoco:HalfCheetah-v5: SAC's return at --eval-at steps)"
)
PENDULUM = "pendulum"


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="diffctl bench sac", description=HELP)
    p.add_argument(
        "--env",
        default=PENDULUM,
        help="pendulum (default; SB3 on Pendulum-v1) or an env with a SAC preset, "
        "mujoco:HalfCheetah-v5 (SB3 on gymnasium's HalfCheetah-v5)",
    )
    p.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help="env steps per run (default 10000 on pendulum, 100000 on a MuJoCo task)",
    )
    p.add_argument("--quick", action="store_true", help="short runs (3000 steps)")
    p.add_argument(
        "--algos",
        default=None,
        help="comma-separated subset of sac,td3 (default sac,td3 on pendulum, else sac)",
    )
    p.add_argument(
        "--eval-at",
        type=int,
        nargs="+",
        default=None,
        help="MuJoCo task only: env steps at which to evaluate during training "
        "(default 20000 and --total-steps)",
    )
    p.add_argument("--threshold", type=float, default=-200.0)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    add_seed_arguments(p)
    p.add_argument(
        "--compile",
        action="store_true",
        help="run our losses through torch.compile (config compile=True; the first run in a "
        "process compiles, inductor's on-disk cache shortens that in later processes)",
    )
    p.add_argument("--skip-peer", action="store_true", help="run ours only")
    return p.parse_args(argv)


def first_window_reach(episodes: list[tuple[float, float]], threshold: float, k: int = 5) -> float:
    """Wall time at the end of the first episode after which the mean return of the last ``k``
    episodes reaches ``threshold`` (NaN if none), from ``(end time, return)`` pairs in order:
    a window sliding by one episode (200 steps on pendulum)."""
    for i in range(k, len(episodes) + 1):
        window = episodes[i - k : i]
        if sum(r for _, r in window) / k >= threshold:
            return window[-1][0]
    return float("nan")


def _config(algo: str, steps: int, lr: float, compile_: bool = False) -> Any:
    from diffctl.agents import default_config

    cfg = default_config(algo, "pendulum")
    extra = {"policy_frequency": 1} if algo == "sac" else {}
    if algo == "sac":
        extra["alpha_lr"] = lr
    # log every 200 steps (one pendulum episode) for the time-to-threshold curve
    return dataclasses.replace(
        cfg,
        total_steps=steps,
        actor_lr=lr,
        critic_lr=lr,
        log_interval=200,
        compile=compile_,
        **extra,
    )


def run_ours(algo: str, cfg: Any, seed: int, threshold: float, n_eval: int) -> dict[str, Any]:
    from diffctl.agents import evaluate
    from diffctl.agents import train as train_algo

    t0, c0 = time.perf_counter(), time.process_time()
    result = train_algo(algo, "pendulum", cfg, seed)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    eps = [
        (r["wall_time"], r["mean_return"])
        for r in result.history
        if not math.isnan(r["mean_return"])
    ]
    final = evaluate(result.agent, "pendulum", n_eval, seed=seed + 1000)["mean_return"]
    return {
        "algo": algo,
        "library": "diffctl",
        "time_to_threshold_s": first_window_reach(eps, threshold),
        "train_time_s": total,
        "train_cpu_s": cpu,
        "final_return": final,
    }


def run_sb3(algo: str, cfg: Any, seed: int, threshold: float, n_eval: int) -> dict[str, Any]:
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.noise import NormalActionNoise

    env = Monitor(gym.make("Pendulum-v1"))
    episodes: list[tuple[float, float]] = []

    class Track(BaseCallback):
        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    episodes.append((time.perf_counter() - self.t0, float(info["episode"]["r"])))
            return True

    common = dict(
        learning_rate=cfg.actor_lr,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        train_freq=1,
        gradient_steps=cfg.updates_per_step,
        policy_kwargs={"net_arch": list(cfg.hidden), "activation_fn": torch.nn.ReLU},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    if algo == "sac":
        model = SAC("MlpPolicy", env, ent_coef=f"auto_{cfg.alpha}", **common)
    else:
        high = float(env.action_space.high[0])
        noise = NormalActionNoise(np.zeros(1), np.full(1, cfg.exploration_noise * high))
        model = TD3(
            "MlpPolicy",
            env,
            action_noise=noise,
            policy_delay=cfg.policy_frequency,
            target_policy_noise=cfg.policy_noise,
            target_noise_clip=cfg.noise_clip,
            **common,
        )
    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=cfg.total_steps, callback=Track())
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    eval_env = Monitor(gym.make("Pendulum-v1"))
    eval_env.reset(seed=seed + 1000)
    final, _ = evaluate_policy(model, eval_env, n_eval_episodes=n_eval, deterministic=True)
    return {
        "algo": algo,
        "library": "stable-baselines3",
        "time_to_threshold_s": first_window_reach(episodes, threshold),
        "train_time_s": total,
        "train_cpu_s": cpu,
        "final_return": float(final),
    }


def _progress(text: str) -> None:
    """One line on stderr at once (a long run's log shows where it is)."""
    print(f"[bench sac {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _task_config(env: str, steps: int) -> Any:
    """Our SAC preset for ``env`` with ``steps`` env steps; refuses an env without a preset."""
    from diffctl.agents.sac import PRESETS

    if env not in PRESETS or env == PENDULUM:
        known = ", ".join(k for k in PRESETS if k != PENDULUM)
        raise ValueError(f"--env: expected pendulum or one of {known}, got {env!r}")
    return dataclasses.replace(PRESETS[env], total_steps=steps)


def run_ours_at(env: str, cfg: Any, seed: int, eval_at: list[int], n_eval: int) -> dict[str, Any]:
    """Our SAC on ``env``, evaluated (deterministic, ``n_eval`` episodes, seed ``seed + 1000``)
    when the run passes each of ``eval_at`` env steps; evaluation time is not training time."""
    from diffctl.agents import evaluate
    from diffctl.agents import sac as sac_module
    from diffctl.agents.offpolicy import train_off_policy

    agents: list[Any] = []

    def make_agent(spec: Any, config: Any, s: int) -> Any:  # keeps the agent for evaluation
        agents.append(sac_module.make_agent(spec, config, s))
        return agents[-1]

    returns: dict[int, float] = {}
    spent = [0.0, 0.0]  # evaluation wall and CPU time

    def at(step: int) -> None:
        t, c = time.perf_counter(), time.process_time()
        returns[step] = evaluate(agents[-1], env, n_eval, seed=seed + 1000)["mean_return"]
        spent[0] += time.perf_counter() - t
        spent[1] += time.process_time() - c
        _progress(f"diffctl seed {seed}: return {returns[step]:.1f} at {step} steps")

    def callback(record: dict[str, Any]) -> None:
        step = record["step"]
        if step in eval_at and step < cfg.total_steps:
            at(step)
        if step % 10_000 == 0:
            _progress(
                f"diffctl seed {seed}: {step} steps, {record['wall_time']:.0f} s, "
                f"train episode return {record['mean_return']:.1f}"
            )

    t0, c0 = time.perf_counter(), time.process_time()
    train_off_policy(
        "sac",
        env,
        cfg,
        sac_module.SACConfig,
        sac_module.default_config,
        make_agent,
        sac_module.make_learner,
        seed,
        device=None,
        checkpoint=None,
        checkpoint_every=0,
        resume=None,
        callback=callback,
    )
    total = time.perf_counter() - t0 - spent[0]
    cpu = time.process_time() - c0 - spent[1]
    at(cfg.total_steps)
    return _at_row("sac", "diffctl", eval_at, returns, total, cpu, cfg.total_steps, spent[0])


def _at_row(
    algo: str,
    library: str,
    eval_at: list[int],
    returns: dict[int, float],
    total: float,
    cpu: float,
    steps: int,
    eval_time: float,
) -> dict[str, Any]:
    return {
        "algo": algo,
        "library": library,
        **{f"return_at_{k}": returns.get(k, float("nan")) for k in eval_at},
        "train_time_s": total,
        "train_cpu_s": cpu,
        "steps_per_s": steps / total,
        "eval_time_s": eval_time,
    }


def run_sb3_at(env: str, cfg: Any, seed: int, eval_at: list[int], n_eval: int) -> dict[str, Any]:
    """SB3's SAC on gymnasium's twin of ``env`` (``mujoco:X`` -> ``X``) with ``cfg``'s
    hyperparameters, evaluated as ``run_ours_at``."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    gym_id = env.removeprefix("mujoco:")
    returns: dict[int, float] = {}
    spent = [0.0, 0.0]

    def at(model: Any, step: int) -> None:
        t, c = time.perf_counter(), time.process_time()
        eval_env = Monitor(gym.make(gym_id))
        eval_env.reset(seed=seed + 1000)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=n_eval, deterministic=True)
        returns[step] = float(mean)
        spent[0] += time.perf_counter() - t
        spent[1] += time.process_time() - c
        _progress(f"stable-baselines3 seed {seed}: return {mean:.1f} at {step} steps")

    class Track(BaseCallback):
        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()
            self.last: list[float] = []

        def _on_step(self) -> bool:
            step = self.num_timesteps
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.last.append(float(info["episode"]["r"]))
            if step in eval_at and step < cfg.total_steps:
                at(self.model, step)
            if step % 10_000 == 0:
                ret = self.last[-1] if self.last else float("nan")
                _progress(
                    f"stable-baselines3 seed {seed}: {step} steps, "
                    f"{time.perf_counter() - self.t0 - spent[0]:.0f} s, "
                    f"train episode return {ret:.1f}"
                )
            return True

    model = SAC(
        "MlpPolicy",
        Monitor(gym.make(gym_id)),
        learning_rate=cfg.actor_lr,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        train_freq=1,
        gradient_steps=cfg.updates_per_step,
        ent_coef=f"auto_{cfg.alpha}",
        policy_kwargs={"net_arch": list(cfg.hidden), "activation_fn": torch.nn.ReLU},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=cfg.total_steps, callback=Track())
    total = time.perf_counter() - t0 - spent[0]
    cpu = time.process_time() - c0 - spent[1]
    at(model, cfg.total_steps)
    return _at_row(
        "sac", "stable-baselines3", eval_at, returns, total, cpu, cfg.total_steps, spent[0]
    )


def _run_task(args: argparse.Namespace) -> BenchResult:
    """``--env`` a MuJoCo task: SAC's return at ``--eval-at`` steps, ours vs SB3."""
    n_eval = args.eval_episodes
    threads = set_threads(args.threads)
    steps = args.total_steps or (3_000 if args.quick else 100_000)
    if steps < 1:
        raise ValueError(f"--total-steps: expected a positive int, got {steps}")
    cfg = dataclasses.replace(_task_config(args.env, steps), compile=args.compile)
    algos = [a.strip() for a in (args.algos or "sac").split(",") if a.strip()]
    if algos != ["sac"]:
        raise ValueError(f"--algos: only sac has a preset for {args.env}, got {args.algos!r}")
    eval_at = sorted(set(args.eval_at or [k for k in (20_000,) if k < steps] + [steps]))
    bad = [k for k in eval_at if not 0 < k <= steps or k % 1_000 and k != steps]
    if bad:
        raise ValueError(
            f"--eval-at: expected multiples of 1000 (the log interval) in (0, {steps}] or "
            f"{steps}, got {bad}"
        )
    if steps not in eval_at:
        eval_at.append(steps)
    if not cfg.actor_lr == cfg.critic_lr == cfg.alpha_lr or cfg.policy_frequency != 1:
        raise ValueError(f"{args.env}: the preset has no SB3 equivalent ({cfg})")
    result = BenchResult(name="sac")
    result.notes.append(
        f"{args.env}: SB3 on gymnasium's {args.env.removeprefix('mujoco:')}; {steps} env steps "
        f"per run; evaluated at {eval_at} ({n_eval} deterministic episodes); torch threads "
        f"{threads}; one process"
    )
    result.notes.append(f"sac: {cfg}")
    peer_ok = result.peer_available("stable_baselines3", skip=args.skip_peer)
    runs = []
    for seed in range(args.seed, args.seed + args.seeds):  # ours and SB3 alternate
        runs.append({"seed": seed, **run_ours_at(args.env, cfg, seed, eval_at, n_eval)})
        if peer_ok:
            runs.append({"seed": seed, **run_sb3_at(args.env, cfg, seed, eval_at, n_eval)})
    result.rows.extend(runs)
    times = ("train_time_s", "train_cpu_s", "steps_per_s", "eval_time_s")
    rets = tuple(f"return_at_{k}" for k in eval_at)
    summary = runs
    if args.seeds > 1:
        summary = seed_summary(runs, ("algo", "library"), times, rets)
        result.rows.extend(summary)
        result.notes.append(
            f"'{args.seeds} seeds' rows: median times and steps/s, mean returns over the seeds"
        )
    if peer_ok:
        ours, peer = summary[-2], summary[-1]
        result.rows.append(
            {
                "algo": "sac",
                "library": "ratio sb3/ours",
                **{k: ours[k] - peer[k] for k in rets},
                "train_time_s": peer["train_time_s"] / ours["train_time_s"],
                "train_cpu_s": peer["train_cpu_s"] / ours["train_cpu_s"],
                "steps_per_s": ours["steps_per_s"] / peer["steps_per_s"],
            }
        )
        result.notes.append(
            "ratio row: times SB3/ours and steps/s ours/SB3 (>1: ours faster); returns ours "
            "minus SB3 (>= 0: ours at least as good)"
        )
    return result


def run(argv: list[str]) -> BenchResult:
    args = _args(argv)
    if args.env != PENDULUM:
        return _run_task(args)
    if args.eval_at is not None:
        raise ValueError("--eval-at: only with a MuJoCo --env (pendulum reports time to -200)")
    n_eval = args.eval_episodes
    threads = set_threads(args.threads)
    steps = args.total_steps or (3_000 if args.quick else 10_000)
    algos = [a.strip() for a in (args.algos or "sac,td3").split(",") if a.strip()]
    for a in algos:
        if a not in ("sac", "td3"):
            raise ValueError(f"--algos: expected names from sac,td3, got {a!r}")
    result = BenchResult(name="sac")
    result.notes.append(f"{steps} env steps per run; torch threads {threads}; one process")
    peer_ok = result.peer_available("stable_baselines3", skip=args.skip_peer)
    runs = []
    for algo in algos:
        cfg = _config(algo, steps, 1e-3, args.compile)
        result.notes.append(f"{algo}: {cfg}")
        for seed in range(args.seed, args.seed + args.seeds):  # ours and SB3 alternate
            runs.append({"seed": seed, **run_ours(algo, cfg, seed, args.threshold, n_eval)})
            if peer_ok:
                runs.append({"seed": seed, **run_sb3(algo, cfg, seed, args.threshold, n_eval)})
    result.rows.extend(runs)
    times = ("time_to_threshold_s", "train_time_s", "train_cpu_s")
    summary = runs
    if args.seeds > 1:
        summary = seed_summary(runs, ("algo", "library"), times, ("final_return",))
        result.rows.extend(summary)
        result.notes.append(
            f"'{args.seeds} seeds' rows: median times over the seeds (a run that never reached "
            "the threshold counts as the slowest), mean final return"
        )
    if peer_ok:
        for ours, peer in zip(summary[::2], summary[1::2]):
            result.rows.append(
                {
                    "algo": ours["algo"],
                    "library": "ratio sb3/ours",
                    **{k: peer[k] / ours[k] for k in times},
                    "final_return": ours["final_return"] - peer["final_return"],
                }
            )
    result.notes.append(
        "ratio rows: times SB3/ours (>1: ours faster); final_return ours minus "
        "SB3 (>= 0: ours at least as good); nan: threshold never reached"
    )
    if args.seeds == 1:
        result.notes.append(
            "final_return and time_to_threshold are one seed's: at these budgets float rounding "
            "alone can move a run's final return by hundreds (--seeds averages several)"
        )
    return result
