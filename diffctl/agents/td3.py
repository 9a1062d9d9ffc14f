"""Twin delayed DDPG (Fujimoto et al. 2018, "Addressing Function Approximation Error in
Actor-Critic Methods"), following CleanRL's ``td3_continuous_action.py``.

Update (one minibatch ``(o, a, r, o', d)``):

- target policy smoothing: ``a' = clip(mu'(o') + clip(eps, -c, c), low, high)``,
  ``eps ~ N(0, (policy_noise * scale)^2)``, ``c = noise_clip * scale`` (Sec. 5.3, eq. 14);
- clipped double-Q target ``y = r + gamma (1 - d) min_i Q'_i(o', a')`` (Sec. 4.2, eq. 10);
- critics: minimise ``sum_i mean_B (Q_i(o, a) - y)^2``;
- every ``policy_frequency`` updates (delayed policy updates, Sec. 5.2): the actor ascends
  ``mean_B Q_1(o, mu(o))``, then all targets are Polyak-averaged with ``tau``.

Exploration: ``mu(o)`` plus Gaussian noise of std ``exploration_noise * scale``.

The losses are plain autograd code; with ``config.compile`` they run through ``torch.compile``
(``offpolicy.compiled``). The smoothing noise is drawn outside them, from the run's generator
(the compiler cannot trace a ``torch.Generator``), and passed in.
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
from diffctl.configs.agents import TD3_PRESETS as PRESETS
from diffctl.configs.agents import TD3Config

__all__ = [
    "TD3Config",
    "CONFIG",
    "PRESETS",
    "default_config",
    "make_agent",
    "make_learner",
    "TD3Learner",
    "train",
]


CONFIG = TD3Config


def default_config(env_name: str) -> TD3Config:
    return PRESETS.get(env_name, TD3Config())


def make_agent(spec: Any, config: TD3Config, seed: int = 0) -> Agent:
    """Actor, twin critics and their targets."""

    def build() -> Agent:
        h, od, ad = config.hidden, spec.obs_dim, spec.act_dim
        actor = DeterministicActor(od, ad, spec.action_low, spec.action_high, h)
        actor_t = DeterministicActor(od, ad, spec.action_low, spec.action_high, h)
        actor_t.load_state_dict(actor.state_dict())
        nets = {"actor_target": actor_t}
        for name in ("q1", "q2"):
            q, q_t = QCritic(od, ad, h), QCritic(od, ad, h)
            q_t.load_state_dict(q.state_dict())
            nets[name], nets[name + "_target"] = q, q_t
        return Agent("td3", spec, config, actor, nets, exploration_noise=config.exploration_noise)

    return seeded_init(seed, build)


class TD3Learner:
    """TD3's update (see the module docstring) on an agent from ``make_agent``."""

    def __init__(self, agent: Agent, cfg: TD3Config) -> None:
        nets = agent.nets
        self.cfg = cfg
        self.actor, self.actor_target = agent.actor, nets["actor_target"]
        self.q1, self.q2 = nets["q1"], nets["q2"]
        self.q1_target, self.q2_target = nets["q1_target"], nets["q2_target"]
        self.low, self.high = agent.action_low, agent.action_high
        half_range = (agent.action_high - agent.action_low) / 2
        self.smoothing_std = cfg.policy_noise * half_range
        self.smoothing_clip = cfg.noise_clip * half_range
        self.critic_opt = adam([*self.q1.parameters(), *self.q2.parameters()], cfg.critic_lr)
        self.q1_params = list(self.q1.parameters())
        self.actor_opt = adam(self.actor.parameters(), cfg.actor_lr)
        self.optimizers = {"critic": self.critic_opt, "actor": self.actor_opt}
        pairs = [(self.actor_target, self.actor), (self.q1_target, self.q1)]
        self.update_targets = SoftUpdate([*pairs, (self.q2_target, self.q2)], cfg.tau)
        self.critic_loss = compiled(self.critic_loss, cfg.compile)
        self.actor_loss = compiled(self.actor_loss, cfg.compile)

    def critic_loss(
        self, o: Tensor, a: Tensor, r: Tensor, o2: Tensor, not_done: Tensor, eps: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(sum_i mean_B (Q_i(o, a) - y)^2, mean_B Q_1(o, a))`` with the clipped double-Q
        target ``y`` (eq. 10) at the smoothed target action of standard-normal ``eps``
        (eq. 14)."""
        with torch.no_grad():
            smoothing = (eps * self.smoothing_std).clamp(-self.smoothing_clip, self.smoothing_clip)
            a2 = (self.actor_target(o2) + smoothing).clamp(self.low, self.high)
            q_next = torch.minimum(self.q1_target(o2, a2), self.q2_target(o2, a2))
            y = r + self.cfg.gamma * not_done * q_next
        q1, q2 = self.q1(o, a), self.q2(o, a)
        return F.mse_loss(q1, y) + F.mse_loss(q2, y), q1.detach().mean()

    def actor_loss(self, o: Tensor) -> Tensor:
        """``-mean_B Q_1(o, mu(o))`` (the deterministic policy gradient, Sec. 5.2 / Alg. 1)."""
        return -self.q1(o, self.actor(o)).mean()

    def update(
        self, batch: dict[str, Tensor], gen: torch.Generator, n_update: int
    ) -> dict[str, Tensor]:
        """One TD3 update on ``batch`` (see the module docstring)."""
        cfg = self.cfg
        o, a, r, o2 = batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"]
        not_done = (~batch["terminated"]).to(r.dtype)
        eps = torch.randn(a.shape, generator=gen, device=a.device, dtype=a.dtype)
        critic_loss, q = self.critic_loss(o, a, r, o2, not_done, eps)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        out = {"critic_loss": critic_loss.detach(), "q": q}
        if n_update % cfg.policy_frequency == 0:  # delayed policy updates (Sec. 5.2)
            with frozen(self.q1_params):  # the critic is a constant here
                actor_loss = self.actor_loss(o)
            self.actor_opt.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()
            out["actor_loss"] = actor_loss.detach()
            self.update_targets()
        return out


def make_learner(agent: Agent, cfg: TD3Config) -> TD3Learner:
    return TD3Learner(agent, cfg)


def train(
    env: Any,
    config: TD3Config | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train TD3 on a continuous-action env; arguments as ``diffctl.agents.ppo.train``."""
    return train_off_policy(
        "td3",
        env,
        config,
        TD3Config,
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
