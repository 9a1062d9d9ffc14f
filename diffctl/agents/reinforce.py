"""REINFORCE (Williams 1992) with rewards-to-go and an optional learned baseline.

The lecture's "policy gradient with baseline" loop: sample trajectories; fit ``V_psi`` to the
rewards-to-go with a few gradient steps on ``(R_t - V_psi(s_t))^2``; ascend
``J(theta) = mean_t log pi_theta(a_t|s_t) (R_t - V_psi(s_t))``.

Trajectories come from ``num_envs`` auto-resetting envs run for ``num_steps`` steps per
iteration; the steps of the episode left unfinished at the end of a row have no Monte-Carlo
return yet and are masked out of the loss (the episode continues in the next iteration, where
its remaining steps have complete returns). Everything stays on device.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from diffctl.agents.agent import Agent, TrainResult, seeded_init
from diffctl.agents.loop import Callback, TrainLoop
from diffctl.agents.networks import ValueCritic, stochastic_policy
from diffctl.agents.runner import check_action_space, collect_on_policy, setup_runner
from diffctl.configs.agents import REINFORCE_PRESETS as PRESETS
from diffctl.configs.agents import ReinforceConfig
from diffctl.data import rewards_to_go

__all__ = [
    "ReinforceConfig",
    "CONFIG",
    "PRESETS",
    "default_config",
    "score_function_loss",
    "make_agent",
    "train",
]


CONFIG = ReinforceConfig


def default_config(env_name: str) -> ReinforceConfig:
    return PRESETS.get(env_name, ReinforceConfig())


def score_function_loss(log_probs: Tensor, weights: Tensor, mask: Tensor | None = None) -> Tensor:
    """``-mean(log pi(a|s) * w)`` over the (masked) samples: its negative gradient is the
    score-function (likelihood-ratio) estimate ``E[grad log pi(a|s) w]`` of the policy gradient
    (Williams 1992), with ``w`` the rewards-to-go or advantages (treated as constants)."""
    terms = log_probs * weights.detach()
    if mask is None:
        return -terms.mean()
    m = mask.to(terms.dtype)
    return -(terms * m).sum() / m.sum().clamp(min=1.0)


def make_agent(spec: Any, config: ReinforceConfig, seed: int = 0) -> Agent:
    def build() -> Agent:
        actor = stochastic_policy(spec, config.hidden, config.activation, config.log_std_init)
        nets = (
            {"baseline": ValueCritic(spec.obs_dim, config.hidden, config.activation)}
            if config.baseline
            else {}
        )
        return Agent("reinforce", spec, config, actor, nets)

    return seeded_init(seed, build)


def train(
    env: Any,
    config: ReinforceConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train REINFORCE; arguments as ``diffctl.agents.ppo.train``."""
    runner, cfg = setup_runner(env, config, ReinforceConfig, default_config, seed, device)
    check_action_space(runner.spec, "reinforce", discrete=True, continuous=True)
    dev = runner.device
    agent = make_agent(runner.spec, cfg, seed).to(dev)
    pi_opt = torch.optim.Adam(agent.actor.parameters(), lr=cfg.learning_rate)
    v_opt = (
        torch.optim.Adam(agent.nets["baseline"].parameters(), lr=cfg.baseline_lr)
        if cfg.baseline
        else None
    )
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    runner.reset(seed=seed)
    batch_size = cfg.num_envs * cfg.num_steps
    num_iterations = cfg.total_steps // batch_size
    loop = TrainLoop(
        agent,
        runner,
        {"pi_opt": pi_opt, "v_opt": v_opt, "generator": gen, "runner": runner},
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        callback=callback,
    )
    iteration = loop.resume(resume, {"iteration": 0})["iteration"]

    while iteration < num_iterations:
        iteration += 1
        traj = collect_on_policy(runner, agent, cfg.num_steps, gen)
        obs, actions = traj.extras["policy_obs"], traj.extras["sample"]
        done = traj.terminated | traj.truncated
        returns = rewards_to_go(traj.rewards, cfg.gamma, done, check_finite=False)
        # steps of a row's unfinished last episode have no complete return: mask them out
        # (valid[t] = some episode end at or after t, a reverse cumulative max of done)
        valid = done.flip(0).cummax(0).values.flip(0)
        v_loss = torch.zeros((), device=dev)
        if cfg.baseline:
            baseline = agent.nets["baseline"]
            for _ in range(cfg.baseline_epochs):
                v = baseline(obs)
                v_loss = (((returns - v) ** 2) * valid).sum() / valid.sum().clamp(min=1)
                v_opt.zero_grad(set_to_none=True)
                v_loss.backward()
                v_opt.step()
            with torch.no_grad():
                adv = returns - baseline(obs)
        else:
            adv = returns
        if cfg.norm_adv:
            n = valid.sum().clamp(min=1)
            mean = (adv * valid).sum() / n
            std = ((((adv - mean) ** 2) * valid).sum() / n).sqrt()
            adv = (adv - mean) / (std + 1e-8)
        logp, entropy = agent.actor.log_prob_entropy(obs, actions)
        pg_loss = score_function_loss(logp, adv, valid)
        pi_opt.zero_grad(set_to_none=True)
        pg_loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.actor.parameters(), cfg.max_grad_norm)
        pi_opt.step()
        losses = {
            "policy_loss": pg_loss.detach(),
            "value_loss": v_loss.detach(),
            "entropy": entropy.mean().detach(),
        }
        last = iteration == num_iterations
        state = {"iteration": iteration}
        if not loop.log(iteration * batch_size, iteration, losses, state=state, last=last):
            break
    return loop.result()
