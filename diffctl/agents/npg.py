"""Natural policy gradient (Kakade 2001, "A Natural Policy Gradient"), with the normalised
step size of Rajeswaran et al. 2017 ("Towards Generalization and Simplicity in Continuous
Control", Algorithm 1 / eq. 5) and a GAE(lambda) value critic (Schulman et al. 2016).

Each iteration takes the natural gradient step ``theta <- theta + d`` with
``d = sqrt(2 delta / s^T F s) s`` and ``s ~= F^{-1} g`` (conjugate gradient on Fisher-vector
products): a fixed size ``delta = step_size`` in the KL's quadratic model ``0.5 d^T F d``, not
a fixed ``alpha`` in ``alpha F^{-1} g``, so the step does not grow with the scale of the
advantages. There is no line search: the exact KL of a step may exceed ``delta`` and the
surrogate may drop, which is what TRPO's line search adds. Everything else (rollout, GAE,
critic, normalisation, the loop) is TRPO's: ``train`` runs ``diffctl.agents.trpo.run`` with
this step rule.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from diffctl.agents.agent import Agent, TrainResult
from diffctl.agents.loop import Callback
from diffctl.agents.trpo import build_agent, run
from diffctl.configs.agents import NPG_PRESETS as PRESETS
from diffctl.configs.agents import NPGConfig

__all__ = [
    "NPGConfig",
    "CONFIG",
    "PRESETS",
    "default_config",
    "make_agent",
    "npg_step_rule",
    "train",
]

CONFIG = NPGConfig


def default_config(env_name: str) -> NPGConfig:
    """The tuned preset for ``env_name`` (the generic defaults otherwise)."""
    return PRESETS.get(env_name, NPGConfig())


def make_agent(spec: Any, config: NPGConfig, seed: int = 0) -> Agent:
    return build_agent("npg", spec, config, seed)


def npg_step_rule(config: NPGConfig) -> tuple[float, None]:
    """The whole step on the ``step_size`` boundary of the quadratic KL model, no line search."""
    return config.step_size, None


def train(
    env: Any,
    config: NPGConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train NPG; arguments as ``diffctl.agents.trpo.train``."""
    return run(
        "npg",
        env,
        config,
        seed,
        config_type=NPGConfig,
        default=default_config,
        step_rule=npg_step_rule,
        device=device,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        callback=callback,
    )
