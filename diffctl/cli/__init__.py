"""The ``diffctl`` command.

Each subcommand lives in its own module ``diffctl/cli/<name>.py`` exposing ``HELP`` (one line)
and ``main(argv: list[str]) -> int``; flags are generated from the algorithms' frozen config
dataclasses with ``tyro``, so a flag and a config field never differ.
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
    "train": "train",
    "eval": "evaluate",
    "irl": "irl",
    "bench": "bench",
}


def _usage() -> str:
    lines = ["usage: diffctl COMMAND [ARGS...]", "", "commands:"]
    for name, mod in COMMANDS.items():
        try:
            help_line = importlib.import_module(f"diffctl.cli.{mod}").HELP
        except ImportError as e:  # a command whose module is missing says so
            help_line = f"(unavailable: {e})"
        lines.append(f"  {name:<9} {help_line}")
    lines += ["", "Run 'diffctl COMMAND --help' for a command's flags."]
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
        print(f"diffctl: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"diffctl.cli.{COMMANDS[name]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
