"""Train diffctl's PPO on ``brax:ant`` for a short run and check that the returns improve.

The Brax bridge makes the Brax ant a diffctl ``Env``; PPO runs it through ``VecEnv`` (one jitted
JAX call per step for the whole batch, tensors crossing by DLPack). A short run mostly learns to
stop paying the control cost while staying healthy, which is enough to see the mean episode
return rise.

    python examples/brax_ppo_ant.py [--iterations 40] [--num-envs 16]

On a 2-core CPU compiling the ant's step takes about a minute, the run a few more.
"""

from __future__ import annotations

import argparse
import math

import torch
from diffctl.envs import make

from diffctl.agents.ppo import PPOConfig, train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--num-steps", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 iterations only (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.iterations = 2
    torch.set_num_threads(1)

    env = make("brax:ant", max_steps=args.num_steps)  # short episodes: returns every iteration
    config = PPOConfig(
        total_steps=args.iterations * args.num_envs * args.num_steps,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        gamma=0.99,
    )
    result = train(env, config, seed=args.seed)
    returns = [h["mean_return"] for h in result.history if not math.isnan(h["mean_return"])]
    for h in result.history:
        print(f"iteration {h['iteration']:3d}  step {h['step']:6d}  return {h['mean_return']:8.2f}")
    k = max(1, len(returns) // 4)
    first, last = sum(returns[:k]) / k, sum(returns[-k:]) / k
    print(f"mean return: first {k} iterations {first:.2f}, last {k} iterations {last:.2f}")
    return 0 if last > first or args.quick else 1


if __name__ == "__main__":
    raise SystemExit(main())
