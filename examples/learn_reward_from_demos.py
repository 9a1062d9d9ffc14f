"""Learn a reward from expert demonstrations, then plan with it (pendulum).

``--method mpc``: imitation through the differentiable MPC.

1. An expert (iLQR MPC on the pendulum's true reward) swings the pendulum up from 6 starts.
2. ``mpc_imitation`` learns a quadratic cost (goal and weights, on the wrapped angle) so that
   the MPC's first action matches the expert's at every demo state, by back-propagating the
   imitation loss through the MPC solver (Amos et al. 2018).
3. The MPC with the learned cost controls the pendulum from new starts; its return, measured
   with the true reward, is compared with the expert's.

``--method airl``: adversarial IRL, then re-optimisation (issue #7's acceptance check).

1. The same expert runs 16 episodes from random starts.
2. AIRL (state-only reward ``g(s)``, shaping ``h(s)``, the project's PPO as the inner policy
   learner, 20,480 PPO steps) learns ``f = g(s) + h(s') - h(s)``.
3. The iLQR MPC re-optimises the learned reward (stage cost ``-g``, terminal cost ``-h``;
   ``--reoptimiser ppo``: a fresh PPO agent, 200k steps on ``f``) from 16 new random starts.
   Every return is the true reward's, over 200-step episodes, and the score is
   ``(R - R_random) / (R_expert - R_random)`` (0: uniform-random actions, 1: the expert).
   The script exits 1 when the score is below 0.9 (not with ``--quick``).

    python examples/learn_reward_from_demos.py                 # both methods, minutes on a CPU
    python examples/learn_reward_from_demos.py --method airl   # the AIRL check alone
    python examples/learn_reward_from_demos.py --method airl --reoptimiser ppo
    python examples/learn_reward_from_demos.py --quick         # the CI smoke test (both)
"""

from __future__ import annotations

import argparse

import torch
from diffctl.envs import make

from diffctl.control import MPC, MPCConfig, MPCPolicy, RewardCost
from diffctl.data import rollout
from diffctl.irl import (
    AdversarialConfig,
    MPCImitationConfig,
    ReoptimiseConfig,
    airl_reoptimise,
    mpc_imitation,
)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--method", choices=("mpc", "airl", "all"), default="all")
    parser.add_argument(
        "--reoptimiser", choices=("mpc", "ppo"), default="mpc", help="re-optimises AIRL's reward"
    )
    args = parser.parse_args(argv)
    out: dict[str, float] = {}
    if args.method in ("mpc", "all"):
        out.update(imitation(args.quick))
    if args.method in ("airl", "all"):
        out.update(airl(args.quick, args.reoptimiser))
    return out


def airl(quick: bool, reoptimiser: str) -> dict[str, float]:
    # 16 demos, 20,480 PPO steps of AIRL, 16 new starts, 200-step episodes
    cfg = ReoptimiseConfig(reoptimiser=reoptimiser)
    if quick:
        cfg = ReoptimiseConfig(
            reoptimiser=reoptimiser,
            ppo_steps=2048,
            demo_episodes=2,
            episode_steps=20,
            airl=AdversarialConfig(total_steps=2048, gamma=1.0, disc_batch=64),
            eval_episodes=2,
            horizon=5,
            mpc_iters=3,
        )
    res = airl_reoptimise(cfg)
    print(res.summary())
    if not quick and res.score < 0.9:
        print("AIRL re-optimised: score below 0.9")
        raise SystemExit(1)
    return {"airl_score": res.score, "airl_learned": res.learned_return}


def imitation(quick: bool) -> dict[str, float]:
    env = make("pendulum", dtype=torch.float64)
    horizon, iters = 10, 10
    # cold-started each step, like the imitating MPC, so the true cost reproduces it exactly
    expert = MPCPolicy(
        MPC(env, RewardCost(env), MPCConfig(horizon=horizon, max_iter=iters)), warm_start=False
    )
    n, steps = (2, 10) if quick else (6, 40)
    demos = rollout(env, expert, steps, num_envs=n, generator=torch.Generator().manual_seed(0))
    print(f"{demos.rewards.numel()} expert transitions")

    cfg = MPCImitationConfig(
        iterations=1 if quick else 4, lr=1.0, horizon=horizon, mpc_iters=iters,
        optimizer="lbfgs", angle_dims=(0,),
    )  # fmt: skip
    result = mpc_imitation(env, demos, cfg)
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    print(f"imitation loss {first:.3g} -> {last:.3g} ({first / max(last, 1e-30):.0f}x lower)")

    x0 = env.initial_state(n, torch.Generator().manual_seed(1))
    T = 10 if quick else 100
    expert_ret = rollout(env, expert, T, x0=x0).rewards.sum(0).mean().item()
    learned_ret = rollout(env, result.policy(horizon, iters), T, x0=x0).rewards.sum(0).mean().item()
    print(
        f"return over {T} steps from new starts: expert {expert_ret:.1f}, "
        f"MPC on the learned cost {learned_ret:.1f}"
    )
    return {"mpc_expert": expert_ret, "mpc_learned": learned_ret}


if __name__ == "__main__":
    main()
