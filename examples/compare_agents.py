"""Train model-free baselines (PPO, SAC, DDPG) on the pendulum and compare them.

Every agent trains on the same batched ``VecEnv`` pendulum and is evaluated on 10 episodes
from the same seeded start states.

    python examples/compare_agents.py           # a few minutes on a CPU
    python examples/compare_agents.py --quick   # the CI smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from diffctl.agents import default_config, evaluate, train

# training steps per agent (the other settings are the tuned presets for the env)
AGENTS = {"ppo": 200_000, "sac": 20_000, "ddpg": 20_000}


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--env", default="pendulum")
    args = parser.parse_args(argv)
    rows = []
    for name, steps in AGENTS.items():
        config = default_config(name, args.env)
        if args.quick:  # one PPO batch; a few hundred off-policy updates
            steps = config.num_envs * config.num_steps if name == "ppo" else 2_000
            if hasattr(config, "learning_starts"):
                config = dataclasses.replace(config, learning_starts=500)
        config = dataclasses.replace(config, total_steps=steps)
        t0 = time.perf_counter()
        result = train(name, args.env, config, seed=0)
        wall = time.perf_counter() - t0
        ev = evaluate(result.agent, args.env, episodes=10, seed=1)
        rows.append(
            {
                "agent": name,
                "steps": steps,
                "wall_s": wall,
                "mean_return": ev["mean_return"],
                "std_return": ev["std_return"],
            }
        )
        print(
            f"{name:5s} {steps:7d} steps {wall:7.1f}s  "
            f"return {ev['mean_return']:8.1f} ± {ev['std_return']:.1f}"
        )
    return rows


if __name__ == "__main__":
    main()
