"""``diffctl train ALGO --env NAME [config flags] [--out DIR]``: train a model-free agent.

The config flags are generated with ``tyro`` from the algorithm's frozen config dataclass,
starting from its tuned preset for the env (``diffctl train ppo --env pendulum --help`` lists
them). Writes ``history.json``, ``history.csv``, ``learning_curve.png`` and ``model.pt`` (the
agent with its training state: ``--resume DIR/model.pt`` continues, ``diffctl eval`` reads it)
to ``--out``; shows a progress bar with the latest mean return.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from typing import Any

from diffctl.data import atomic_write

HELP = "train a model-free agent (reinforce|a2c|ppo|ddpg|td3|sac|apg) on an env"


def _parser(algos: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diffctl train",
        description="Train ALGO on --env; other flags are the algorithm's config fields "
        "(see 'diffctl train ALGO --env NAME --help').",
        add_help=False,
    )
    p.add_argument("algo", choices=algos)
    p.add_argument(
        "--env",
        default=None,
        help="registered env name, or gym:<id> for a gymnasium env "
        "(default: cartpole for discrete-capable algorithms, else pendulum)",
    )
    p.add_argument("--out", default=None, help="output folder (default runs/ALGO-ENV-sSEED)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device (default: the env's)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=10,
        help="iterations between checkpoints to OUT/model.pt (0: only at the end)",
    )
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-h", "--help", action="store_true")
    return p


def _atomic_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_history(history: list[dict[str, Any]], out: str, title: str) -> list[str]:
    """Write ``history.json``, ``history.csv`` and ``learning_curve.png`` into ``out``."""
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, n) for n in ("history.json", "history.csv", "learning_curve.png")]
    _atomic_text(paths[0], json.dumps(history, indent=1))
    cols: list[str] = []
    for rec in history:
        cols += [k for k in rec if k not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    writer.writerows(history)
    _atomic_text(paths[1], buf.getvalue())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["step"], r["mean_return"]) for r in history if not math.isnan(r["mean_return"])]
    fig, ax = plt.subplots(figsize=(6, 4))
    if pts:
        ax.plot(*zip(*pts), marker=".")
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(paths[2], lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)
    return paths


def _make_env(name: str, device: str | None) -> Any:
    if name.startswith("gym:"):
        from diffctl.envs import from_gymnasium

        return from_gymnasium(name[4:])
    from diffctl.envs import make

    return make(name) if device is None else make(name, device=device)


def main(argv: list[str]) -> int:
    import tyro

    from diffctl.agents import ALGORITHMS, config_class, default_config
    from diffctl.agents import train as train_algo

    parser = _parser(list(ALGORITHMS))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    args, rest = parser.parse_known_args(argv)
    env_name = args.env or ("cartpole" if args.algo in ("reinforce", "a2c", "ppo") else "pendulum")
    cls = config_class(args.algo)
    preset = default_config(args.algo, env_name.removeprefix("gym:"))
    if args.help:
        parser.print_help()
        print(f"\nconfig flags of {cls.__name__} (defaults: the preset for {env_name!r}):")
        rest = ["--help"]
    try:
        config = tyro.cli(cls, args=rest, default=preset, prog=f"diffctl train {args.algo}")
    except SystemExit as e:  # --help or a bad flag (tyro printed the message)
        return int(e.code or 0)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = args.out or os.path.join("runs", f"{args.algo}-{env_name.replace(':', '_')}-s{args.seed}")
    os.makedirs(out, exist_ok=True)
    model_path = os.path.join(out, "model.pt")
    env = _make_env(env_name, args.device)

    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(
            total=config.total_steps,
            unit="step",
            desc=f"{args.algo} {env_name}",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    last_return = [float("nan")]

    def progress(record: dict[str, Any]) -> None:
        if not math.isnan(record["mean_return"]):
            last_return[0] = record["mean_return"]
        if bar is not None:
            bar.n = min(record["step"], config.total_steps)
            bar.set_postfix(ret=f"{last_return[0]:.1f}", refresh=False)
            bar.refresh()

    try:
        result = train_algo(
            args.algo,
            env,
            config,
            args.seed,
            device=args.device,
            checkpoint=model_path,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            callback=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    paths = write_history(result.history, out, f"{args.algo} on {env_name} (seed {args.seed})")
    print(
        f"final mean return {last_return[0]:.2f} after {result.history[-1]['step']} steps "
        f"({result.history[-1]['wall_time']:.1f} s)"
    )
    print("wrote " + ", ".join([model_path, *paths]))
    return 0
