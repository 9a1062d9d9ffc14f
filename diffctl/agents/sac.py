"""Soft actor-critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications")
with clipped double-Q targets and automatic entropy tuning (target entropy ``-act_dim``),
following CleanRL's ``sac_continuous_action.py``.

Update (one minibatch ``(o, a, r, o', d)`` from the replay buffer):

- critic: ``y = r + gamma (1 - d) [min_i Q'_i(o', a') - alpha log pi(a'|o')]``, ``a' ~ pi(.|o')``;
  minimise ``sum_i mean_B (Q_i(o, a) - y)^2`` (eq. 5-6);
- actor (every ``policy_frequency`` updates, that many times, as CleanRL):
  minimise ``mean_B [alpha log pi(a~|o) - min_i Q_i(o, a~)]`` with reparameterised ``a~``
  (eq. 7, 11);
- temperature: minimise ``-log alpha * mean_B (log pi(a~|o) + target_entropy)`` (eq. 18);
- targets: Polyak averaging with ``tau``.

The losses are plain autograd code; with ``config.compile`` they run through ``torch.compile``
(``offpolicy.compiled``). The Gaussian noise is drawn outside them, from the run's generator
(the compiler cannot trace a ``torch.Generator``), and passed in.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffctl.agents.agent import Agent, TrainResult, seeded_init
from diffctl.agents.loop import Callback
from diffctl.agents.networks import QCritic, SquashedGaussianActor
from diffctl.agents.offpolicy import SoftUpdate, adam, compiled, frozen, train_off_policy
from diffctl.configs.agents import SAC_PRESETS as PRESETS
from diffctl.configs.agents import SACConfig

__all__ = [
    "SACConfig",
    "CONFIG",
    "PRESETS",
    "default_config",
    "make_agent",
    "make_learner",
    "SACLearner",
    "train",
]


CONFIG = SACConfig


def default_config(env_name: str) -> SACConfig:
    """The tuned preset for ``env_name`` (``PRESETS``; the pendulum defaults otherwise)."""
    return PRESETS.get(env_name, SACConfig())


class _Temperature(nn.Module):
    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(float(alpha)).log())


def make_agent(spec: Any, config: SACConfig, seed: int = 0) -> Agent:
    """The squashed-Gaussian actor, twin critics, their targets and the temperature."""

    def build() -> Agent:
        h = config.hidden
        actor = SquashedGaussianActor(
            spec.obs_dim, spec.act_dim, spec.action_low, spec.action_high, h
        )

        def critic() -> QCritic:
            return QCritic(spec.obs_dim, spec.act_dim, h, layer_norm=config.critic_layer_norm)

        q1, q2, q1_t, q2_t = critic(), critic(), critic(), critic()
        q1_t.load_state_dict(q1.state_dict())
        q2_t.load_state_dict(q2.state_dict())
        nets = {
            "q1": q1,
            "q2": q2,
            "q1_target": q1_t,
            "q2_target": q2_t,
            "temperature": _Temperature(config.alpha),
        }
        return Agent("sac", spec, config, actor, nets)

    return seeded_init(seed, build)


class SACLearner:
    """SAC's update (see the module docstring) on an agent from ``make_agent``. The actor and
    the temperature take one step on the sum of their losses (their gradients are separate:
    each loss treats the other's parameters as constants), with one Adam of two parameter
    groups (``actor_lr``, ``alpha_lr``)."""

    def __init__(self, agent: Agent, cfg: SACConfig) -> None:
        nets = agent.nets
        self.cfg = cfg
        self.actor = agent.actor
        self.q1, self.q2 = nets["q1"], nets["q2"]
        self.q1_target, self.q2_target = nets["q1_target"], nets["q2_target"]
        self.log_alpha = nets["temperature"].log_alpha
        self.log_alpha.requires_grad_(cfg.autotune)
        self.target_entropy = -float(agent.spec.act_dim)
        self.critic_params = [*self.q1.parameters(), *self.q2.parameters()]
        self.critic_opt = adam(self.critic_params, cfg.critic_lr)
        groups = [{"params": list(self.actor.parameters()), "lr": cfg.actor_lr}]
        if cfg.autotune:
            groups.append({"params": [self.log_alpha], "lr": cfg.alpha_lr})
        self.policy_opt = adam(groups, cfg.actor_lr)
        self.optimizers = {"critic": self.critic_opt, "policy": self.policy_opt}
        self.update_targets = SoftUpdate(
            [(self.q1_target, self.q1), (self.q2_target, self.q2)], cfg.tau
        )
        self.critic_loss = compiled(self.critic_loss, cfg.compile)
        self.policy_loss = compiled(self.policy_loss, cfg.compile)

    def critic_loss(
        self, o: Tensor, a: Tensor, r: Tensor, o2: Tensor, not_done: Tensor, eps: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(sum_i mean_B (Q_i(o, a) - y)^2, mean_B Q_1(o, a))`` with the soft clipped
        double-Q target ``y`` (eq. 5-6) of ``a' = actor.rsample(o', eps)``."""
        with torch.no_grad():
            a2, logp2 = self.actor.rsample(o2, eps)
            q_next = torch.minimum(self.q1_target(o2, a2), self.q2_target(o2, a2))
            y = r + self.cfg.gamma * not_done * (q_next - self.log_alpha.exp() * logp2)
        q1, q2 = self.q1(o, a), self.q2(o, a)
        return F.mse_loss(q1, y) + F.mse_loss(q2, y), q1.detach().mean()

    def policy_loss(self, o: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(actor loss + temperature loss, actor loss, mean_B log pi(a~|o))`` with
        ``a~ = actor.rsample(o, eps)``: the actor loss ``mean_B [alpha log pi(a~|o) -
        min_i Q_i(o, a~)]`` (eq. 7, 11) and the temperature loss ``-log alpha mean_B
        (log pi(a~|o) + target_entropy)`` (eq. 18)."""
        a, logp = self.actor.rsample(o, eps)
        q = torch.minimum(self.q1(o, a), self.q2(o, a))
        actor_loss = (self.log_alpha.detach().exp() * logp - q).mean()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        return actor_loss + alpha_loss, actor_loss.detach(), logp.detach().mean()

    def update(
        self, batch: dict[str, Tensor], gen: torch.Generator, n_update: int
    ) -> dict[str, Tensor]:
        """One SAC update on ``batch`` (see the module docstring)."""
        cfg = self.cfg
        o, a, r, o2 = batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"]
        not_done = (~batch["terminated"]).to(r.dtype)

        def noise() -> Tensor:
            return torch.randn(a.shape, generator=gen, device=a.device, dtype=a.dtype)

        critic_loss, q = self.critic_loss(o, a, r, o2, not_done, noise())
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        out = {"critic_loss": critic_loss.detach(), "q": q}
        if n_update % cfg.policy_frequency == 0:
            for _ in range(cfg.policy_frequency):  # delayed but as many actor steps (CleanRL)
                with frozen(self.critic_params):  # the critics are constants here
                    loss, actor_loss, logp = self.policy_loss(o, noise())
                self.policy_opt.zero_grad()
                loss.backward()
                self.policy_opt.step()
            out["actor_loss"] = actor_loss
            out["alpha"] = self.log_alpha.detach().exp()
            out["entropy"] = -logp
        self.update_targets()
        return out


def make_learner(agent: Agent, cfg: SACConfig) -> SACLearner:
    return SACLearner(agent, cfg)


def train(
    env: Any,
    config: SACConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train SAC on a continuous-action env; arguments as ``diffctl.agents.ppo.train``."""
    return train_off_policy(
        "sac",
        env,
        config,
        SACConfig,
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
