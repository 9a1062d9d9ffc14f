"""Deep deterministic policy gradient (Lillicrap et al. 2016, "Continuous control with deep
reinforcement learning"), following CleanRL's ``ddpg_continuous_action.py``.

Update (one minibatch ``(o, a, r, o', d)``): critic regression to
``y = r + gamma (1 - d) Q'(o', mu'(o'))`` (Alg. 1); every ``policy_frequency`` updates the
actor ascends ``Q(o, mu(o))`` (the deterministic policy gradient, Silver et al. 2014) and the
target networks are Polyak-averaged with ``tau``. Exploration: Gaussian noise of std
``exploration_noise * scale`` on ``mu(o)`` (CleanRL's choice instead of the paper's
Ornstein-Uhlenbeck process). Shares the agent layout of ``td3`` with a single critic.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from diffctl.agents import td3
from diffctl.agents.common import Agent, Callback, TrainResult
from diffctl.agents.offpolicy import train_off_policy
from diffctl.configs.agents import DDPG_PRESETS as PRESETS
from diffctl.configs.agents import DDPGConfig

__all__ = [
    "DDPGConfig",
    "CONFIG",
    "PRESETS",
    "default_config",
    "make_agent",
    "make_learner",
    "train",
]


CONFIG = DDPGConfig


def default_config(env_name: str) -> DDPGConfig:
    return PRESETS.get(env_name, DDPGConfig())


def make_agent(spec: Any, config: DDPGConfig, seed: int = 0) -> Agent:
    """Actor, one critic and their targets."""
    return td3.make_agent(spec, config, seed, algo="ddpg", twin=False)


def make_learner(agent: Agent, cfg: DDPGConfig) -> td3.TD3Learner:
    """TD3's learner with one critic and no target policy smoothing: the update above."""
    return td3.TD3Learner(agent, cfg, smoothing=False)


def train(
    env: Any,
    config: DDPGConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train DDPG on a continuous-action env; arguments as ``diffctl.agents.ppo.train``."""
    return train_off_policy(
        "ddpg",
        env,
        config,
        DDPGConfig,
        default_config,
        make_agent,
        make_learner,
        seed,
        device=device,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        callback=callback,
    )
