"""Advantage actor-critic (A2C: the synchronous variant of Mnih et al. 2016's A3C) with
GAE(lambda) advantages (Schulman et al. 2016).

Each iteration runs ``num_envs`` envs for ``num_steps`` steps, then takes one gradient step on
``-mean(log pi(a|s) A) + vf_coef * mean((V(s) - R)^2) - ent_coef * mean(H[pi(.|s)])``,
where ``A`` and ``R`` come from ``diffctl.data.gae`` (bootstrapping from ``V`` at truncations and
at the end of the window). Everything stays on device.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from diffctl.agents.agent import Agent, TrainResult, seeded_init
from diffctl.agents.loop import Callback, TrainLoop
from diffctl.agents.networks import ValueCritic, stochastic_policy
from diffctl.agents.reinforce import score_function_loss
from diffctl.agents.runner import check_action_space, collect_on_policy, setup_runner
from diffctl.configs.agents import A2C_PRESETS as PRESETS
from diffctl.configs.agents import A2CConfig
from diffctl.data import gae

__all__ = ["A2CConfig", "CONFIG", "PRESETS", "default_config", "make_agent", "train"]


CONFIG = A2CConfig


def default_config(env_name: str) -> A2CConfig:
    return PRESETS.get(env_name, A2CConfig())


def make_agent(spec: Any, config: A2CConfig, seed: int = 0) -> Agent:
    def build() -> Agent:
        actor = stochastic_policy(spec, config.hidden, config.activation, config.log_std_init)
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
    runner.reset(seed=seed)
    batch_size = cfg.num_envs * cfg.num_steps
    num_iterations = cfg.total_steps // batch_size
    # A2C's batches are tiny: one history record (and callback, checkpoint) per ~2048 steps
    log_every = max(1, 2048 // batch_size)
    loop = TrainLoop(
        agent,
        runner,
        {"optimizer": optimizer, "generator": gen, "runner": runner},
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        callback=callback,
    )
    iteration = loop.resume(resume, {"iteration": 0})["iteration"]

    acc = torch.zeros(4, device=dev)  # policy loss, value loss, entropy, count
    while iteration < num_iterations:
        iteration += 1
        if cfg.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / num_iterations
            optimizer.param_groups[0]["lr"] = frac * cfg.learning_rate
        traj = collect_on_policy(runner, agent, cfg.num_steps, gen)
        obs, actions = traj.extras["policy_obs"], traj.extras["sample"]
        values = critic(obs)
        with torch.no_grad():
            next_values = critic(traj.next_obs)
            adv, returns = gae(
                traj.rewards,
                values.detach(),
                next_values,
                traj.terminated,
                traj.truncated,
                cfg.gamma,
                cfg.gae_lambda,
                check_finite=False,  # no host sync per update
            )
            if cfg.norm_adv:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        logp, entropy = agent.actor.log_prob_entropy(obs, actions)
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
            state = {"iteration": iteration}
            if not loop.log(iteration * batch_size, iteration, losses, state=state, last=last):
                break
    return loop.result()
