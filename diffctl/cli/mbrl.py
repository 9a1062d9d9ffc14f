"""``diffctl mbrl``: model-based RL loop (fit a dynamics model, plan on it, collect, repeat).

Example::

    diffctl mbrl --env pendulum --iterations 9 --target-return -200
    diffctl mbrl --env cartpole-continuous --env-options swing_up=true --model ensemble \\
        --particles 20 --iterations 29

    diffctl mbrl --env mujoco:HalfCheetah-v5 --model ensemble --hidden 200 200 200 \\
        --planner icem --horizon 25 --num-samples 100 --num-elites 10 --plan-iterations 5 \\
        --particles 5 --compile --refit continue --checkpoint hc.ckpt   # interrupt, then:
    diffctl mbrl ... the same flags ... --resume hc.ckpt --checkpoint hc2.ckpt

Flags are the fields of ``diffctl.configs.models.MBRLConfig`` (training flags: its ``fit``
field, a ``FitConfig``, as ``--fit.epochs`` ...) plus ``--out``: when given, the final model is
saved there, with the per-episode history as ``<out>.json``; ``--checkpoint``: the loop's state
after every episode, which ``--resume`` continues (with the same settings; only
``--iterations``, ``--target-return`` and ``--progress`` may change). Prints the return of every
episode.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import tyro

from diffctl.bench.common import format_table
from diffctl.cli._common import (
    Outputs,
    blame,
    check_input,
    parse,
    raw_value,
    refuse_unused,
    run_command,
)
from diffctl.configs.models import MBRLConfig

__all__ = ["MBRLCommandConfig", "main", "HELP"]

HELP = "model-based RL: fit a dynamics model, plan on it with MPC/CEM/MPPI, collect, repeat"


@dataclass(frozen=True)
class MBRLCommandConfig:
    """Flags of ``diffctl mbrl``."""

    config: Annotated[MBRLConfig, tyro.conf.arg(name="")] = MBRLConfig()
    out: Path | None = None
    """save the final model here (and the history as <out>.json)."""
    checkpoint: Path | None = None
    """write the loop's state here after every episode (for --resume)."""
    resume: Path | None = None
    """continue the run checkpointed in this file (same settings)."""
    overwrite: bool = False
    """replace the outputs if they exist (otherwise an existing file is refused)."""
    debug: bool = False
    """print a traceback on failure."""


def main(argv: list[str]) -> int:
    return run_command("mbrl", argv, lambda: _main(argv))


def _main(argv: list[str]) -> int:
    cmd = parse(MBRLCommandConfig, argv, prog="diffctl mbrl", description=HELP)
    c = cmd.config
    reads = {  # which --model / --planner reads each flag (see diffctl.models.mbrl)
        "num_members": ("--model", ("ensemble",)),
        "ts_mode": ("--model", ("ensemble",)),
        "hidden": ("--model", ("mlp", "ensemble")),
        "angle_dims": ("--model", ("mlp", "ensemble")),
        "num_samples": ("--planner", ("cem", "icem", "mppi")),
        "num_elites": ("--planner", ("cem", "icem")),
        "ensemble_elites": ("--model", ("ensemble",)),
        "position_dims": ("--model", ("mlp", "ensemble")),
        "compile": ("--planner", ("cem", "icem", "mppi")),
        "particles": ("--planner", ("cem", "icem", "mppi")),
    }
    refuse_unused(
        c,
        {
            k: f"with {flag} {getattr(c, flag[2:])} (only {'/'.join(only)})"
            for k, (flag, only) in reads.items()
            if getattr(c, flag[2:]) not in only
        },
    )
    outs = Outputs(cmd.overwrite)
    if cmd.out is not None:
        outs.add("--out", cmd.out, raw_value(argv, "--out"))
        outs.add("--out (its .json)", cmd.out.with_suffix(".json"))
    if cmd.checkpoint is not None:
        outs.add("--checkpoint", cmd.checkpoint, raw_value(argv, "--checkpoint"))
    resume = check_input("--resume", cmd.resume)
    outs.check({"--resume": resume})
    from diffctl.data import atomic_write
    from diffctl.envs import make
    from diffctl.models import save_model
    from diffctl.models.mbrl import load_resume, mbrl

    with blame("--env", usage=True):
        env = make(c.env, **c.env_kwargs())
    state = None
    if resume is not None:
        with blame("--resume", usage=True):
            state = load_resume(resume, c, env)
    result = mbrl(c, env=env, checkpoint=cmd.checkpoint, resume=state)
    rows = [
        {
            "iteration": h["iteration"],
            "env_steps": h["env_steps"],
            "return": f"{h['return']:.1f}",
            "eval_return": "-" if h["eval_return"] is None else f"{h['eval_return']:.1f}",
            "model_k_step_nrmse": f"{h.get('model_k_step_nrmse', float('nan')):.3g}",
            "solve_ms": "-" if h["solve_time"] is None else f"{1e3 * h['solve_time']:.0f}",
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
        print(outs.wrote())
    return 0
