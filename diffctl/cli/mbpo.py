"""``diffctl mbpo``: model-based policy optimisation (SAC trained on learned-model rollouts).

Example::

    diffctl mbpo --env mujoco:HalfCheetah-v5 --target-entropy -3 --eval-episodes 1 \\
        --out hc_mbpo.pt --checkpoint hc_mbpo.ckpt    # interrupt, then:
    diffctl mbpo ... the same flags ... --resume hc_mbpo.ckpt --checkpoint hc_mbpo2.ckpt
    diffctl mbpo --env pendulum --hidden 64 64 --total-steps 3000 --random-steps 400 \\
        --model-train-every 200 --rollouts-per-step 50 --rollout-schedule 0 1 1 1 \\
        --sac.hidden 64 64

Flags are the fields of ``diffctl.configs.models.MBPOConfig`` (the SAC learner's as
``--sac.hidden`` ..., each refit's as ``--fit.epochs`` ...) plus ``--out``: when given, the
trained agent is saved there (``diffctl eval --agent`` reads it), with the per-episode history
as ``<out>.json``; ``--checkpoint``: the run's whole state after every training episode (an
agent file too), which ``--resume`` continues as the uninterrupted run would have (with the same
settings; only ``--progress`` may change). Prints the return of every training episode.
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
from diffctl.configs.models import MBPOConfig

__all__ = ["MBPOCommandConfig", "main", "HELP"]

HELP = "model-based policy optimisation: SAC trained on short rollouts of a learned ensemble"


@dataclass(frozen=True)
class MBPOCommandConfig:
    """Flags of ``diffctl mbpo``."""

    config: Annotated[MBPOConfig, tyro.conf.arg(name="")] = MBPOConfig()
    out: Path | None = None
    """save the trained agent here (and the history as <out>.json)."""
    checkpoint: Path | None = None
    """write the run's state here after every training episode (for --resume)."""
    resume: Path | None = None
    """continue the run checkpointed in this file (same settings)."""
    overwrite: bool = False
    """replace the outputs if they exist (otherwise an existing file is refused)."""
    debug: bool = False
    """print a traceback on failure."""


def main(argv: list[str]) -> int:
    return run_command("mbpo", argv, lambda: _main(argv))


def _main(argv: list[str]) -> int:
    cmd = parse(MBPOCommandConfig, argv, prog="diffctl mbpo", description=HELP)
    c = cmd.config
    scheduled = "in mbpo (--total-steps, --random-steps and --updates-per-step schedule the run)"
    refuse_unused(
        c.sac,
        dict.fromkeys(
            ("total_steps", "num_envs", "buffer_size", "learning_starts", "updates_per_step"),
            scheduled,
        )
        | {"log_interval": "in mbpo (one history row per episode)"},
        prefix="sac.",
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
    from diffctl.models.mbpo import check_resume, mbpo

    with blame("--env", usage=True):
        env = make(c.env, **c.env_kwargs())
    if resume is not None:
        with blame("--resume", usage=True):
            check_resume(resume, c, env)
    result = mbpo(c, env=env, checkpoint=cmd.checkpoint, resume=resume)
    rows = [
        {
            "episode": h["episode"],
            "env_steps": h["env_steps"],
            "return": f"{h['return']:.1f}",
            "eval_return": "-" if h["eval_return"] is None else f"{h['eval_return']:.1f}",
            "model_one_step_nmse": "-"
            if h["model_one_step_nmse"] is None
            else f"{h['model_one_step_nmse']:.3g}",
            "time_s": f"{h['wall_time']:.0f}",
        }
        for h in result.history
    ]
    print(format_table(rows))
    if cmd.out is not None:
        result.agent.save(cmd.out)
        meta = {"env": c.env, "mbpo_config": asdict(c)}
        text = json.dumps({"history": result.history, "meta": meta}, indent=2, default=str)
        atomic_write(cmd.out.with_suffix(".json"), lambda f: f.write(text.encode()))
        print(outs.wrote())
    return 0
