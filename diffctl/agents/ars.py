"""Augmented Random Search: basic random search on a linear policy, with ARS's three additions.

Mania, Guy & Recht (2018), "Simple random search of static linear policies is competitive for
reinforcement learning", Algorithm 2. The policy ``a = M s`` (linear, no bias; ``hidden``
gives an MLP instead) is perturbed along ``N`` directions ``d_k = delta_k ~ N(0, I)`` in both
signs, ``M +- nu delta_k``; the ``2N`` perturbed policies run one episode each, all at once as
one ``VecEnv`` of ``2N`` envs (``es.generation_rollout``). The update (Algorithm 2, line 7)::

    M <- M + alpha / (b sigma_R) * sum_{k=1..b} (r(M + nu d_(k)) - r(M - nu d_(k))) d_(k)

uses only the ``b`` directions with the largest ``max(r_k^+, r_k^-)`` (the "-t" variants,
line 6) and divides by ``sigma_R``, the standard deviation of those ``2b`` returns. ARS V2
normalises states, ``a = M diag(Sigma)^(-1/2) (s - mu)`` (line 5), with the mean and
variance of every state the rollouts have visited, updated after each generation (line 8).
``M`` starts at zero (an MLP: its output layer). ``step`` counts the env steps the episodes
actually took.

With ``starts = K > 0`` every perturbed policy runs ``K`` episodes from the same ``K`` start
states and its return is their mean: where the start decides a return more than the
perturbation does (pendulum), one random start per direction would make the top-``b`` choice
pick the directions that drew easy starts.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from diffctl.agents.agent import Agent, TrainResult, seeded_init
from diffctl.agents.es import EvolutionPolicy, generation_rollout, start_run
from diffctl.agents.loop import Callback
from diffctl.configs.agents import ARS_PRESETS as PRESETS
from diffctl.configs.agents import ARSConfig
from diffctl.data import RunningNormalizer

__all__ = ["ARSConfig", "CONFIG", "PRESETS", "ars_step", "default_config", "make_agent", "train"]

CONFIG = ARSConfig


def default_config(env_name: str) -> ARSConfig:
    return PRESETS.get(env_name, ARSConfig())


def make_agent(spec: Any, config: ARSConfig, seed: int = 0) -> Agent:
    def build() -> Agent:
        actor = EvolutionPolicy(spec, config.hidden, config.activation, bias=bool(config.hidden))
        # Algorithm 2, line 1: M_0 = 0; an MLP starts at its output layer 0 (the action 0
        # everywhere, the hidden features random), as ES does
        with torch.no_grad():
            for p in actor.layers[-1].parameters():
                p.zero_()
        norm = RunningNormalizer((spec.obs_dim,)) if config.version == "v2" else None
        return Agent("ars", spec, config, actor, obs_normalizer=norm)

    return seeded_init(seed, build)


def ars_step(
    delta: Tensor, returns_pos: Tensor, returns_neg: Tensor, num_top: int, step_size: float
) -> Tensor:
    """The ARS update of Algorithm 2, lines 6-7, as the change of ``theta``: the ``b = num_top``
    directions of ``delta [N, P]`` with the largest ``max(r^+, r^-)``, weighted by
    ``r^+ - r^-`` and scaled by ``alpha / (b sigma_R)`` (``sigma_R``: the population std of the
    ``2b`` returns kept; 1 when they are all equal)."""
    best = torch.maximum(returns_pos, returns_neg)
    top = best.argsort(descending=True, stable=True)[:num_top]
    kept = torch.cat([returns_pos[top], returns_neg[top]])
    sigma_r = kept.std(correction=0)
    sigma_r = torch.where(sigma_r > 0, sigma_r, torch.ones_like(sigma_r))
    weights = (returns_pos[top] - returns_neg[top]).to(delta.dtype)
    return step_size / (num_top * sigma_r.to(delta.dtype)) * (weights @ delta[top])


def train(
    env: Any,
    config: ARSConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train a policy with ARS on ``env``; other arguments as ``ppo.train``."""
    run = start_run(
        env, config, seed, config_class=ARSConfig, presets=PRESETS, make_agent=make_agent,
        device=device, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
        callback=callback,
    )  # fmt: skip
    cfg, agent, loop, gen, dev = run.config, run.agent, run.loop, run.generator, run.runner.device
    policy, n = agent.actor, cfg.num_directions
    iteration, steps = run.iteration, run.steps
    while iteration < run.num_generations:
        iteration += 1
        # line 4: directions delta_k; policies M +- nu delta_k, all 2N in one batched rollout
        theta = policy.theta
        delta = torch.randn(n, theta.numel(), generator=gen, device=dev, dtype=theta.dtype)
        thetas = torch.cat([theta + cfg.noise * delta, theta - cfg.noise * delta])
        env_seed = int(torch.randint(0, 2**31 - 1, (), generator=gen, device=dev))
        norm = agent.obs_normalizer
        returns, lengths, states = generation_rollout(
            run.runner, policy, thetas, env_seed, run.horizon, norm, cfg.starts
        )
        # lines 6-7: top-b directions, step scaled by the std of their returns
        update = ars_step(delta, returns[:n], returns[n:], cfg.num_top, cfg.step_size)
        policy.set_theta(theta + update)
        if norm is not None:  # line 8: mu, Sigma over every state visited so far (V2)
            norm.update(states.to(norm.mean.dtype))
        run.episodes.add(returns, max(cfg.starts, 1))
        steps += int(lengths.sum())
        losses = {"max_return": float(returns.max()), "step_norm": float(update.norm())}
        state = {"iteration": iteration, "steps": steps}
        last = iteration == run.num_generations
        if not loop.log(steps, iteration, losses, state=state, last=last):
            break
    return loop.result()
