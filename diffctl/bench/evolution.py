"""``diffctl bench evolution``: evolution strategies, one batched rollout per generation.

Two parts, in one process:

- **throughput**: one generation of ``--population`` perturbed policies (4,096: 2,048
  antithetic pairs) on cart-pole (the ES preset's linear policy) and pendulum (the ARS preset's
  16-unit MLP), run as ONE batched rollout (``es.generation_rollout``: every policy in its own
  env of one ``VecEnv``) against the same method one policy at a time (a loop over
  ``--per-policy`` of the perturbations, each a ``VecEnv`` of one env) and against gymnasium's
  numpy env stepped one policy at a time with the policy in numpy. Env steps/s counts the
  steps the episodes actually took (cart-pole episodes end early); the per-policy paths run
  fewer policies (steps/s stays comparable), ``ratio`` is batched / that path.
- **learning**: wall time until the central policy's deterministic mean return over
  ``--eval-episodes`` episodes first reaches the threshold, for our OpenAI-ES on cart-pole
  (500) and our ARS on pendulum (-250, ``PRESETS["pendulum"]``), next to sb3-contrib's ARS on
  gymnasium's ``CartPole-v1`` / ``Pendulum-v1``, same seeds. The central policy is evaluated
  every ``--eval-every`` generations on both sides with the clock paused (evaluation time is
  not training time). Pendulum: sb3-contrib's ARS gets our preset's hyperparameters
  (directions, top, step size, noise, a 16-unit tanh MLP with clipped, unsquashed output, no
  state normalisation, ``n_eval_episodes`` = our ``starts``); sb3-contrib has no OpenAI-ES, so
  cart-pole compares our ES with its ARS at its defaults (linear policy with bias, 8
  directions). A run stops at the threshold or after ``--max-seconds`` (training time) or its
  budget (``--max-generations``: a smaller one; the time cap is checked once per generation);
  ``nan``: never reached.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

from diffctl.bench.common import BenchResult, add_seed_arguments, seed_summary, set_threads

HELP = "ES/ARS: one batched rollout per generation vs one policy at a time; vs sb3-contrib ARS"

SYSTEMS = {"cartpole": "CartPole-v1", "pendulum": "Pendulum-v1"}
#: system -> (algorithm, threshold) of the learning part
LEARNING = {"cartpole": ("es", 500.0), "pendulum": ("ars", -250.0)}


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="diffctl bench evolution", description=HELP)
    p.add_argument("--population", type=int, default=4096, help="perturbed policies (even)")
    p.add_argument(
        "--per-policy", type=int, default=64, help="policies run one at a time (each path)"
    )
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-learning", action="store_true")
    p.add_argument("--eval-every", type=int, default=5, help="generations between evaluations")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--max-seconds", type=float, default=300.0, help="training-time cap of one run")
    p.add_argument(
        "--max-generations", type=int, default=0, help="generation cap of one run (0: none)"
    )
    p.add_argument("--threads", type=int, default=1)
    add_seed_arguments(p)
    p.add_argument("--skip-peer", action="store_true", help="run ours only")
    args = p.parse_args(argv)
    if args.population < 2 or args.population % 2:
        raise ValueError(f"--population: expected an even int >= 2, got {args.population}")
    return args


def _module(system: str) -> Any:
    import importlib

    return importlib.import_module(f"diffctl.agents.{LEARNING[system][0]}")


def _policy_config(system: str) -> Any:
    return _module(system).PRESETS[system]


# ------------------------------------------------------------------ throughput
def _thetas(policy: Any, population: int, scale: float, seed: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed)
    theta = 0.5 * torch.randn(policy.theta.numel(), generator=gen)
    eps = torch.randn(population // 2, theta.numel(), generator=gen)
    return torch.cat([theta + scale * eps, theta - scale * eps])


def _numpy_layers(policy: Any, theta: Any) -> list[tuple[Any, Any]]:
    """``[(W, c)]`` of ``policy`` with parameters ``theta`` as numpy arrays."""
    layers, i = [], 0
    flat = theta.double().numpy()
    for layer in policy.layers:
        o, n_in = layer.out_features, layer.in_features
        w = flat[i : i + o * n_in].reshape(o, n_in)
        i += o * n_in
        c = None
        if layer.bias is not None:
            c = flat[i : i + o]
            i += o
        layers.append((w, c))
    return layers


def _gym_one_at_a_time(system: str, policy: Any, thetas: Any, seed: int) -> tuple[int, float]:
    """Env steps and seconds of gymnasium's env run one policy at a time, numpy policy."""
    import gymnasium as gym
    import numpy as np

    env = gym.make(SYSTEMS[system])
    discrete, steps = policy.discrete, 0
    t0 = time.perf_counter()
    for k in range(thetas.shape[0]):
        layers = _numpy_layers(policy, thetas[k])
        obs, _ = env.reset(seed=seed + k)
        done = False
        while not done:
            h = np.asarray(obs, dtype=np.float64)
            for j, (w, c) in enumerate(layers):
                h = w @ h if c is None else w @ h + c
                if j < len(layers) - 1:
                    h = np.tanh(h)
            action = int(h.argmax()) if discrete else np.clip(h, -2.0, 2.0).astype(np.float32)
            obs, _, term, trunc, _ = env.step(action)
            steps += 1
            done = term or trunc
    seconds = time.perf_counter() - t0
    env.close()
    return steps, seconds


def throughput(system: str, population: int, per_policy: int, seed: int, peer: bool) -> list:
    import torch

    from diffctl.agents.es import generation_rollout, make_vec_env
    from diffctl.envs import make

    # the preset's policy: ES's linear policy on cart-pole, ARS's MLP on pendulum
    spec = make(system).spec
    policy = _module(system).make_agent(spec, _policy_config(system), seed).actor
    thetas = _thetas(policy, population, 0.1, seed)
    horizon = spec.max_steps
    rows = []

    def batched() -> tuple[int, float]:
        runner = make_vec_env(system, population, seed, None)
        t0 = time.perf_counter()
        _, lengths, _ = generation_rollout(runner, policy, thetas, seed, horizon)
        return int(lengths.sum()), time.perf_counter() - t0

    batched()  # warm-up
    steps, seconds = batched()
    rate = steps / seconds
    rows.append(
        {"system": system, "path": "diffctl generation_rollout, one batch", "policies":
         population, "env_steps": steps, "seconds": seconds, "steps_per_s": rate, "ratio": 1.0}
    )  # fmt: skip
    n = min(per_policy, population)
    runner = make_vec_env(system, 1, seed, None)
    t0, steps = time.perf_counter(), 0
    with torch.no_grad():
        for k in range(n):
            _, lengths, _ = generation_rollout(runner, policy, thetas[k : k + 1], seed + k, horizon)
            steps += int(lengths.sum())
    seconds = time.perf_counter() - t0
    rows.append(
        {"system": system, "path": "diffctl, one policy at a time (VecEnv of 1)", "policies": n,
         "env_steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
         "ratio": rate / (steps / seconds)}
    )  # fmt: skip
    if peer:
        steps, seconds = _gym_one_at_a_time(system, policy, thetas[:n], seed)
        rows.append(
            {"system": system, "path": "gymnasium env + numpy policy, one at a time",
             "policies": n, "env_steps": steps, "seconds": seconds,
             "steps_per_s": steps / seconds, "ratio": rate / (steps / seconds)}
        )  # fmt: skip
    return rows


# ------------------------------------------------------------------ learning
class _Clock:
    """Training time: wall time since ``start`` less the paused (evaluation) intervals."""

    def __init__(self) -> None:
        self.t0, self.paused = time.perf_counter(), 0.0

    def now(self) -> float:
        return time.perf_counter() - self.t0 - self.paused

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - t


@contextlib.contextmanager
def _capture_agent(module: Any) -> Iterator[list]:
    """The agent ``module.train`` builds (its ``make_agent`` wrapped for the call)."""
    original, built = module.make_agent, []

    def make_agent(*args: Any, **kwargs: Any) -> Any:
        built.append(original(*args, **kwargs))
        return built[-1]

    module.make_agent = make_agent
    try:
        yield built
    finally:
        module.make_agent = original


def run_ours(system: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from diffctl.agents import evaluate

    algo, threshold = LEARNING[system]
    module = _module(system)
    cfg = module.PRESETS[system]
    clock, reached, last = _Clock(), {}, {"return": float("nan")}
    with _capture_agent(module) as built:

        def callback(record: dict[str, Any]) -> bool:
            if record["iteration"] % args.eval_every == 0:
                with clock.pause():
                    agent = built[0]
                    ret = evaluate(agent, system, args.eval_episodes, seed=seed + 1000)
                    last["return"] = ret["mean_return"]
                if last["return"] >= threshold:
                    reached.update(time=clock.now(), steps=record["step"])
                    return False
            capped = 0 < args.max_generations <= record["iteration"]
            return clock.now() < args.max_seconds and not capped

        result = module.train(system, cfg, seed, callback=callback)
    return {
        "library": f"diffctl {algo}",
        "steps": result.history[-1]["step"],
        "train_steps_per_s": result.history[-1]["step"] / clock.now(),
        "steps_to_threshold": reached.get("steps", float("nan")),
        "time_to_threshold_s": reached.get("time", float("nan")),
        "train_time_s": clock.now(),
        "last_eval_return": last["return"],
    }


def _peer_model(system: str, seed: int) -> Any:
    import torch
    from sb3_contrib import ARS

    if system == "cartpole":  # sb3-contrib's defaults, a linear policy with bias (as our ES)
        return ARS("MlpPolicy", SYSTEMS[system], policy_kwargs={"net_arch": []}, seed=seed,
                   device="cpu", verbose=0)  # fmt: skip
    cfg = _policy_config(system)
    return ARS(
        "MlpPolicy",
        SYSTEMS[system],
        n_delta=cfg.num_directions,
        n_top=cfg.num_top,
        learning_rate=cfg.step_size,
        delta_std=cfg.noise,
        zero_policy=False,
        n_eval_episodes=max(cfg.starts, 1),
        policy_kwargs={
            "net_arch": list(cfg.hidden),
            "activation_fn": torch.nn.Tanh,
            "squash_output": False,
        },
        seed=seed,
        device="cpu",
        verbose=0,
    )


class _Stop(Exception):
    pass


def run_peer(system: str, seed: int, budget: int, args: argparse.Namespace) -> dict[str, Any]:
    import gymnasium as gym
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    _, threshold = LEARNING[system]
    model = _peer_model(system, seed)
    eval_env = Monitor(gym.make(SYSTEMS[system]))
    eval_env.reset(seed=seed + 1000)
    clock, reached, last = _Clock(), {}, {"return": float("nan")}

    class Track(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.updates = 0

        def _on_step(self) -> bool:
            return True

        def _on_rollout_start(self) -> None:  # the previous iteration's update has run
            if self.updates and self.updates % args.eval_every == 0:
                with clock.pause():
                    ret, _ = evaluate_policy(
                        model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True
                    )
                    last["return"] = float(ret)
                if last["return"] >= threshold:
                    reached.update(time=clock.now(), steps=self.num_timesteps)
                    raise _Stop
            if clock.now() >= args.max_seconds or 0 < args.max_generations <= self.updates:
                raise _Stop
            self.updates += 1

    clock = _Clock()
    with contextlib.suppress(_Stop):
        model.learn(total_timesteps=budget, callback=Track())
    return {
        "library": "sb3-contrib ars",
        "steps": model.num_timesteps,
        "train_steps_per_s": model.num_timesteps / clock.now(),
        "steps_to_threshold": reached.get("steps", float("nan")),
        "time_to_threshold_s": reached.get("time", float("nan")),
        "train_time_s": clock.now(),
        "last_eval_return": last["return"],
    }


def run(argv: list[str]) -> BenchResult:
    args = _args(argv)
    threads = set_threads(args.threads)
    result = BenchResult(name="evolution")
    result.notes.append(f"torch threads {threads}; one process, same CPU; seeds from {args.seed}")
    peer_gym = not args.skip_peer
    if peer_gym:
        try:
            import gymnasium  # noqa: F401
        except ImportError as e:
            result.notes.append(f"gymnasium missing: no gymnasium rows ({e})")
            peer_gym = False
    if not args.skip_throughput:
        for system in SYSTEMS:
            result.rows.extend(
                throughput(system, args.population, args.per_policy, args.seed, peer_gym)
            )
        result.notes.append(
            "throughput: one generation; ratio = batched steps/s / that path's; the per-policy "
            f"paths run the first {min(args.per_policy, args.population)} policies only"
        )
    if args.skip_learning:
        return result
    peer_ok = result.peer_available("sb3_contrib", skip=args.skip_peer)
    for system, (_, threshold) in LEARNING.items():
        cfg = _policy_config(system)
        runs = []
        for seed in range(args.seed, args.seed + args.seeds):
            runs.append({"system": system, "seed": seed, **run_ours(system, seed, args)})
            if peer_ok:
                runs.append(
                    {"system": system, "seed": seed,
                     **run_peer(system, seed, cfg.total_steps, args)}
                )  # fmt: skip
        summary = runs
        if args.seeds > 1:
            summary = seed_summary(
                runs, ("system", "library"),
                ("steps_to_threshold", "time_to_threshold_s", "train_time_s", "train_steps_per_s"),
                ("last_eval_return",),
            )  # fmt: skip
        result.rows.extend(runs if args.seeds == 1 else [*runs, *summary])
        if peer_ok:
            ours, peer = summary[0], summary[1]
            result.rows.append(
                {"system": system, "library": "ratio peer/ours",
                 "time_to_threshold_s": peer["time_to_threshold_s"] / ours["time_to_threshold_s"]}
            )  # fmt: skip
        for row in summary:
            if math.isnan(row["time_to_threshold_s"]):
                result.notes.append(
                    f"{system} {row['library']}: (median) run never reached {threshold} in "
                    f"{row['train_time_s']:.1f} s of training"
                )
        if peer_ok and math.isnan(summary[1]["time_to_threshold_s"]):
            ours_s = summary[0]["time_to_threshold_s"]
            if not math.isnan(ours_s):  # the peer's cap bounds the ratio from below
                result.notes.append(
                    f"{system}: ratio peer/ours > {summary[1]['train_time_s'] / ours_s:.1f} "
                    "(the peer stopped at its cap before the threshold)"
                )
    result.notes.append(
        "learning: time to the threshold is training time (evaluations every "
        f"{args.eval_every} generations excluded) of the central policy's deterministic "
        f"{args.eval_episodes}-episode mean return; cartpole: our ES vs sb3-contrib's ARS at "
        "its defaults (sb3-contrib has no OpenAI-ES); pendulum: same ARS hyperparameters; "
        "ratio row: peer / ours (>1: ours faster)"
    )
    return result
