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
from torch import Tensor

from diffctl.agents import td3
from diffctl.agents.common import Agent, Callback, TrainResult
from diffctl.agents.offpolicy import soft_update, train_off_policy, validate_off_policy_config

__all__ = ["DDPGConfig", "CONFIG", "PRESETS", "default_config", "make_agent", "train"]


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


def update(
    agent: Agent,
    batch: dict[str, Tensor],
    opts: dict[str, Any],
    cfg: DDPGConfig,
    gen: torch.Generator,
    n_update: int,
) -> dict[str, Tensor]:
    """One DDPG update on ``batch`` (see the module docstring)."""
    actor, nets = agent.actor, agent.nets
    q, q_t = nets["q1"], nets["q1_target"]
    o, a, r, o2 = batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"]
    with torch.no_grad():
        not_done = (~batch["terminated"]).to(r.dtype)
        y = torch.addcmul(r, not_done, q_t(o2, nets["actor_target"](o2)), value=cfg.gamma)
    q_v = q(o, a)
    critic_loss = ((q_v - y) ** 2).mean()
    opts["critic"].zero_grad()
    critic_loss.backward()
    opts["critic"].step()
    out = {"critic_loss": critic_loss.detach(), "q": q_v.detach().mean()}
    if n_update % cfg.policy_frequency == 0:
        actor_loss = -q(o, actor(o)).mean()
        opts["actor"].zero_grad()
        actor_loss.backward(inputs=list(actor.parameters()))  # no critic weight gradients
        opts["actor"].step()
        out["actor_loss"] = actor_loss.detach()
        soft_update([(nets["actor_target"], actor), (q_t, q)], cfg.tau)
    return out


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
        td3.make_optimizers,
        update,
        seed,
        device=device,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        callback=callback,
    )
