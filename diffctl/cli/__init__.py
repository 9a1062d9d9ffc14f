"""The ``diffctl`` command.

Each subcommand lives in its own module ``diffctl/cli/<name>.py`` exposing ``HELP`` (one line)
and ``main(argv: list[str]) -> int``; flags are generated from the algorithms' frozen config
dataclasses with ``tyro``, so a flag and a config field never differ. ``diffctl --help`` reads
the help lines from ``HELP_LINES`` here (a test keeps them equal to the modules' ``HELP``), so it
imports no subcommand module: torch and the rest load only for the command that runs. Shared
behaviour (one-line errors, exit codes, output checks) is in ``diffctl.cli._common``.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["main", "COMMANDS"]

# name -> module under diffctl.cli (imported only when the command runs)
COMMANDS: dict[str, str] = {
    "compare": "compare",
    "collect": "collect",
    "fit": "fit",
    "plan": "plan",
    "mbrl": "mbrl",
    "mbpo": "mbpo",
    "train": "train",
    "eval": "evaluate",
    "irl": "irl",
    "bench": "bench",
}

#: name -> the module's ``HELP`` (kept equal by tests/test_cli_bad_input.py)
HELP_LINES: dict[str, str] = {
    "compare": "run the whole story on one system (collect, fit, plan, train) and print who wins",
    "collect": "run a policy in an env and save the trajectories as an .npz dataset",
    "fit": "fit a dynamics model (linear|mlp|ensemble|greybox) to a dataset and save it",
    "plan": "closed-loop planning in an env: mpc|cem|icem|mppi|shooting, returns and solve times",
    "mbrl": "model-based RL: fit a dynamics model, plan on it with MPC/CEM/MPPI, collect, repeat",
    "mbpo": "model-based policy optimisation: SAC trained on short rollouts of a learned ensemble",
    "train": "train a model-free agent "
    "(reinforce|a2c|ppo|ddpg|td3|sac|dqn|apg|trpo|npg|es|ars) on an env",
    "eval": "evaluate a saved agent (mean and std of the episode return)",
    "irl": "learn a reward from expert demos (maxent|margin|gail|airl|mpc) and save it",
    "bench": "benchmark ours against the peers: ",  # + the names in diffctl.bench.BENCHES
}


def _usage() -> str:
    lines = ["usage: diffctl COMMAND [ARGS...]", "", "commands:"]
    from diffctl.bench import BENCHES  # a dict of names: imports nothing heavy

    for name in COMMANDS:
        help_line = HELP_LINES.get(name, "")
        if name == "bench":
            help_line += "|".join([*BENCHES, "all"])
        lines.append(f"  {name:<9} {help_line}")
    lines += [
        "",
        "Run 'diffctl COMMAND --help' for a command's flags. Every command refuses to replace an",
        "existing output unless --overwrite is given; --debug shows a traceback on failure.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffctl`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from diffctl import __version__

        print(f"diffctl {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        known = ", ".join(COMMANDS)
        print(f"diffctl: error: unknown command {name!r}; known: {known}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"diffctl.cli.{COMMANDS[name]}")
    except Exception as e:  # noqa: BLE001 - e.g. an optional dependency is missing
        if "--debug" in argv:
            raise
        why = str(e) if isinstance(e, ImportError) else f"{type(e).__name__}: {e}"
        print(f"diffctl {name}: error: cannot load the command ({why})", file=sys.stderr)
        return 1
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
