"""Advantage actor-critic (A2C: the synchronous variant of Mnih et al. 2016's A3C) with
GAE(lambda) advantages (Schulman et al. 2016).

Each iteration runs ``num_envs`` envs for ``num_steps`` steps, then takes one gradient step on
``-mean(log pi(a|s) A) + vf_coef * mean((V(s) - R)^2) - ent_coef * mean(H[pi(.|s)])``,
where ``A`` and ``R`` come from ``diffctl.data.gae`` (bootstrapping from ``V`` at truncations and
at the end of the window). Everything stays on device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from diffctl.agents.common import (
    Agent,
    Callback,
    IterationLogger,
    TrainResult,
    check_action_space,
    collect_on_policy,
    load_checkpoint,
    restore_runner,
    runner_state,
    seeded_init,
    setup_runner,
)
from diffctl.agents.networks import CategoricalActor, GaussianActor, ValueCritic
from diffctl.agents.reinforce import score_function_loss
from diffctl.data import gae

__all__ = ["A2CConfig", "CONFIG", "PRESETS", "default_config", "make_agent", "train"]


@dataclass(frozen=True)
class A2CConfig:
    """A2C hyperparameters. Defaults: Stable-Baselines3's A2C defaults as rl-zoo runs them on
    CartPole-v1 (8 envs x 5 steps, RMSprop, gamma 0.99, GAE lambda 1, vf_coef 0.5, grad-norm
    0.5, no entropy bonus, no advantage normalisation) with lr 1e-3 instead of 7e-4 decayed
    linearly to 0, which reaches and keeps 500 in 250k steps instead of 500k (seeds 0 and 1)."""

    total_steps: int = 250_000
    num_envs: int = 8
    num_steps: int = 5
    learning_rate: float = 1e-3
    optimizer: str = "rmsprop"
    """rmsprop (alpha 0.99, eps 1e-5, as A3C and SB3) or adam"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the run"""
    gamma: float = 0.99
    gae_lambda: float = 1.0
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    norm_adv: bool = False
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0

    def __post_init__(self) -> None:
        for name in ("total_steps", "num_envs", "num_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer: expected 'rmsprop' or 'adam', got {self.optimizer!r}")
        for name in ("learning_rate", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {getattr(self, name)!r}")
        for name in ("ent_coef", "vf_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)!r}")
        if self.total_steps < self.num_envs * self.num_steps:
            raise ValueError(
                f"total_steps: {self.total_steps} is less than one batch "
                f"({self.num_envs * self.num_steps})"
            )
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer sizes, got {self.hidden!r}")


CONFIG = A2CConfig
PRESETS: dict[str, A2CConfig] = {"cartpole": A2CConfig()}


def default_config(env_name: str) -> A2CConfig:
    return PRESETS.get(env_name, A2CConfig())


def make_agent(spec: Any, config: A2CConfig, seed: int = 0) -> Agent:
    def build() -> Agent:
        if spec.discrete:
            actor = CategoricalActor(
                spec.obs_dim, spec.num_actions, config.hidden, config.activation
            )
        else:
            actor = GaussianActor(
                spec.obs_dim, spec.act_dim, config.hidden, config.activation, config.log_std_init
            )
        critic = ValueCritic(spec.obs_dim, config.hidden, config.activation)
        return Agent("a2c", spec, config, actor, {"critic": critic})

    return seeded_init(seed, build)


def train(
    env: Any,
    config: A2CConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train A2C; arguments as ``diffctl.agents.ppo.train``."""
    runner, cfg = setup_runner(env, config, A2CConfig, default_config, seed, device)
    check_action_space(runner.spec, "a2c", discrete=True, continuous=True)
    dev = runner.device
    agent = make_agent(runner.spec, cfg, seed).to(dev)
    critic = agent.nets["critic"]
    params = list(agent.parameters())
    if cfg.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=0.99, eps=1e-5)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.learning_rate)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    obs = runner.reset(seed=seed)
    batch_size = cfg.num_envs * cfg.num_steps
    num_iterations = cfg.total_steps // batch_size
    # A2C's batches are tiny: one history record (and callback, checkpoint) per ~2048 steps
    log_every = max(1, 2048 // batch_size)
    iteration, history, wall = 0, [], 0.0
    if resume is not None:
        saved, ts = load_checkpoint(resume, map_location=dev)
        if ts is None:
            raise ValueError(f"resume: {os.fspath(resume)!r} holds no training state")
        agent.load_state_dict(saved.state_dict())
        optimizer.load_state_dict(ts["optimizer"])
        gen.set_state(ts["generator"])
        restore_runner(runner, ts["runner"])
        obs = ts["obs"].to(dev)
        iteration, history, wall = ts["iteration"], ts["history"], ts["wall_time"]
    logger = IterationLogger(runner, checkpoint, checkpoint_every, callback, history, wall)

    def snapshot() -> tuple[Agent, dict[str, Any]]:
        return agent, {
            "optimizer": optimizer.state_dict(),
            "generator": gen.get_state(),
            "runner": runner_state(runner),
            "obs": obs,
            "iteration": iteration,
        }

    acc = torch.zeros(4, device=dev)  # policy loss, value loss, entropy, count
    while iteration < num_iterations:
        iteration += 1
        if cfg.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / num_iterations
            optimizer.param_groups[0]["lr"] = frac * cfg.learning_rate
        batch, obs = collect_on_policy(runner, agent, obs, cfg.num_steps, gen)
        values = critic(batch["obs"])
        with torch.no_grad():
            next_values = critic(batch["final_obs"])
            adv, returns = gae(
                batch["rewards"],
                values.detach(),
                next_values,
                batch["terminated"],
                batch["truncated"],
                cfg.gamma,
                cfg.gae_lambda,
                check_finite=False,  # no host sync per update
            )
            if cfg.norm_adv:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        logp, entropy = agent.actor.log_prob_entropy(batch["obs"], batch["actions"])
        pg_loss = score_function_loss(logp, adv)
        v_loss = ((values - returns) ** 2).mean()
        ent = entropy.mean()
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * ent
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        acc += torch.stack(
            [pg_loss.detach(), v_loss.detach(), ent.detach(), torch.ones((), device=dev)]
        )
        last = iteration == num_iterations
        if iteration % log_every == 0 or last:
            mean = acc[:3] / acc[3]
            acc = torch.zeros(4, device=dev)
            losses = dict(zip(("policy_loss", "value_loss", "entropy"), mean))
            if not logger.log(iteration * batch_size, iteration, losses, snapshot, last=last):
                break
    return TrainResult(agent, logger.history)
