"""Twin delayed DDPG (Fujimoto et al. 2018, "Addressing Function Approximation Error in
Actor-Critic Methods"), following CleanRL's ``td3_continuous_action.py``.

Update (one minibatch ``(o, a, r, o', d)``):

- target policy smoothing: ``a' = clip(mu'(o') + clip(eps, -c, c), low, high)``,
  ``eps ~ N(0, (policy_noise * scale)^2)``, ``c = noise_clip * scale`` (Sec. 5.3);
- clipped double-Q target ``y = r + gamma (1 - d) min_i Q'_i(o', a')`` (Sec. 4.2, eq. 10);
- critics: minimise ``sum_i (Q_i(o, a) - y)^2``;
- every ``policy_frequency`` updates (delayed policy updates, Sec. 5.2): actor ascends
  ``Q_1(o, mu(o))``, then Polyak-average all targets with ``tau``.

Exploration: ``mu(o)`` plus Gaussian noise of std ``exploration_noise * scale``.

The update runs without autograd (``TD3Learner``: gradients derived by hand, twin critics as one
stacked network; see ``diffctl.agents.offpolicy``), checked against autograd in the tests.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from diffctl.agents.common import Agent, Callback, TrainResult, seeded_init
from diffctl.agents.networks import DeterministicActor, QCritic
from diffctl.agents.offpolicy import (
    Critics,
    FlatTargets,
    ReluMLP,
    adam,
    constant,
    mean,
    train_off_policy,
)
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


def make_agent(
    spec: Any, config: TD3Config, seed: int = 0, algo: str = "td3", twin: bool = True
) -> Agent:
    """Actor, critic(s) and their targets (``twin=False``: DDPG's single critic)."""

    def build() -> Agent:
        h, od, ad = config.hidden, spec.obs_dim, spec.act_dim
        actor = DeterministicActor(od, ad, spec.action_low, spec.action_high, h)
        actor_t = DeterministicActor(od, ad, spec.action_low, spec.action_high, h)
        actor_t.load_state_dict(actor.state_dict())
        nets = {"actor_target": actor_t}
        for name in ("q1", "q2") if twin else ("q1",):
            q, q_t = QCritic(od, ad, h), QCritic(od, ad, h)
            q_t.load_state_dict(q.state_dict())
            nets[name], nets[name + "_target"] = q, q_t
        return Agent(algo, spec, config, actor, nets, exploration_noise=config.exploration_noise)

    return seeded_init(seed, build)


class TD3Learner:
    """TD3's updates (see the module docstring) with hand-derived gradients (``offpolicy``);
    ``twin=False, smoothing=False`` gives DDPG's. The actor loss ``-mean_B Q_1(o, mu(o))``
    with ``mu = scale tanh(z) + bias`` has ``d/dz = -dQ_1/da scale (1 - tanh(z)^2) / B``."""

    def __init__(self, agent: Agent, cfg: Any, smoothing: bool = True) -> None:
        actor, nets = agent.actor, agent.nets
        names = [k for k in ("q1", "q2") if k in nets]
        self.cfg = cfg
        self.smoothing = smoothing
        self.critics = Critics(
            [nets[k].net for k in names],
            [nets[k + "_target"].net for k in names],
            cfg.critic_lr,
            agent.spec.obs_dim,
        )
        self.actor_opt = adam(actor.parameters(), cfg.actor_lr)
        self.optimizers = {"actor": self.actor_opt, "critics": self.critics.optimizer}
        self.actor_polyak = FlatTargets(
            list(nets["actor_target"].parameters()), list(actor.parameters()), self.actor_opt
        )
        self.mu = ReluMLP(actor.net)
        self.mu_target = ReluMLP(nets["actor_target"].net)
        self.scale, self.bias = actor.scale, actor.bias
        self.low, self.high = agent.action_low, agent.action_high
        half_range = (agent.action_high - agent.action_low) / 2
        self.constants: dict[Any, Tensor] = {}
        self.noise_std = agent.exploration_noise * half_range
        if smoothing:
            self.smoothing_std = cfg.policy_noise * half_range
            self.smoothing_clip = cfg.noise_clip * half_range

    def _policy(self, net: ReluMLP, obs: Tensor) -> Tensor:
        """``DeterministicActor.forward`` without autograd: ``scale tanh(z) + bias``."""
        return torch.addcmul(self.bias, torch.tanh(net.forward(obs)[0]), self.scale)

    def explore(self, obs: Tensor, gen: torch.Generator) -> Tensor:
        """``agent.act(obs, deterministic=False, generator=gen)``: ``mu(o)`` plus Gaussian noise."""
        with torch.no_grad():
            a = self._policy(self.mu, obs.to(self.scale.dtype))
            noise = torch.randn(a.shape, generator=gen, device=a.device, dtype=a.dtype)
            return torch.addcmul(a, self.noise_std, noise).clamp(self.low, self.high)

    @torch.no_grad()
    def update(
        self, batch: dict[str, Tensor], gen: torch.Generator, n_update: int
    ) -> dict[str, Tensor]:
        """One TD3 (or DDPG) update on ``batch`` (see the module docstrings)."""
        cfg, critics = self.cfg, self.critics
        o, a, r, o2 = batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"]
        a2 = self._policy(self.mu_target, o2)
        if self.smoothing:  # target policy smoothing (Sec. 5.3)
            eps = torch.randn(a.shape, generator=gen, device=a.device, dtype=a.dtype)
            noise = (eps * self.smoothing_std).clamp(-self.smoothing_clip, self.smoothing_clip)
            a2 = (a2 + noise).clamp(self.low, self.high)
        not_done = (~batch["terminated"]).to(r.dtype)
        q_next = critics.targets_min(torch.cat([o2, a2], -1))
        y = torch.addcmul(r, not_done, q_next, value=cfg.gamma)
        critic_loss, q_mean = critics.step(torch.cat([o, a], -1), y)
        out = {"critic_loss": critic_loss, "q": q_mean}
        if n_update % cfg.policy_frequency == 0:  # delayed policy updates (Sec. 5.2)
            n = o.shape[0]
            inputs: list[Tensor] = []
            z = self.mu.forward(o, inputs)[0]
            t = torch.tanh(z)
            a_mu = torch.addcmul(self.bias, t, self.scale)
            rec: list[Tensor] = []
            q1 = critics.first.forward(torch.cat([o, a_mu], -1), rec)
            ga = critics.first.backward(rec, torch.full_like(q1, -1.0 / n), False, True)[0]
            sech2 = torch.addcmul(constant(self.constants, 1.0, t), t, t, value=-1.0)
            self.mu.backward(inputs, (ga * self.scale * sech2)[None])
            self.actor_opt.step()
            out["actor_loss"] = mean(self.constants, q1).neg_()
            self.actor_polyak.update(cfg.tau)
            critics.polyak.update(cfg.tau)
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
