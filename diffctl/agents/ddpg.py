"""Deep deterministic policy gradient (Lillicrap et al. 2016, "Continuous control with deep
reinforcement learning"), following CleanRL's ``ddpg_continuous_action.py``.

Update (one minibatch ``(o, a, r, o', d)``): critic regression to
``y = r + gamma (1 - d) Q'(o', mu'(o'))`` (Alg. 1); every ``policy_frequency`` updates the
actor ascends ``mean_B Q(o, mu(o))`` (the deterministic policy gradient, Silver et al. 2014)
and the target networks are Polyak-averaged with ``tau``. Exploration: Gaussian noise of std
``exploration_noise * scale`` on ``mu(o)`` (CleanRL's choice instead of the paper's
Ornstein-Uhlenbeck process).

The losses are plain autograd code; with ``config.compile`` they run through ``torch.compile``
(``offpolicy.compiled``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from diffctl.agents.agent import Agent, TrainResult, seeded_init
from diffctl.agents.loop import Callback
from diffctl.agents.networks import DeterministicActor, QCritic
from diffctl.agents.offpolicy import SoftUpdate, adam, compiled, frozen, train_off_policy
from diffctl.configs.agents import DDPG_PRESETS as PRESETS
from diffctl.configs.agents import DDPGConfig

__all__ = [
    "DDPGConfig",
    "CONFIG",
    "PRESETS",
    "default_config",
    "make_agent",
    "make_learner",
    "DDPGLearner",
    "train",
]


CONFIG = DDPGConfig


def default_config(env_name: str) -> DDPGConfig:
    return PRESETS.get(env_name, DDPGConfig())


def make_agent(spec: Any, config: DDPGConfig, seed: int = 0) -> Agent:
    """Actor, one critic and their targets."""

    def build() -> Agent:
        h, od, ad = config.hidden, spec.obs_dim, spec.act_dim
        actor = DeterministicActor(od, ad, spec.action_low, spec.action_high, h)
        actor_t = DeterministicActor(od, ad, spec.action_low, spec.action_high, h)
        actor_t.load_state_dict(actor.state_dict())
        q, q_t = QCritic(od, ad, h), QCritic(od, ad, h)
        q_t.load_state_dict(q.state_dict())
        nets = {"actor_target": actor_t, "q1": q, "q1_target": q_t}
        return Agent("ddpg", spec, config, actor, nets, exploration_noise=config.exploration_noise)

    return seeded_init(seed, build)


class DDPGLearner:
    """DDPG's update (see the module docstring) on an agent from ``make_agent``."""

    def __init__(self, agent: Agent, cfg: DDPGConfig) -> None:
        nets = agent.nets
        self.cfg = cfg
        self.actor, self.actor_target = agent.actor, nets["actor_target"]
        self.q, self.q_target = nets["q1"], nets["q1_target"]
        self.critic_params = list(self.q.parameters())
        self.critic_opt = adam(self.critic_params, cfg.critic_lr)
        self.actor_opt = adam(self.actor.parameters(), cfg.actor_lr)
        self.optimizers = {"critic": self.critic_opt, "actor": self.actor_opt}
        pairs = [(self.actor_target, self.actor), (self.q_target, self.q)]
        self.update_targets = SoftUpdate(pairs, cfg.tau)
        self.critic_loss = compiled(self.critic_loss, cfg.compile)
        self.actor_loss = compiled(self.actor_loss, cfg.compile)

    def critic_loss(
        self, o: Tensor, a: Tensor, r: Tensor, o2: Tensor, not_done: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(mean_B (Q(o, a) - y)^2, mean_B Q(o, a))`` with ``y = r + gamma (1 - d)
        Q'(o', mu'(o'))`` (Alg. 1)."""
        with torch.no_grad():
            y = r + self.cfg.gamma * not_done * self.q_target(o2, self.actor_target(o2))
        q = self.q(o, a)
        return F.mse_loss(q, y), q.detach().mean()

    def actor_loss(self, o: Tensor) -> Tensor:
        """``-mean_B Q(o, mu(o))`` (the deterministic policy gradient, Alg. 1)."""
        return -self.q(o, self.actor(o)).mean()

    def update(
        self, batch: dict[str, Tensor], gen: torch.Generator, n_update: int
    ) -> dict[str, Tensor]:
        """One DDPG update on ``batch`` (see the module docstring; ``gen`` is unused: the
        update draws no noise)."""
        cfg = self.cfg
        o, a, r, o2 = batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"]
        not_done = (~batch["terminated"]).to(r.dtype)
        critic_loss, q = self.critic_loss(o, a, r, o2, not_done)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        out = {"critic_loss": critic_loss.detach(), "q": q}
        if n_update % cfg.policy_frequency == 0:
            with frozen(self.critic_params):  # the critic is a constant here
                actor_loss = self.actor_loss(o)
            self.actor_opt.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()
            out["actor_loss"] = actor_loss.detach()
            self.update_targets()
        return out


def make_learner(agent: Agent, cfg: DDPGConfig) -> DDPGLearner:
    return DDPGLearner(agent, cfg)


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
