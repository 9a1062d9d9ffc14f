"""``diffctl compare``: collect, fit, plan, train baselines; one table, results and plots."""

from __future__ import annotations

import sys

import tyro

from diffctl.bench.common import format_table
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


def main(argv: list[str]) -> int:
    config = tyro.cli(CompareConfig, args=_ray_flag(argv), prog="diffctl compare", description=HELP)
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
    print(
        f"results: {result.out}/results.json, results.csv, return_vs_steps.png, "
        f"return_vs_wall.png{state}"
    )
    return 0 if result.completed else 130
