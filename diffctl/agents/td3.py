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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from diffctl.agents.common import Agent, Callback, TrainResult, seeded_init
from diffctl.agents.networks import DeterministicActor, QCritic
from diffctl.agents.offpolicy import adam, soft_update, train_off_policy, validate_off_policy_config

__all__ = ["TD3Config", "CONFIG", "PRESETS", "default_config", "make_agent", "train"]


@dataclass(frozen=True)
class TD3Config:
    """TD3 hyperparameters: CleanRL's / the paper's defaults (lr 3e-4, batch 256, tau 0.005,
    policy noise 0.2 clipped at 0.5, exploration noise 0.1, policy delay 2) with 2x64 networks
    and 1000 random warm-up steps, tuned here for ``pendulum``."""

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
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_frequency: int = 2
    hidden: tuple[int, ...] = (64, 64)
    log_interval: int = 1_000
    """env steps between history records"""

    def __post_init__(self) -> None:
        validate_off_policy_config(self)
        for name in ("exploration_noise", "policy_noise", "noise_clip"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)!r}")
        if (
            isinstance(self.policy_frequency, bool)
            or not isinstance(self.policy_frequency, int)
            or self.policy_frequency < 1
        ):
            raise ValueError(
                f"policy_frequency: expected a positive int, got {self.policy_frequency!r}"
            )


CONFIG = TD3Config
PRESETS: dict[str, TD3Config] = {"pendulum": TD3Config()}


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


def make_optimizers(agent: Agent, cfg: Any) -> dict[str, Any]:
    q_params = [p for k in ("q1", "q2") if k in agent.nets for p in agent.nets[k].parameters()]
    return {
        "actor": adam(agent.actor.parameters(), cfg.actor_lr),
        "critic": adam(q_params, cfg.critic_lr),
    }


def update(
    agent: Agent,
    batch: dict[str, Tensor],
    opts: dict[str, Any],
    cfg: TD3Config,
    gen: torch.Generator,
    n_update: int,
) -> dict[str, Tensor]:
    """One TD3 update on ``batch`` (see the module docstring)."""
    actor, nets = agent.actor, agent.nets
    q1, q2, q1_t, q2_t = nets["q1"], nets["q2"], nets["q1_target"], nets["q2_target"]
    o, a, r, o2 = batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"]
    not_done = (~batch["terminated"]).to(r.dtype)
    scale = (agent.action_high - agent.action_low) / 2
    with torch.no_grad():
        eps = torch.randn(a.shape, generator=gen, device=a.device, dtype=a.dtype)
        noise = (eps * cfg.policy_noise * scale).clamp(
            -cfg.noise_clip * scale, cfg.noise_clip * scale
        )
        a2 = agent.clip_action(nets["actor_target"](o2) + noise)
        y = torch.addcmul(r, not_done, torch.minimum(q1_t(o2, a2), q2_t(o2, a2)), value=cfg.gamma)
    q1_v, q2_v = q1(o, a), q2(o, a)
    critic_loss = ((q1_v - y) ** 2).mean() + ((q2_v - y) ** 2).mean()
    opts["critic"].zero_grad()
    critic_loss.backward()
    opts["critic"].step()
    out = {"critic_loss": critic_loss.detach(), "q": q1_v.detach().mean()}
    if n_update % cfg.policy_frequency == 0:
        actor_loss = -q1(o, actor(o)).mean()
        opts["actor"].zero_grad()
        actor_loss.backward(inputs=list(actor.parameters()))  # no critic weight gradients
        opts["actor"].step()
        out["actor_loss"] = actor_loss.detach()
        soft_update([(nets["actor_target"], actor), (q1_t, q1), (q2_t, q2)], cfg.tau)
    return out


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
        make_optimizers,
        update,
        seed,
        device=device,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        callback=callback,
    )
