"""``diffctl mbrl``: model-based RL loop (fit a dynamics model, plan on it, collect, repeat).

Example::

    diffctl mbrl --env pendulum --iterations 9 --target-return -200
    diffctl mbrl --env cartpole-continuous --env-options swing_up=true --model ensemble \\
        --particles 20 --iterations 29

Flags are the fields of ``diffctl.models.mbrl.MBRLConfig`` (training flags: its ``fit`` field,
a ``FitConfig``, as ``--fit.epochs`` ...) plus ``--out``: when given, the final model is saved
there, with the per-episode history as ``<out>.json``. Prints the return of every episode.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import tyro

from diffctl.bench.common import format_table
from diffctl.data import atomic_write
from diffctl.models import save_model
from diffctl.models.mbrl import MBRLConfig, mbrl

__all__ = ["MBRLCommandConfig", "main", "HELP"]

HELP = "model-based RL: fit a dynamics model, plan on it with MPC/CEM/MPPI, collect, repeat"


@dataclass(frozen=True)
class MBRLCommandConfig:
    """Flags of ``diffctl mbrl``."""

    config: Annotated[MBRLConfig, tyro.conf.arg(name="")] = MBRLConfig()
    out: Path | None = None
    """save the final model here (and the history as <out>.json)."""


def main(argv: list[str]) -> int:
    try:
        cmd = tyro.cli(MBRLCommandConfig, args=argv, prog="diffctl mbrl", description=HELP)
    except SystemExit as e:  # --help, or a flag tyro rejected (it printed why)
        return int(e.code or 0)
    except (ValueError, TypeError) as e:  # a field rejected by a config's __post_init__
        print(f"diffctl mbrl: error: {e}", file=sys.stderr)
        return 2
    if cmd.out is not None and not cmd.out.parent.is_dir():
        print(
            f"diffctl mbrl: error: out: directory {str(cmd.out.parent)!r} does not exist",
            file=sys.stderr,
        )
        return 2
    try:
        result = mbrl(cmd.config)
    except (ValueError, TypeError) as e:
        print(f"diffctl mbrl: error: {e}", file=sys.stderr)
        return 2
    rows = [
        {
            "iteration": h["iteration"],
            "env_steps": h["env_steps"],
            "return": f"{h['return']:.1f}",
            "eval_return": "-" if h["eval_return"] is None else f"{h['eval_return']:.1f}",
            "model_k_step_nrmse": f"{h.get('model_k_step_nrmse', float('nan')):.3g}",
            "time_s": f"{h['fit_time'] + h['episode_time']:.1f}",
        }
        for h in result.history
    ]
    print(format_table(rows))
    if cmd.out is not None:
        meta = {"env": cmd.config.env, "source": "states", "mbrl_config": asdict(cmd.config)}
        save_model(cmd.out, result.model, meta)
        text = json.dumps({"history": result.history, "meta": meta}, indent=2, default=str)
        atomic_write(cmd.out.with_suffix(".json"), lambda f: f.write(text.encode()))
        print(f"wrote {cmd.out}")
    return 0
