"""Learn a cost from expert demonstrations through the differentiable MPC, then plan with it.

1. An expert (iLQR MPC on the pendulum's true reward) swings the pendulum up from 6 starts.
2. ``mpc_imitation`` learns a quadratic cost (goal and weights, on the wrapped angle) so that
   the MPC's first action matches the expert's at every demo state, by back-propagating the
   imitation loss through the MPC solver (Amos et al. 2018).
3. The MPC with the learned cost controls the pendulum from new starts; its return, measured
   with the true reward, is compared with the expert's.

    python examples/learn_reward_from_demos.py           # a few minutes on a CPU
    python examples/learn_reward_from_demos.py --quick   # the CI smoke test
"""

from __future__ import annotations

import argparse

import torch
from diffctl.envs import make

from diffctl.control import MPC, MPCConfig, MPCPolicy, RewardCost
from diffctl.data import rollout
from diffctl.irl import MPCImitationConfig, mpc_imitation


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    args = parser.parse_args(argv)
    env = make("pendulum", dtype=torch.float64)
    horizon, iters = 10, 10
    # cold-started each step, like the imitating MPC, so the true cost reproduces it exactly
    expert = MPCPolicy(
        MPC(env, RewardCost(env), MPCConfig(horizon=horizon, max_iter=iters)), warm_start=False
    )
    n, steps = (2, 10) if args.quick else (6, 40)
    demos = rollout(env, expert, steps, num_envs=n, generator=torch.Generator().manual_seed(0))
    print(f"{demos.rewards.numel()} expert transitions")

    cfg = MPCImitationConfig(
        iterations=1 if args.quick else 4, lr=1.0, horizon=horizon, mpc_iters=iters,
        optimizer="lbfgs", angle_dims=(0,),
    )  # fmt: skip
    result = mpc_imitation(env, demos, cfg)
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    print(f"imitation loss {first:.3g} -> {last:.3g} ({first / max(last, 1e-30):.0f}x lower)")

    x0 = env.initial_state(n, torch.Generator().manual_seed(1))
    T = 10 if args.quick else 100
    expert_ret = rollout(env, expert, T, x0=x0).rewards.sum(0).mean().item()
    learned_ret = rollout(env, result.policy(horizon, iters), T, x0=x0).rewards.sum(0).mean().item()
    print(
        f"return over {T} steps from new starts: expert {expert_ret:.1f}, "
        f"MPC on the learned cost {learned_ret:.1f}"
    )
    return {"expert": expert_ret, "learned": learned_ret}


if __name__ == "__main__":
    main()
