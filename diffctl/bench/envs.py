"""``diffctl bench envs``: env-steps/s of our ``VecEnv`` against gymnasium's vector envs.

Ours: ``VecEnv(fused=True, validate=False)`` with auto-reset and on-device episode statistics
included, at 1, 64, 4,096 and 65,536 envs. Peers, in the same process: gymnasium's
``SyncVectorEnv`` (64 envs, a Python loop over single envs) and, where gymnasium has one, its
numpy vector env (``vector_entry_point``) at the same sizes. Actions are fixed per step on both
sides (no sampling cost), so the numbers compare the simulators. Ours and the numpy peer are
timed in alternating rounds within one cell (median round reported), so a load change on the
machine hits both; the first fused step (compilation) is part of the warm-up.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from .common import BenchResult, set_threads

HELP = "env-steps/s of VecEnv vs gymnasium SyncVectorEnv and numpy vector envs"

SYSTEMS = {"pendulum": "Pendulum-v1", "cartpole": "CartPole-v1"}


def _warm(step: Callable[[], object], sync: Callable[[], None]) -> None:
    for _ in range(3):
        step()
    sync()


def _round(
    step: Callable[[], object], num_envs: int, seconds: float, sync: Callable[[], None]
) -> float:
    """Env-steps per second of ``step`` over about ``seconds``."""
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(10):
            step()
        n += 10
        sync()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return num_envs * n / elapsed


Runner = tuple[Callable[[], object], int, Callable[[], None]]


def _rates(runners: list[Runner], seconds: float, rounds: int = 4) -> list[float]:
    """Median env-steps/s of each ``(step, num_envs, sync)`` over ``rounds`` alternating rounds
    (about ``seconds`` per runner in all)."""
    for step, _, sync in runners:
        _warm(step, sync)
    rates: list[list[float]] = [[] for _ in runners]
    for _ in range(rounds):
        for out, (step, n, sync) in zip(rates, runners):
            out.append(_round(step, n, seconds / rounds, sync))
    return [sorted(r)[len(r) // 2] for r in rates]


def ours(system: str, num_envs: int, device: str) -> tuple[Runner, Callable[[], object]]:
    """``(step, num_envs, sync)`` of our fused ``VecEnv`` and a function that reads its episode
    statistics (kept on the device throughout; read once at the end)."""
    import torch

    from diffctl.envs import VecEnv, make

    env = make(system)
    venv = VecEnv(env, num_envs, device=device, seed=0, validate=False, fused=True)
    venv.reset()
    spec = env.spec
    if spec.discrete:
        u = torch.randint(0, spec.num_actions, (num_envs,), device=device)
    else:
        low, high = spec.action_bounds(device)
        u = low + (high - low) * torch.rand(num_envs, spec.act_dim, device=device)

    def sync() -> None:
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    return (lambda: venv.step(u), num_envs, sync), venv.episode_statistics


def _gym_runner(vec, num_envs: int) -> Runner:
    import numpy as np

    vec.reset(seed=0)
    space = vec.action_space
    rng = np.random.default_rng(0)
    if hasattr(space, "nvec") or space.dtype == np.int64:
        actions = rng.integers(0, 2, size=space.shape).astype(space.dtype)
    else:
        actions = rng.uniform(space.low, space.high).astype(space.dtype)
    return (lambda: vec.step(actions), num_envs, lambda: None)


def gym_sync(gym_id: str, num_envs: int, seconds: float) -> float:
    import gymnasium as gym

    vec = gym.vector.SyncVectorEnv([lambda: gym.make(gym_id) for _ in range(num_envs)])
    (rate,) = _rates([_gym_runner(vec, num_envs)], seconds)
    vec.close()
    return rate


def gym_numpy(gym_id: str, num_envs: int):
    """gymnasium's numpy vector env at ``num_envs`` (``None`` if gymnasium has none)."""
    import gymnasium as gym

    if gym.spec(gym_id).vector_entry_point is None:
        return None
    return gym.make_vec(gym_id, num_envs=num_envs, vectorization_mode="vector_entry_point")


def run(argv: list[str]) -> BenchResult:
    p = argparse.ArgumentParser(prog="diffctl bench envs", description=HELP)
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--sizes", nargs="+", type=int, default=[1, 64, 4096, 65536])
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: min(2, cores))"
    )
    p.add_argument("--seconds", type=float, default=1.5, help="measuring time per cell")
    p.add_argument("--brax", action="store_true", help="also measure the Brax bridge overhead")
    args = p.parse_args(argv)
    threads = set_threads(args.threads)
    result = BenchResult("envs")
    result.notes.append(
        f"torch threads: {threads}; device: {args.device} (on CPU the fused step runs on one "
        "thread below 32,768 envs)"
    )
    try:
        import gymnasium  # noqa: F401

        have_gym = True
    except ImportError:
        have_gym = False
        result.notes.append(
            "gymnasium is not installed: peer columns missing (pip install gymnasium)"
        )

    for system in args.systems:
        gym_id = SYSTEMS[system]
        base = gym_sync(gym_id, 64, args.seconds) if have_gym else float("nan")
        result.rows.append(
            {
                "system": system,
                "runner": "gymnasium SyncVectorEnv",
                "envs": 64,
                "steps_per_s": base,
                "x_sync64": 1.0,
                "x_gym_numpy": float("nan"),
            }
        )
        for n in args.sizes:
            runner, read_statistics = ours(system, n, args.device)
            vec = gym_numpy(gym_id, n) if have_gym else None
            if vec is None:
                (rate,), peer = _rates([runner], args.seconds), None
            else:
                rate, peer = _rates([runner, _gym_runner(vec, n)], args.seconds)
                vec.close()
            read_statistics()
            if peer is not None:
                result.rows.append(
                    {
                        "system": system,
                        "runner": "gymnasium numpy vector",
                        "envs": n,
                        "steps_per_s": peer,
                        "x_sync64": peer / base,
                        "x_gym_numpy": 1.0,
                    }
                )
            result.rows.append(
                {
                    "system": system,
                    "runner": f"diffctl VecEnv ({args.device})",
                    "envs": n,
                    "steps_per_s": rate,
                    "x_sync64": rate / base,
                    "x_gym_numpy": rate / peer if peer else float("nan"),
                }
            )
        if have_gym and gymnasium.spec(gym_id).vector_entry_point is None:
            result.notes.append(f"gymnasium has no numpy vector env for {gym_id}")

    if args.brax:
        try:
            from .brax_envs import run_brax_bench

            result.rows.extend(run_brax_bench(num_envs=1024, device=args.device))
        except ImportError as e:
            result.notes.append(
                f"brax bridge benchmark unavailable: {e} (pip install 'diffctl[brax]')"
            )
    return result
