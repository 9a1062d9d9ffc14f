"""Brax bridge overhead: ``make("brax:<name>").step`` against Brax's own jitted, vmapped step.

Both sides advance the same batch of ``num_envs`` envs by ``steps`` chained steps with a fixed
random action in ``[-1, 1]``. The native side is ``jax.jit(jax.vmap(env.step))`` on Brax
``State``s (pipeline state carried between steps). The bridge side is ``Env.step(x, u)`` on
torch tensors: DLPack in, one jitted call that rebuilds the pipeline state from ``[q, qd]`` and
runs Brax's ``env.step``, DLPack out (observation, reward and done from the same call). The
``VecEnv`` row adds what a training loop pays on top: a fresh batch of start states sampled by
Brax's ``reset`` every step, auto-reset and episode statistics. Compilation is excluded (one
warm-up step each); the sides are timed in interleaved rounds and the fastest round of each is
reported. ``overhead_pct = 100 * (bridge / native - 1)``; the target is <= 25%.

Run: ``python -m diffctl.bench.brax_envs [--num-envs 1024] [--steps 20] [--envs ...]``;
``diffctl bench envs --brax`` calls ``run_brax_bench``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from diffctl.bench.common import BenchResult, set_threads, write_json

if TYPE_CHECKING:
    import torch

__all__ = ["run_brax_bench", "run", "main", "DEFAULT_ENVS"]

DEFAULT_ENVS = ("inverted_pendulum", "reacher")


def _timed_interleaved(
    fns: dict[str, tuple[Callable[[], None], Callable[[], None]]], steps: int, repeat: int
) -> dict[str, tuple[float, float]]:
    """``(wall, cpu)`` seconds per call of each ``(fn, sync)``: one warm-up, then ``repeat``
    rounds timing ``steps`` chained calls of every function in turn; the minimum over rounds.
    Interleaving and the minimum keep other processes' load from favouring one side; the CPU
    time (all threads of this process) is the steadier figure on a shared machine."""
    for fn, sync in fns.values():
        fn()
        sync()
    best = {k: (float("inf"), float("inf")) for k in fns}
    for _ in range(repeat):
        for k, (fn, sync) in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                fn()
            sync()
            wall = (time.perf_counter() - t0) / steps
            cpu = (time.process_time() - c0) / steps
            best[k] = (min(best[k][0], wall), min(best[k][1], cpu))
    return best


def _bench_one(
    name: str, num_envs: int, dev: torch.device, steps: int, repeat: int, seed: int, vec_env: bool
) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import torch
    from brax import envs as brax_envs

    from diffctl.envs import VecEnv, make

    env = make(f"brax:{name}", device=dev)
    g = torch.Generator(device=dev).manual_seed(seed)
    x0 = env.initial_state(num_envs, g)
    u = torch.rand(num_envs, env.spec.act_dim, generator=g, device=dev) * 2 - 1

    # native Brax: jitted vmapped step on its own State, on the same device
    native = brax_envs.get_environment(name)
    jdev = jax.devices("gpu" if dev.type == "cuda" else "cpu")[dev.index or 0]
    keys = jax.device_put(jax.random.split(jax.random.PRNGKey(seed), num_envs), jdev)
    ju = jax.device_put(jnp.asarray(u.cpu().numpy()), jdev)
    step = jax.jit(jax.vmap(native.step))
    holder = {"s": jax.jit(jax.vmap(native.reset))(keys)}

    def native_step() -> None:
        holder["s"] = step(holder["s"], ju)

    # bridge: Env.step (dynamics + observation + reward + termination)
    box = {"x": x0}

    def bridge_step() -> None:
        box["x"] = env.step(box["x"], u)[0]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    fns = {
        "native": (native_step, lambda: jax.block_until_ready(holder["s"])),
        "bridge": (bridge_step, sync),
    }
    if vec_env:
        venv = VecEnv(env, num_envs, device=dev, seed=seed, validate=False)
        venv.reset()
        fns["vecenv"] = (lambda: venv.step(u), sync)
    with torch.no_grad():
        times = _timed_interleaved(fns, steps, repeat)
    (native_s, native_c), (bridge_s, bridge_c) = times["native"], times["bridge"]
    row: dict[str, Any] = {
        "env": name,
        "num_envs": num_envs,
        "device": str(dev),
        "native_ms": 1e3 * native_s,
        "bridge_ms": 1e3 * bridge_s,
        "overhead_pct": 100.0 * (bridge_s / native_s - 1.0),
        "native_cpu_ms": 1e3 * native_c,
        "bridge_cpu_ms": 1e3 * bridge_c,
        "cpu_overhead_pct": 100.0 * (bridge_c / native_c - 1.0),
    }
    if vec_env:
        vec_s = times["vecenv"][0]
        row["vecenv_ms"] = 1e3 * vec_s
        row["vecenv_overhead_pct"] = 100.0 * (vec_s / native_s - 1.0)
    return row


def run_brax_bench(
    num_envs: int = 1024,
    device: str | torch.device = "cpu",
    steps: int = 20,
    *,
    envs: Sequence[str] = DEFAULT_ENVS,
    repeat: int = 5,
    seed: int = 0,
    vec_env: bool = True,
) -> list[dict[str, Any]]:
    """Time native Brax against the bridge; one row per env (milliseconds per batched step).

    Rows: ``env, num_envs, device, native_ms, bridge_ms, overhead_pct`` (wall time),
    ``native_cpu_ms, bridge_cpu_ms, cpu_overhead_pct`` (process CPU time) and, with
    ``vec_env=True``, ``vecenv_ms, vecenv_overhead_pct``. Torch's thread count is whatever the
    caller set (``set_threads``); JAX uses its own thread pool on CPU. Raises ``ImportError``
    (naming the extra) without jax/brax.
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs: expected a positive int, got {num_envs!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    import torch

    from diffctl.envs.brax_bridge import _modules

    _modules()  # version check / clear ImportError before any work
    dev = torch.device(device)
    return [_bench_one(n, num_envs, dev, steps, repeat, seed, vec_env) for n in envs]


def run(argv: Sequence[str] | None = None) -> BenchResult:
    """Parse flags, run, return the ``BenchResult`` (the ``run(argv)`` benchmark protocol)."""
    p = argparse.ArgumentParser(
        prog="python -m diffctl.bench.brax_envs", description=__doc__.split("\n")[0]
    )
    p.add_argument("--num-envs", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-vec-env", action="store_true")
    p.add_argument("--json", default=None, help="write the result to this JSON file")
    args = p.parse_args(list(argv) if argv is not None else None)
    set_threads(args.threads)
    result = BenchResult(name="brax_envs")
    try:
        result.rows = run_brax_bench(
            args.num_envs,
            args.device,
            args.steps,
            envs=args.envs,
            repeat=args.repeat,
            vec_env=not args.no_vec_env,
        )
    except ImportError as e:  # the peer (Brax) itself is missing: say so, never skip silently
        result.notes.append(f"Brax bridge benchmark not run: {e}")
    if args.json:
        write_json(args.json, result.to_dict())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    print(run(argv).table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
