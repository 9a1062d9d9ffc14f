"""Keep gymnasium's MuJoCo humanoid standing under pushes with MJPC's planners (sampling, iLQG).

The lecture notes' seed 000 keeps a humanoid upright by RL with the reward
``-(roll^2 + pitch^2)`` of its torso. Here that reward, plus what standing needs (torso height,
the capture point over the feet, small velocities, a control cost), is planned on the true
model of ``mujoco:Humanoid-v5`` by iLQG (``diffctl.control.ilqg.ILQG``): iterative LQR (Li &
Todorov 2004) re-planned every control step from the shifted plan (Tassa et al. 2012), on
``mjd_transitionFD`` Jacobians of the planning model, controls boxed (Tassa et al. 2014).
Every ~2 s the torso gets a random horizontal velocity kick. A start succeeds when the torso
height stays above 1.0 m and ``|roll|``, ``|pitch|`` below 0.3 rad at every step.

    python examples/humanoid_balance.py [--starts 3] [--steps 1000] [--push-speed 0.5]
    python examples/humanoid_balance.py --planner sampling   # predictive sampling
    python examples/humanoid_balance.py --quick   # the CI smoke test (1 start, 100 steps, 1 push)

``--planner sampling`` plans with ``PredictiveSampling`` (MJPC's sampling planner) instead:
every re-plan rolls all sampled control splines out over the whole horizon in one
multi-threaded ``mujoco.rollout`` call.

Exits 1 when a start fails (not with ``--quick``, whose budget is a smoke test).
"""

from __future__ import annotations

import argparse

import torch

from diffctl.control.humanoid import BalanceConfig, HumanoidStandCost, balance, humanoid_env
from diffctl.control.ilqg import ILQG
from diffctl.control.predictive import PredictiveSampling, PredictiveSamplingConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--push-speed", type=float, default=BalanceConfig.push_speed)
    p.add_argument("--threads", type=int, default=2, help="MuJoCo rollout threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--planner", choices=("ilqg", "sampling"), default="ilqg")
    p.add_argument("--quick", action="store_true", help="1 start, 100 steps (smoke test)")
    args = p.parse_args(argv)
    push_every = BalanceConfig.push_every
    if args.quick:
        args.starts, args.steps, push_every = 1, 100, 0.75
    torch.set_num_threads(1)  # the cost is a few small ops; MuJoCo's rollouts get the cores

    env = humanoid_env(nthread=args.threads)
    cost = HumanoidStandCost(env)
    if args.planner == "ilqg":
        planner: ILQG | PredictiveSampling = ILQG(env, cost.config)
    else:
        planner = PredictiveSampling(
            env, cost, PredictiveSamplingConfig(nthread=args.threads, seed=args.seed)
        )
    ok = 0
    sim = wall = 0.0
    for i in range(args.starts):
        cfg = BalanceConfig(
            steps=args.steps, push_every=push_every, push_speed=args.push_speed, seed=args.seed + i
        )
        r = balance(env, planner, cfg)
        ok += r.success
        sim, wall = sim + r.sim_s, wall + r.wall_s
        status = "stood" if r.success else f"FAILED at step {r.failed_at}"
        print(
            f"start {args.seed + i}: {status}; {r.steps} steps, {r.pushes} push(es); "
            f"min height {r.min_height:.3f} m, max |roll| {r.max_roll:.3f}, "
            f"max |pitch| {r.max_pitch:.3f} rad; real-time factor {r.real_time_factor:.2f}"
        )
    print(
        f"{ok}/{args.starts} starts stood for {args.steps} steps "
        f"({args.steps * env.spec.dt:.1f} s simulated each); "
        f"real-time factor {sim / wall:.2f} ({args.planner}; {args.threads} MuJoCo threads)"
    )
    planner.close()
    return 0 if ok == args.starts or args.quick else 1


if __name__ == "__main__":
    raise SystemExit(main())
