"""``diffctl bench NAME [...]``: ours against the peer on the same work, with ratios."""

from __future__ import annotations

import importlib
import sys

from diffctl.bench import BENCHES
from diffctl.bench.common import write_json

HELP = "benchmark ours against the peers: " + "|".join([*BENCHES, "all"])


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: diffctl bench {{{'|'.join([*BENCHES, 'all'])}}} [--json PATH] [ARGS...]")
        print("Each benchmark takes its own flags: diffctl bench NAME --help")
        return 0
    name, rest = argv[0], argv[1:]
    json_path = None
    if "--json" in rest:
        i = rest.index("--json")
        if i + 1 >= len(rest):
            print("diffctl bench: --json needs a path", file=sys.stderr)
            return 2
        json_path = rest[i + 1]
        rest = rest[:i] + rest[i + 2 :]
    names = list(BENCHES) if name == "all" else [name]
    for n in names:
        if n not in BENCHES:
            print(
                f"diffctl bench: unknown benchmark {n!r}; known: {', '.join(BENCHES)}, all",
                file=sys.stderr,
            )
            return 2
    results = {}
    for n in names:
        module = importlib.import_module(f"diffctl.bench.{BENCHES[n]}")
        print(f"== bench {n} ==", flush=True)
        result = module.run(rest if name != "all" else [])
        print(result.table(), flush=True)
        results[n] = result.to_dict()
    if json_path:
        write_json(json_path, results if name == "all" else results[name])
        print(f"wrote {json_path}")
    return 0
