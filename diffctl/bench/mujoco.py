"""MuJoCo bridge throughput: ``VecEnv`` on ``mujoco:<Task>-v5`` against raw ``mujoco.rollout``
and gymnasium's ``SyncVectorEnv`` of the same task, and the cost of the Jacobians.

Per task and number of envs ``N``, all three step ``N`` copies of the task with random actions
in the control range, chained, for ``--steps`` steps:

* ``raw``: ``mujoco.rollout.Rollout(nthread)`` on the same model (without the task's sensors),
  ``frame_skip`` substeps per step from the previous step's states, with preallocated outputs
  and the wrapper's checks skipped (the physics alone: no reward, observation or reset);
* ``ours``: ``VecEnv(make("mujoco:<Task>-v5", dtype=...), N)`` (rewards, observations,
  termination, auto-reset and episode statistics included). The default ``--dtype float64``
  keeps MuJoCo's own precision, so ours and the raw rollout follow the same trajectory; float32
  states round the physics every step, which changes the trajectory and, on half-cheetah's
  contacts, costs MuJoCo's solver about 1.5x the time per step (measured);
* ``gymnasium``: ``gymnasium.vector.SyncVectorEnv`` of ``gymnasium.make(Task)``, ``N`` copies.

The sides are timed in interleaved rounds (the fastest round of each is reported), with torch
and MuJoCo on the same ``--threads``. ``jacobian ms`` is ``env.jacobians`` (central
differences over ``2 (n_phys + nu)`` perturbed rows in one rollout) per row at ``N`` rows, and
``mjd ms`` MuJoCo's ``mjd_transitionFD`` (centred) for the ``frame_skip`` substeps of one step
(NaN for RK4 models, which ``mjd_transitionFD`` does not support and ``env.jacobians`` does).

Run: ``diffctl bench mujoco [--tasks HalfCheetah-v5 Humanoid-v5] [--sizes 1 256]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from diffctl.bench.common import BenchResult, set_threads

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["run", "DEFAULT_TASKS"]

HELP = "MuJoCo VecEnv steps/s vs raw mujoco.rollout and gymnasium SyncVectorEnv; Jacobian cost"
DEFAULT_TASKS = ("HalfCheetah-v5", "Humanoid-v5")


def _best_rate(fns: dict[str, Callable[[], None]], steps: int, repeat: int) -> dict[str, float]:
    """Calls per second of each function: one warm-up call, then ``repeat`` interleaved rounds
    of ``steps`` calls each; the fastest round."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, 0.0)
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            best[k] = max(best[k], steps / (time.perf_counter() - t0))
    return best


def _start(env: Any, n: int) -> torch.Tensor:
    """The same ``n`` start states for both our side and the raw one (the task's reset)."""
    import torch

    return env.initial_state(n, torch.Generator().manual_seed(0))


def _actions(env: Any, n: int) -> np.ndarray:
    """The same random actions in the control range, ``[n, nu]``, for every side."""
    import numpy as np
    import torch

    low, high = env.spec.action_bounds(dtype=torch.float64)
    return np.random.default_rng(0).uniform(low.numpy(), high.numpy(), size=(n, env.spec.act_dim))


def _stepper_raw(env: Any, n: int, nthread: int) -> Callable[[], None]:
    import mujoco
    import numpy as np
    from mujoco import rollout

    from diffctl.envs.mujoco_bridge import load_model

    m = load_model(env.model_path) if env.model_path else env.model  # without the sensors
    pool = rollout.Rollout(nthread=nthread)
    datas = [mujoco.MjData(m) for _ in range(nthread)]
    nstate = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    state = np.zeros((n, nstate))
    state[:, 1:] = _start(env, n)[:, env.layout["physics"]].double().numpy()
    fs = env.sim.frame_skip
    ctrl = np.repeat(_actions(env, n)[:, None, :], fs, axis=1)
    out = np.empty((n, fs, nstate))
    sens = np.empty((n, fs, m.nsensordata))
    models = [m] * n
    chunk = max(1, n // (10 * nthread))

    def step() -> None:  # the wrapper's fastest call: outputs given, checks skipped
        pool.rollout(models, datas, state, ctrl, nstep=fs, skip_checks=True, state=out,
                     sensordata=sens, chunk_size=chunk)  # fmt: skip
        state[:] = out[:, -1]

    return step


def _stepper_ours(env: Any, n: int) -> Callable[[], None]:
    import torch

    from diffctl.envs import VecEnv

    venv = VecEnv(env, num_envs=n, seed=0, validate=False)
    venv.reset()
    venv.set_state(_start(env, n))
    u = torch.from_numpy(_actions(env, n)).to(env.dtype)
    return lambda: venv.step(u) and None


def _stepper_gym(env: Any, task: str, n: int) -> Callable[[], None]:
    import gymnasium as gym

    venv = gym.vector.SyncVectorEnv([lambda: gym.make(task) for _ in range(n)])
    venv.reset(seed=0)
    u = _actions(env, n)
    return lambda: venv.step(u) and None


def _jacobian_ms(env: Any, n: int) -> tuple[float, float]:
    """``env.jacobians`` per row at ``n`` rows, and ``mjd_transitionFD`` per step (ms)."""
    import mujoco
    import numpy as np
    import torch

    x = env.initial_state(n, torch.Generator().manual_seed(0))
    u = torch.zeros(n, env.spec.act_dim, dtype=env.dtype)
    env.jacobians(x, u)
    t0 = time.perf_counter()
    env.jacobians(x, u)
    ours = (time.perf_counter() - t0) * 1e3 / n
    m = env.model
    if m.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4:  # mjd_transitionFD refuses RK4
        return ours, float("nan")
    d = mujoco.MjData(m)
    d.qpos[:] = m.qpos0
    nx = 2 * m.nv + m.na
    a, b = np.zeros((nx, nx)), np.zeros((nx, m.nu))
    t0 = time.perf_counter()
    for _ in range(env.sim.frame_skip):
        mujoco.mjd_transitionFD(m, d, 1e-6, True, a, b, None, None)
    return ours, (time.perf_counter() - t0) * 1e3


def run_bench(
    tasks: Sequence[str],
    sizes: Sequence[int],
    steps: int,
    repeat: int,
    nthread: int,
    peer: bool,
    dtype: torch.dtype | None = None,
) -> list[dict[str, Any]]:
    """One row per task and size; ``dtype`` of our states (``None``: ``torch.float64``)."""
    import torch

    from diffctl.envs import make

    dtype = torch.float64 if dtype is None else dtype

    rows = []
    for task in tasks:
        env = make(f"mujoco:{task}", nthread=nthread, dtype=dtype)
        for n in sizes:
            fns = {"raw": _stepper_raw(env, n, nthread), "ours": _stepper_ours(env, n)}
            if peer:
                fns["gym"] = _stepper_gym(env, task, n)
            rates = {k: v * n for k, v in _best_rate(fns, steps, repeat).items()}
            jac, mjd = _jacobian_ms(env, n)
            rows.append(
                {
                    "task": task,
                    "envs": n,
                    "ours steps/s": round(rates["ours"]),
                    "raw rollout steps/s": round(rates["raw"]),
                    "gym steps/s": round(rates["gym"]) if peer else float("nan"),
                    "ours/raw": round(rates["ours"] / rates["raw"], 2),
                    "ours/gym": round(rates["ours"] / rates["gym"], 2) if peer else float("nan"),
                    "jacobian ms/row": round(jac, 2),
                    "mjd ms/step": round(mjd, 2),
                }
            )
    return rows


def run(argv: Sequence[str] | None = None) -> BenchResult:
    """Parse flags, run, return the ``BenchResult`` (the ``run(argv)`` benchmark protocol)."""
    p = argparse.ArgumentParser(prog="diffctl bench mujoco", description=HELP)
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    p.add_argument("--sizes", nargs="+", type=int, default=[1, 256])
    p.add_argument("--steps", type=int, default=20, help="steps per timed round")
    p.add_argument("--repeat", type=int, default=3, help="timed rounds (the fastest counts)")
    p.add_argument("--threads", type=int, default=2, help="torch and MuJoCo threads")
    p.add_argument("--skip-peer", action="store_true", help="leave out gymnasium")
    p.add_argument(
        "--dtype",
        choices=["float64", "float32"],
        default="float64",
        help="our states' dtype (float32 rounds MuJoCo's state every step)",
    )
    args = p.parse_args(list(argv) if argv is not None else None)
    import torch  # only now: --help and a usage error answer without it

    nthread = set_threads(args.threads)
    result = BenchResult(name="mujoco")
    peer = result.peer_available("gymnasium", skip=args.skip_peer)
    dtype = getattr(torch, args.dtype)
    result.rows = run_bench(args.tasks, args.sizes, args.steps, args.repeat, nthread, peer, dtype)
    return result
