"""``diffctl train ALGO --env NAME [config flags] [--out DIR]``: train a model-free agent.

The config flags are generated with ``tyro`` from the algorithm's frozen config dataclass,
starting from its tuned preset for the env (``diffctl train ppo --env pendulum --help`` lists
them). Writes ``history.json``, ``history.csv``, ``learning_curve.png`` and ``model.pt`` (the
agent with its training state: ``--resume DIR/model.pt`` continues, ``diffctl eval`` reads it)
to ``--out``; shows a progress bar with the latest mean return. Those files must not exist
unless ``--overwrite``; ``--resume`` reads another run's ``model.pt`` (an output never
replaces an input): ``diffctl train ppo --resume runs/a/model.pt --out runs/b``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import sys
from typing import Any

from diffctl.cli._common import (
    ArgumentParser,
    Outputs,
    UsageError,
    blame,
    check_device,
    check_input,
    parse,
    run_command,
)

HELP = "train a model-free agent (reinforce|a2c|ppo|ddpg|td3|sac|dqn|apg|trpo|npg|es|ars) on an env"


def _parser(algos: list[str]) -> argparse.ArgumentParser:
    p = ArgumentParser(
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
    p.add_argument(
        "--overwrite", action="store_true", help="replace the output files if they exist"
    )
    p.add_argument("--debug", action="store_true", help="print a traceback on failure")
    p.add_argument("-h", "--help", action="store_true")
    return p


def _atomic_text(path: str, text: str) -> None:
    from diffctl.data import atomic_write

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
    from diffctl.data import atomic_write

    try:
        atomic_write(paths[2], lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)
    return paths


def _make_env(name: str, device: str | None) -> Any:
    if name.startswith("gym:"):
        try:
            from diffctl.envs import from_gymnasium
        except ImportError as e:
            raise UsageError(
                f"--env: {name!r} needs gymnasium, which is not installed: "
                "pip install 'diffctl[gym]' (also in [all])"
            ) from e
        return from_gymnasium(name[4:])
    from diffctl.envs import make

    return make(name) if device is None else make(name, device=device)


OUTPUT_NAMES = ("model.pt", "history.json", "history.csv", "learning_curve.png")


def main(argv: list[str]) -> int:
    return run_command("train", argv, lambda: _main(argv))


def _check_resume(path: str, algo: str, env: Any) -> None:
    """Refuse a ``--resume`` file that is no agent file, or of another algorithm, env or dims."""
    from diffctl.agents.checkpoint import load_checkpoint

    with blame("--resume"):
        agent, train_state = load_checkpoint(path)
    if agent.algo != algo:
        raise UsageError(f"--resume: {path!r} is a {agent.algo} agent, expected {algo}")
    spec, found = env.spec, agent.spec
    if found.name != spec.name:
        raise UsageError(
            f"--resume: {path!r} was trained on {found.name!r}, expected {spec.name!r}"
        )
    for name in ("obs_dim", "act_dim", "discrete", "num_actions"):
        if getattr(found, name) != getattr(spec, name):
            raise UsageError(
                f"--resume: {path!r} has {name} {getattr(found, name)}, expected "
                f"{getattr(spec, name)} for {spec.name}"
            )
    if train_state is None:
        raise UsageError(f"--resume: {path!r} holds no training state (a saved agent only)")


#: ``diffctl.agents.ALGORITHMS``' names (a test keeps them equal), so that ``--help`` and a bad
#: algorithm name answer before torch is imported
ALGO_NAMES = (
    "reinforce",
    "a2c",
    "ppo",
    "ddpg",
    "td3",
    "sac",
    "dqn",
    "apg",
    "trpo",
    "npg",
    "es",
    "ars",
)


def _main(argv: list[str]) -> int:
    parser = _parser(list(ALGO_NAMES))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    args, rest = parser.parse_known_args(argv)

    from diffctl.configs.agents import config_class, default_config  # no torch: --help is fast

    env_name = args.env or (
        "cartpole"
        if args.algo in ("reinforce", "a2c", "ppo", "dqn", "trpo", "npg", "es")
        else "pendulum"
    )
    cls = config_class(args.algo)
    with blame("--env", usage=True):
        preset = default_config(args.algo, env_name.removeprefix("gym:"))
    if args.help:
        parser.print_help()
        print(f"\nconfig flags of {cls.__name__} (defaults: the preset for {env_name!r}):")
        rest = ["--help"]
    config = parse(cls, rest, prog=f"diffctl train {args.algo}", default=preset)
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads: expected a positive int, got {args.threads}")
    if args.checkpoint_every < 0:
        raise UsageError(f"--checkpoint-every: expected >= 0, got {args.checkpoint_every}")
    out = args.out or os.path.join("runs", f"{args.algo}-{env_name.replace(':', '_')}-s{args.seed}")
    from diffctl.agents import train as train_algo

    created = _prepare_out(out, args, parser.prog)
    try:
        return _train(args, config, env_name, out, train_algo)
    except BaseException:
        for folder in created:  # leave no empty folder behind a failed run
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def _prepare_out(out: str, args: Any, prog: str) -> list[str]:
    """Check the output folder and its files before any work; create the folder (returns the
    folders created, deepest first)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out: {out!r} is a file, expected a folder")
    existing = out
    while not os.path.exists(existing):
        parent = os.path.dirname(existing) or "."
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise UsageError(f"--out: {existing!r} is not a folder")
    outs = Outputs(args.overwrite)
    for name in OUTPUT_NAMES:
        outs.add(f"--out ({name})", os.path.join(out, name))
    check_input("--resume", args.resume)
    check_device("--device", args.device)
    created = []
    folder = os.path.abspath(out)
    while not os.path.exists(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out: cannot create folder {out!r} ({e.strerror or e})") from None
    try:
        outs.check({"--resume": args.resume})
    except BaseException:
        for f in created:
            with contextlib.suppress(OSError):
                os.rmdir(f)
        raise
    return created


def _train(args: Any, config: Any, env_name: str, out: str, train_algo: Any) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model_path = os.path.join(out, "model.pt")
    with blame("--env", usage=True):
        env = _make_env(env_name, args.device)
    if args.resume is not None:
        _check_resume(args.resume, args.algo, env)

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
