"""``diffctl compare``: collect, fit, plan, train baselines; one table, results and plots."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Annotated

import tyro

from diffctl.bench.common import format_table
from diffctl.cli._common import Outputs, UsageError, blame, check_device, parse, run_command
from diffctl.compare import CompareConfig, compare

HELP = "run the whole story on one system (collect, fit, plan, train) and print who wins"

_COLUMNS = ("env", "method", "return", "env_steps", "wall_s", "solve_ms/step", "notes")


def _ray_flag(argv: list[str]) -> list[str]:
    """``--ray`` with no address means a local cluster."""
    out = list(argv)
    for i, a in enumerate(out):
        if a == "--ray" and (i + 1 == len(out) or out[i + 1].startswith("--")):
            out.insert(i + 1, "local")
            break
    return out


OUTPUT_NAMES = ("results.json", "results.csv", "return_vs_steps.png", "return_vs_wall.png")


@dataclass(frozen=True)
class CompareCommandConfig:
    """Flags of ``diffctl compare``: ``CompareConfig``'s fields and the common ones."""

    config: Annotated[CompareConfig, tyro.conf.arg(name="")] = CompareConfig()
    overwrite: bool = False
    """replace the result files in --out if they exist (otherwise they are refused)."""
    debug: bool = False
    """print a traceback on failure."""


def main(argv: list[str]) -> int:
    return run_command("compare", argv, lambda: _main(argv))


def _main(argv: list[str]) -> int:
    cmd = parse(CompareCommandConfig, _ray_flag(argv), prog="diffctl compare", description=HELP)
    config = cmd.config
    if config.out is not None:  # (the default is a new folder runs/<timestamp>)
        if os.path.exists(config.out) and not os.path.isdir(config.out):
            raise UsageError(f"--out: {config.out!r} is a file, expected a folder")
        outs = Outputs(cmd.overwrite)
        for name in OUTPUT_NAMES:  # compare makes the folder: its nearest existing one is checked
            outs.add(f"--out ({name})", os.path.join(config.out, name), makedirs=True)
        outs.check()
    check_device("--device", config.device)
    from diffctl.envs import make

    for name in config.env:
        with blame("--env", usage=True):
            make(name)
    if config.ray is not None:
        try:
            import ray  # noqa: F401
        except ImportError:
            print(
                "diffctl compare: --ray needs Ray; install it with pip install 'diffctl[ray]'",
                file=sys.stderr,
            )
            return 2
    result = compare(config)
    print(format_table([{k: r[k] for k in _COLUMNS} for r in result.table]))
    for line in result.summary:
        print(line)
    state = "" if result.completed else " (interrupted: finished rows saved)"
    print("wrote " + ", ".join(os.path.join(result.out, n) for n in OUTPUT_NAMES) + state)
    failed = [r for r in result.rows if r.error]
    if failed:
        first = failed[0]
        print(
            f"diffctl compare: error: {len(failed)} of {len(result.rows)} runs failed "
            f"(first: {first.env}/{first.method} seed {first.seed}: {first.error})",
            file=sys.stderr,
        )
        return 1
    return 0 if result.completed else 130
