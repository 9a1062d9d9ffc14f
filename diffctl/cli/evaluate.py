"""``diffctl eval MODEL.pt [--episodes N] [--env NAME] [--stochastic]``: evaluate an agent."""

from __future__ import annotations

import json
from typing import Any

from diffctl.cli._common import (
    ArgumentParser,
    Outputs,
    UsageError,
    blame,
    check_device,
    check_input,
    raw_value,
    run_command,
)

HELP = "evaluate a saved agent (mean and std of the episode return)"


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="diffctl eval", description=HELP)
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
    p.add_argument("--overwrite", action="store_true", help="replace --json if it exists")
    p.add_argument("--debug", action="store_true", help="print a traceback on failure")
    return p


def _check_env(agent: Any, env: Any, model: str) -> None:
    """Refuse an env whose observation/action layout differs from the agent's."""
    spec, found = env.spec, agent.spec
    for name in ("obs_dim", "act_dim", "discrete", "num_actions"):
        if getattr(found, name) != getattr(spec, name):
            raise UsageError(
                f"--env: {spec.name} has {name} {getattr(spec, name)}, the agent {model!r} "
                f"(trained on {found.name}) {getattr(found, name)}"
            )


def main(argv: list[str]) -> int:
    return run_command("eval", argv, lambda: _main(argv))


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.episodes < 1:
        raise UsageError(f"--episodes: expected a positive int, got {args.episodes}")
    outs = Outputs(args.overwrite)
    if args.json:
        outs.add("--json", args.json, raw_value(argv, "--json"))
    outs.check({"MODEL": args.model})
    check_input("MODEL", args.model)
    check_device("--device", args.device)

    from diffctl.agents import evaluate, load
    from diffctl.bench.common import write_json
    from diffctl.cli.train import _make_env

    with blame("MODEL"):
        agent = load(args.model, map_location=args.device)
    env_name = args.env or agent.spec.name
    with blame("--env", usage=True):
        env = _make_env(env_name, args.device)
    _check_env(agent, env, args.model)
    out = evaluate(agent, env, args.episodes, seed=args.seed, deterministic=not args.stochastic)
    print(
        f"{agent.algo} on {env_name}: mean return "
        f"{out['mean_return']:.2f} +- {out['std_return']:.2f} over {args.episodes} episodes"
    )
    if args.json:
        write_json(args.json, {"model": args.model, "algo": agent.algo, **out})
        print(outs.wrote())
    else:
        print(json.dumps({"returns": [round(r, 3) for r in out["returns"]]}))
    return 0
