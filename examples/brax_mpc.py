"""Balance ``brax:inverted_pendulum`` for a full 1000-step episode with diffctl's iLQR MPC.

The planner differentiates through Brax physics: ``MPC`` linearises the dynamics with the
bridge's ``jacobians`` (one vmapped ``jax.jacfwd`` call) and plans on a quadratic cost that keeps
the cart centred and the pole upright. The Brax env terminates when the pole leaves
``|angle| <= 0.2`` rad; the run succeeds when no termination happens before the time limit.

    python examples/brax_mpc.py [--horizon 15] [--steps 1000]
    python examples/brax_mpc.py --quick   # the CI smoke test (20 steps)

On a 2-core CPU the first steps compile the jitted functions (about a minute), then each MPC
step takes tens of milliseconds.
"""

from __future__ import annotations

import argparse
import time

import torch
from diffctl.envs import VecEnv, make

from diffctl.control import MPC, MPCConfig, MPCPolicy, QuadCost


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--horizon", type=int, default=15)
    p.add_argument("--max-iter", type=int, default=5)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="20 steps only (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = 20
    torch.set_num_threads(1)

    env = make("brax:inverted_pendulum")
    # cost on tau = [cart x, pole angle, cart velocity, pole rate, action]
    C = torch.diag(torch.tensor([1.0, 10.0, 0.1, 0.1, 0.1]))
    mpc = MPC(env, QuadCost(C), MPCConfig(horizon=args.horizon, max_iter=args.max_iter))
    policy = MPCPolicy(mpc)
    venv = VecEnv(env, 1, seed=args.seed, max_steps=args.steps)
    venv.reset()
    t0 = time.perf_counter()
    worst = 0.0
    for t in range(args.steps):
        _, _, term, trunc, info = policy.step(venv)
        worst = max(worst, abs(float(info["final_state"][0, 1])))
        if bool(term[0]):
            print(f"FAILED: the pole fell at step {t + 1} (|angle| > 0.2 rad)")
            return 1
    elapsed = time.perf_counter() - t0
    print(
        f"balanced for {args.steps} steps ({args.steps * env.spec.dt:.0f} s simulated); "
        f"max |pole angle| {worst:.4f} rad; truncated at the limit: {bool(trunc[0])}; "
        f"{elapsed:.1f} s wall, {1e3 * policy.solve_time_per_step():.1f} ms per MPC solve"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
