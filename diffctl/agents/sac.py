"""Soft actor-critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications")
with clipped double-Q targets and automatic entropy tuning (target entropy ``-act_dim``),
following CleanRL's ``sac_continuous_action.py``.

Update (one minibatch ``(o, a, r, o', d)`` from the replay buffer):

- critic: ``y = r + gamma (1 - d) [min_i Q'_i(o', a') - alpha log pi(a'|o')]``, ``a' ~ pi(.|o')``;
  minimise ``sum_i (Q_i(o, a) - y)^2`` (eq. 5-6);
- actor (every ``policy_frequency`` updates, that many times, as CleanRL):
  minimise ``alpha log pi(a~|o) - min_i Q_i(o, a~)`` with reparameterised ``a~`` (eq. 7, 11);
- temperature: minimise ``-log alpha * (log pi(a~|o) + target_entropy)`` (eq. 18);
- targets: Polyak averaging with ``tau``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from diffctl.agents.common import Agent, Callback, TrainResult, seeded_init
from diffctl.agents.networks import QCritic, SquashedGaussianActor
from diffctl.agents.offpolicy import adam, soft_update, train_off_policy, validate_off_policy_config

__all__ = ["SACConfig", "CONFIG", "PRESETS", "default_config", "make_agent", "train"]


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters: CleanRL's defaults (actor lr 3e-4, critic lr 1e-3, batch 256,
    tau 0.005, gamma 0.99, policy and alpha updated every 2nd step, autotuned alpha) with
    smaller 2x64 networks and 1000 random warm-up steps, tuned here to pass -200 on
    ``pendulum`` (deterministic evaluation) within 8k env steps."""

    total_steps: int = 8_000
    num_envs: int = 1
    buffer_size: int = 100_000
    batch_size: int = 256
    learning_starts: int = 1_000
    updates_per_step: int = 1
    """gradient steps per vector-env step"""
    actor_lr: float = 3e-4
    critic_lr: float = 1e-3
    alpha_lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    policy_frequency: int = 2
    autotune: bool = True
    alpha: float = 0.2
    """entropy temperature (the initial one when autotuned)"""
    hidden: tuple[int, ...] = (64, 64)
    log_interval: int = 1_000
    """env steps between history records"""

    def __post_init__(self) -> None:
        validate_off_policy_config(self)
        if not self.alpha_lr > 0:
            raise ValueError(f"alpha_lr: expected > 0, got {self.alpha_lr!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha: expected > 0, got {self.alpha!r}")
        if (
            isinstance(self.policy_frequency, bool)
            or not isinstance(self.policy_frequency, int)
            or self.policy_frequency < 1
        ):
            raise ValueError(
                f"policy_frequency: expected a positive int, got {self.policy_frequency!r}"
            )


CONFIG = SACConfig
PRESETS: dict[str, SACConfig] = {"pendulum": SACConfig()}


def default_config(env_name: str) -> SACConfig:
    return PRESETS.get(env_name, SACConfig())


class _Temperature(nn.Module):
    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(float(alpha)).log())


def make_agent(spec: Any, config: SACConfig, seed: int = 0) -> Agent:
    def build() -> Agent:
        h = config.hidden
        actor = SquashedGaussianActor(
            spec.obs_dim, spec.act_dim, spec.action_low, spec.action_high, h
        )
        q1, q2 = QCritic(spec.obs_dim, spec.act_dim, h), QCritic(spec.obs_dim, spec.act_dim, h)
        q1_t, q2_t = QCritic(spec.obs_dim, spec.act_dim, h), QCritic(spec.obs_dim, spec.act_dim, h)
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


def make_optimizers(agent: Agent, cfg: SACConfig) -> dict[str, Any]:
    q_params = [*agent.nets["q1"].parameters(), *agent.nets["q2"].parameters()]
    opts = {
        "actor": adam(agent.actor.parameters(), cfg.actor_lr),
        "critic": adam(q_params, cfg.critic_lr),
    }
    if cfg.autotune:
        opts["alpha"] = adam(agent.nets["temperature"].parameters(), cfg.alpha_lr)
    return opts


def update(
    agent: Agent,
    batch: dict[str, Tensor],
    opts: dict[str, Any],
    cfg: SACConfig,
    gen: torch.Generator,
    n_update: int,
) -> dict[str, Tensor]:
    """One SAC update on ``batch`` (see the module docstring)."""
    actor, nets = agent.actor, agent.nets
    q1, q2, q1_t, q2_t = nets["q1"], nets["q2"], nets["q1_target"], nets["q2_target"]
    log_alpha = nets["temperature"].log_alpha
    target_entropy = -float(agent.spec.act_dim)
    o, a, r, o2 = batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"]
    not_done = (~batch["terminated"]).to(r.dtype)
    with torch.no_grad():
        alpha = log_alpha.exp()
        a2, logp2 = actor.sample(o2, gen)
        q_next = torch.minimum(q1_t(o2, a2), q2_t(o2, a2)) - alpha * logp2
        y = torch.addcmul(r, not_done, q_next, value=cfg.gamma)
    q1_v, q2_v = q1(o, a), q2(o, a)
    critic_loss = ((q1_v - y) ** 2).mean() + ((q2_v - y) ** 2).mean()
    opts["critic"].zero_grad()
    critic_loss.backward()
    opts["critic"].step()
    out = {"critic_loss": critic_loss.detach(), "q": q1_v.detach().mean()}
    if n_update % cfg.policy_frequency == 0:
        # the actor's and the temperature's losses touch disjoint parameters: one backward for
        # both, restricted to them (the critics' weight gradients are not needed)
        params = [*actor.parameters(), log_alpha] if cfg.autotune else [*actor.parameters()]
        for _ in range(cfg.policy_frequency):  # delayed but as many actor steps (CleanRL)
            a_pi, logp = actor.sample(o, gen)
            q_pi = torch.minimum(q1(o, a_pi), q2(o, a_pi))
            actor_loss = (log_alpha.exp().detach() * logp - q_pi).mean()
            loss = actor_loss
            if cfg.autotune:
                alpha_loss = -(log_alpha * (logp.detach() + target_entropy)).mean()
                loss = actor_loss + alpha_loss
                opts["alpha"].zero_grad()
            opts["actor"].zero_grad()
            loss.backward(inputs=params)
            opts["actor"].step()
            if cfg.autotune:
                opts["alpha"].step()
        out["actor_loss"] = actor_loss.detach()
        out["alpha"] = log_alpha.detach().exp()
        out["entropy"] = -logp.detach().mean()
    soft_update([(q1_t, q1), (q2_t, q2)], cfg.tau)
    return out


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
        make_optimizers,
        update,
        seed,
        device=device,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        callback=callback,
    )
