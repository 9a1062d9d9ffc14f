"""``diffctl eval MODEL.pt [--episodes N] [--env NAME] [--stochastic]``: evaluate an agent."""

from __future__ import annotations

import argparse
import json

HELP = "evaluate a saved agent (mean and std of the episode return)"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="diffctl eval", description=HELP)
    p.add_argument("model", help="file written by 'diffctl train' or agent.save")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument(
        "--env",
        default=None,
        help="env to run on (default: the one the agent was trained on); "
        "gym:<id> for a gymnasium env",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--stochastic", action="store_true", help="sample actions (default: mode)")
    p.add_argument("--json", default=None, help="also write the result to this JSON file")
    args = p.parse_args(argv)

    from diffctl.agents import evaluate, load
    from diffctl.bench.common import write_json
    from diffctl.cli.train import _make_env

    agent = load(args.model, map_location=args.device)
    env = _make_env(args.env or agent.spec.name, args.device)
    out = evaluate(agent, env, args.episodes, seed=args.seed, deterministic=not args.stochastic)
    print(
        f"{agent.algo} on {args.env or agent.spec.name}: mean return "
        f"{out['mean_return']:.2f} +- {out['std_return']:.2f} over {args.episodes} episodes"
    )
    if args.json:
        write_json(args.json, {"model": args.model, "algo": agent.algo, **out})
    else:
        print(json.dumps({"returns": [round(r, 3) for r in out["returns"]]}))
    return 0
