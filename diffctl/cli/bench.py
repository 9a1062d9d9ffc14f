"""``diffctl bench NAME [...]``: ours against the peer on the same work, with ratios.

``diffctl bench all`` runs every benchmark on its defaults (tens of minutes on a CPU);
``diffctl bench all --quick`` runs each on the small settings in ``QUICK`` (a few minutes: a
smoke run whose figures are not the README's). A benchmark that fails is reported with its
error and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import traceback
from collections.abc import Iterator

from diffctl.bench import BENCHES
from diffctl.cli._common import Outputs, UsageError, run_command

HELP = "benchmark ours against the peers: " + "|".join([*BENCHES, "all"])

QUICK: dict[str, list[str]] = {
    "envs": ["--sizes", "64", "4096", "--seconds", "0.3"],
    "mpc": ["--batches", "1,64", "--peer-max-batch", "64", "--repeat", "1",
            "--closed-loop-starts", "8", "--closed-loop-steps", "60"],
    "convex": ["--batch", "16", "--repeat", "1"],
    "ppo": ["--quick", "--eval-episodes", "5"],
    "sac": ["--quick", "--eval-episodes", "3"],
    "dqn": ["--quick", "--eval-episodes", "5"],
    "trpo": ["--quick", "--eval-episodes", "3", "--seeds", "1"],
    "evolution": ["--population", "1024", "--per-policy", "16", "--seeds", "1",
                  "--max-seconds", "60"],
    "irl": ["--iterations", "50"],
    "mbrl": ["--tasks", "pendulum"],
    "mujoco": ["--tasks", "HalfCheetah-v5", "--sizes", "1", "16", "--steps", "5"],
    "humanoid": ["--starts", "2", "--steps", "150", "--push-every", "1.5",
                 "--planners", "sampling,ilqg"],
}  # fmt: skip
"""Arguments of each benchmark under ``diffctl bench all --quick``."""


def _usage() -> str:
    names = "|".join([*BENCHES, "all"])
    return (
        f"usage: diffctl bench {{{names}}} [--json PATH [--overwrite]] [ARGS...]\n"
        "       diffctl bench all [--quick] [--json PATH [--overwrite]]\n"
        "Each benchmark takes its own flags: diffctl bench NAME --help"
    )


def main(argv: list[str]) -> int:
    return run_command("bench", argv, lambda: _main(argv))


@contextlib.contextmanager
def _one_line_argparse() -> Iterator[None]:
    """A benchmark's own argparse error as a ``UsageError`` (one line) instead of its usage."""
    real = argparse.ArgumentParser.error

    def error(self: argparse.ArgumentParser, message: str) -> None:
        raise UsageError(f"{' '.join(message.split())} (see '{self.prog} --help')")

    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = real  # type: ignore[method-assign]


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    from diffctl.bench.common import write_json  # torch: only once a benchmark runs

    name, rest = argv[0], argv[1:]
    overwrite = "--overwrite" in rest
    rest = [a for a in rest if a not in ("--overwrite", "--debug")]
    json_path = None
    if "--json" in rest:
        i = rest.index("--json")
        if i + 1 >= len(rest):
            raise UsageError("--json: needs a path")
        json_path = rest[i + 1]
        rest = rest[:i] + rest[i + 2 :]
        outs = Outputs(overwrite)
        outs.add("--json", json_path, json_path)
        outs.check()
    if name != "all":
        if name not in BENCHES:
            known = ", ".join([*BENCHES, "all"])
            raise UsageError(f"NAME: unknown benchmark {name!r}; known: {known}")
        with _one_line_argparse():
            result = importlib.import_module(f"diffctl.bench.{BENCHES[name]}").run(rest)
        print(result.table(), flush=True)
        if json_path:
            write_json(json_path, result.to_dict())
            print(f"wrote {json_path}")
        return 0

    quick = "--quick" in rest
    unknown = [a for a in rest if a != "--quick"]
    if unknown:
        raise UsageError(f"all: unknown arguments {unknown} (only --quick and --json PATH)")
    results: dict[str, dict] = {}
    failed: list[str] = []
    for n, module_name in BENCHES.items():
        args = QUICK[n] if quick else []
        print(f"== bench {n} {' '.join(args)} ==", flush=True)
        try:
            result = importlib.import_module(f"diffctl.bench.{module_name}").run(args)
        except Exception as e:  # report and go on: `all` shows every benchmark's outcome
            traceback.print_exc()
            print(f"FAILED: bench {n}: {type(e).__name__}: {e}", flush=True)
            results[n] = {"name": n, "error": f"{type(e).__name__}: {e}"}
            failed.append(n)
            continue
        print(result.table(), flush=True)
        results[n] = result.to_dict()
    if json_path:
        write_json(json_path, results)
    print(
        f"bench all: {len(BENCHES) - len(failed)} of {len(BENCHES)} ran"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; wrote {json_path}" if json_path else ""),
        flush=True,
    )
    return 1 if failed else 0
