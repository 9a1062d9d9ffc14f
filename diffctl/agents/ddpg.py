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
from dataclasses import dataclass
from typing import Any

import torch

from diffctl.agents import td3
from diffctl.agents.common import Agent, Callback, TrainResult
from diffctl.agents.offpolicy import train_off_policy, validate_off_policy_config

__all__ = [
    "DDPGConfig",
    "CONFIG",
    "PRESETS",
    "default_config",
    "make_agent",
    "make_learner",
    "train",
]


@dataclass(frozen=True)
class DDPGConfig:
    """DDPG hyperparameters: CleanRL's defaults (lr 3e-4, batch 256, tau 0.005, exploration
    noise 0.1, policy delay 2) with 2x64 networks, learning rates 1e-3 and 1000 random warm-up
    steps, tuned here for ``pendulum``."""

    total_steps: int = 10_000
    num_envs: int = 1
    buffer_size: int = 100_000
    batch_size: int = 256
    learning_starts: int = 1_000
    updates_per_step: int = 1
    """gradient steps per vector-env step"""
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    exploration_noise: float = 0.1
    policy_frequency: int = 2
    hidden: tuple[int, ...] = (64, 64)
    log_interval: int = 1_000
    """env steps between history records"""

    def __post_init__(self) -> None:
        validate_off_policy_config(self)
        if not self.exploration_noise >= 0:
            raise ValueError(f"exploration_noise: expected >= 0, got {self.exploration_noise!r}")
        if (
            isinstance(self.policy_frequency, bool)
            or not isinstance(self.policy_frequency, int)
            or self.policy_frequency < 1
        ):
            raise ValueError(
                f"policy_frequency: expected a positive int, got {self.policy_frequency!r}"
            )


CONFIG = DDPGConfig
PRESETS: dict[str, DDPGConfig] = {"pendulum": DDPGConfig()}


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
