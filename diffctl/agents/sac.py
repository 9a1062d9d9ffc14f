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

The update runs without autograd (``SACLearner``: gradients derived by hand, twin critics as one
stacked network; see ``diffctl.agents.offpolicy``), checked against autograd in the tests.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from diffctl.agents.common import Agent, Callback, TrainResult, seeded_init
from diffctl.agents.networks import QCritic, SquashedGaussianActor
from diffctl.agents.offpolicy import (
    Critics,
    ReluMLP,
    adam,
    constant,
    mean,
    train_off_policy,
)
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


class SACLearner:
    """SAC's updates (see the module docstring) with hand-derived gradients (``offpolicy``).

    Actor loss per sample, with ``u = mu + sigma eps``, ``a = scale tanh(u) + bias`` and
    ``log pi = sum_j [2 (u + softplus(-2u)) - log sigma - eps^2 / 2] - const``
    (``SquashedGaussianActor.sample``): ``alpha log pi - min_i Q_i(o, a)``, so
    ``d/du = 2 alpha tanh(u) - dQ/da scale (1 - tanh(u)^2)`` and
    ``d/dlog sigma = sigma eps d/du - alpha`` (zero where the clamp of ``log sigma`` is
    active); the min routes the gradient to the smaller critic (ties, of measure zero, to
    ``Q_2``). Temperature: ``d/dlog alpha = -(mean log pi + target_entropy)``.
    """

    def __init__(self, agent: Agent, cfg: SACConfig) -> None:
        actor, nets = agent.actor, agent.nets
        self.cfg = cfg
        self.critics = Critics(
            [nets["q1"].net, nets["q2"].net],
            [nets["q1_target"].net, nets["q2_target"].net],
            cfg.critic_lr,
            agent.spec.obs_dim,
        )
        self.actor_opt = adam(actor.parameters(), cfg.actor_lr)
        self.optimizers = {"actor": self.actor_opt, "critics": self.critics.optimizer}
        self.log_alpha = nets["temperature"].log_alpha
        if cfg.autotune:
            self.optimizers["alpha"] = adam([self.log_alpha], cfg.alpha_lr)
        self.pi = ReluMLP((actor.trunk, actor.act_fn, actor.head))
        self.log_std_min, self.log_std_max = actor.log_std_min, actor.log_std_max
        self.scale, self.bias, self.logp_const = actor.scale, actor.bias, actor._logp_const
        self.low, self.high = agent.action_low, agent.action_high
        self.target_entropy = -float(agent.spec.act_dim)
        self.constants: dict[Any, Tensor] = {}

    def _c(self, value: float, like: Tensor) -> Tensor:
        return constant(self.constants, value, like)

    def _gaussian(
        self, obs: Tensor, gen: torch.Generator, inputs: list[Tensor] | None = None
    ) -> tuple[Tensor, ...]:
        """``(u, eps, sigma, log sigma before and after the clamp)`` of a reparameterised draw
        ``u = mu + sigma eps`` (``SquashedGaussianActor.sample``'s ops)."""
        mu, log_std_raw = self.pi.forward(obs, inputs)[0].chunk(2, -1)
        log_std = log_std_raw.clamp(self.log_std_min, self.log_std_max)
        std = log_std.exp()
        eps = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
        return torch.addcmul(mu, std, eps), eps, std, log_std_raw, log_std

    def _sample(
        self, obs: Tensor, gen: torch.Generator, inputs: list[Tensor] | None = None
    ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """``SquashedGaussianActor.sample`` without autograd (the same log-density in fewer ops):
        ``(action, log_prob, (tanh(u), sigma, eps, log sigma before and after the clamp))``."""
        u, eps, std, log_std_raw, log_std = self._gaussian(obs, gen, inputs)
        # log N(u; mu, sigma) - log(scale (1 - tanh(u)^2)) per dim, up to -logp_const, is
        # 2 log(2 cosh u) - log sigma - eps^2 / 2 = 2 [logaddexp(u, -u) - log sigma / 2 - eps^2 / 4]
        half = torch.addcmul(
            torch.sub(torch.logaddexp(u, -u), log_std, alpha=0.5), eps, eps, value=-0.25
        )
        logp = torch.add(self._c(-self.logp_const, u), half.sum(-1), alpha=2.0)
        t = torch.tanh(u)
        return torch.addcmul(self.bias, t, self.scale), logp, (t, std, eps, log_std_raw, log_std)

    def explore(self, obs: Tensor, gen: torch.Generator) -> Tensor:
        """``agent.act(obs, deterministic=False, generator=gen)`` (no log-density needed)."""
        with torch.no_grad():
            u = self._gaussian(obs.to(self.scale.dtype), gen)[0]
            return torch.addcmul(self.bias, torch.tanh(u), self.scale).clamp(self.low, self.high)

    @torch.no_grad()
    def update(
        self, batch: dict[str, Tensor], gen: torch.Generator, n_update: int
    ) -> dict[str, Tensor]:
        """One SAC update on ``batch`` (see the module docstring)."""
        cfg, critics = self.cfg, self.critics
        o, a, r, o2 = batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"]
        n = o.shape[0]
        alpha = self.log_alpha.exp()
        a2, logp2, _ = self._sample(o2, gen)
        q_next = critics.targets_min(torch.cat([o2, a2], -1)) - alpha * logp2
        not_done = (~batch["terminated"]).to(r.dtype)
        y = torch.addcmul(r, not_done, q_next, value=cfg.gamma)
        critic_loss, q_mean = critics.step(torch.cat([o, a], -1), y)
        out = {"critic_loss": critic_loss, "q": q_mean}
        if n_update % cfg.policy_frequency == 0:
            for _ in range(cfg.policy_frequency):  # delayed but as many actor steps (CleanRL)
                alpha = self.log_alpha.exp()
                inputs: list[Tensor] = []
                a_pi, logp, (t, std, eps, log_std_raw, log_std) = self._sample(o, gen, inputs)
                q, rec = critics.forward(torch.cat([o, a_pi], -1))
                # d/dQ_k of -mean_B min(Q_1, Q_2): -1/B on the smaller critic
                smaller = torch.stack([q[0] < q[1], q[0] >= q[1]])
                ga = critics.action_grad(rec, smaller * self._c(-1.0 / n, q))
                sech2 = torch.addcmul(self._c(1.0, t), t, t, value=-1.0)  # d tanh(u) / du
                g_u = torch.addcmul(t * (alpha * self._c(2.0 / n, t)), ga * self.scale, sech2)
                g_log_std = torch.addcmul(alpha * self._c(-1.0 / n, t), g_u * std, eps)
                g_log_std = g_log_std * (log_std == log_std_raw)  # the clamp's gradient
                grad = torch.cat([g_u, g_log_std], -1)
                self.pi.backward(inputs, grad[None])
                self.actor_opt.step()
                logp_mean = mean(self.constants, logp)
                if cfg.autotune:
                    neg_target = self._c(-self.target_entropy, logp_mean)
                    torch.sub(neg_target, logp_mean, out=self.log_alpha.grad)
                    self.optimizers["alpha"].step()
            q_min = mean(self.constants, torch.minimum(q[0], q[1]))
            out["actor_loss"] = alpha * logp_mean - q_min
            out["alpha"] = self.log_alpha.exp()
            out["entropy"] = -logp_mean
        critics.polyak.update(cfg.tau)
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
