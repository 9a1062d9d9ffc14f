"""Analytic policy gradient: backpropagate the return through the differentiable env.

The policy ``a = pi_theta(o)`` (deterministic, tanh-squashed into the action box) is rolled out
on ``num_envs`` copies of a pure ``Env`` for ``horizon`` steps with the autograd graph kept
through ``env._dynamics`` and ``env._reward``; the loss is minus the mean discounted return of
that window, ``-(1/H) mean_b sum_t gamma^t r(x_t, pi(o_t), x_{t+1})``, and Adam steps on its exact
gradient. The state is then detached (truncated backpropagation through time) and the next window
continues the same episodes (as in Brax's APG and Xu et al. 2022, "Accelerated policy learning
with parallel differentiable simulation", without the critic). Episodes end at the env's time
limit or termination and restart from fresh start states.

Needs a pure differentiable ``Env`` (a name, an ``Env`` or a ``VecEnv`` whose ``.env`` is used);
gymnasium runners have no gradients and are refused.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from diffctl.agents.agent import Agent, TrainResult, seeded_init
from diffctl.agents.loop import Callback, TrainLoop
from diffctl.agents.networks import DeterministicActor
from diffctl.agents.runner import check_action_space
from diffctl.configs.agents import APG_PRESETS as PRESETS
from diffctl.configs.agents import APGConfig
from diffctl.envs import Env, VecEnv, make

__all__ = ["APGConfig", "CONFIG", "PRESETS", "default_config", "make_agent", "train"]


CONFIG = APGConfig


def default_config(env_name: str) -> APGConfig:
    return PRESETS.get(env_name, APGConfig())


def make_agent(spec: Any, config: APGConfig, seed: int = 0) -> Agent:
    def build() -> Agent:
        actor = DeterministicActor(
            spec.obs_dim,
            spec.act_dim,
            spec.action_low,
            spec.action_high,
            config.hidden,
            config.activation,
        )
        return Agent("apg", spec, config, actor)

    return seeded_init(seed, build)


class _Episodes:
    """On-device episode bookkeeping with ``VecEnv.episode_statistics``'s interface."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.ret = torch.zeros(n, device=device)
        self.t = torch.zeros(n, dtype=torch.int64, device=device)
        self.stats = torch.zeros(2, device=device)  # sum of returns, count

    def episode_statistics(self, clear: bool = True) -> dict[str, Any]:
        s, n = self.stats.tolist()
        if clear:
            self.stats = torch.zeros_like(self.stats)
        return {"count": int(n), "mean_return": s / n if n else float("nan")}

    def state_dict(self) -> dict[str, Any]:
        return {"ret": self.ret, "t": self.t, "stats": self.stats}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ret, self.t, self.stats = (state[k].to(self.ret.device) for k in ("ret", "t", "stats"))


def train(
    env: Any,
    config: APGConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train an APG policy on a differentiable ``env``; other arguments as ``ppo.train``."""
    if isinstance(env, str):
        env = make(env)
    if isinstance(env, VecEnv):
        env = env.env
    if not isinstance(env, Env):
        raise TypeError(
            "env: APG backpropagates through the dynamics and needs a differentiable diffctl "
            f"Env (a name, an Env or a VecEnv), got {type(env).__name__}"
        )
    cfg = config if config is not None else default_config(env.spec.name)
    if not isinstance(cfg, APGConfig):
        raise TypeError(f"config: expected an APGConfig, got {type(cfg).__name__}")
    spec = env.spec
    check_action_space(spec, "apg", discrete=False, continuous=True)
    if device is not None:
        env = env.to(device)
    dev = env.device
    agent = make_agent(spec, cfg, seed).to(dev)
    actor = agent.actor
    optimizer = torch.optim.Adam(actor.parameters(), lr=cfg.learning_rate)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    x = env._initial_state(cfg.num_envs, gen)
    episodes = _Episodes(cfg.num_envs, dev)
    discount = cfg.gamma ** torch.arange(cfg.horizon, device=dev, dtype=env.dtype)
    num_iterations = cfg.total_steps // (cfg.num_envs * cfg.horizon)
    parts = {"optimizer": optimizer, "generator": gen, "episodes": episodes}
    loop = TrainLoop(
        agent,
        episodes,
        parts,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        callback=callback,
    )
    state = loop.resume(resume, {"x": x, "iteration": 0})
    x, iteration = state["x"], state["iteration"]
    while iteration < num_iterations:
        iteration += 1
        rewards = []
        for _ in range(cfg.horizon):
            u = actor(env._observe(x))
            x1 = env._dynamics(x, u)
            r = env._reward(x, u, x1)
            rewards.append(r)
            # episode bookkeeping and auto-reset (start states carry no gradient)
            ret = episodes.ret + r.detach()
            t = episodes.t + 1
            done = env._terminated(x1) | (t >= spec.max_steps)
            donef = done.to(ret.dtype)
            episodes.stats = episodes.stats + torch.stack([(ret * donef).sum(), donef.sum()])
            episodes.ret = torch.where(done, torch.zeros_like(ret), ret)
            episodes.t = torch.where(done, torch.zeros_like(t), t)
            x = torch.where(done[:, None], env._initial_state(cfg.num_envs, gen), x1)
        window_return = torch.tensordot(discount, torch.stack(rewards), dims=([0], [0]))
        loss = -window_return.mean() / cfg.horizon
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(actor.parameters(), cfg.max_grad_norm)
        optimizer.step()
        x = x.detach()  # truncated BPTT: the next window starts from a constant state
        losses = {"loss": loss.detach(), "grad_norm": grad_norm}
        steps = iteration * cfg.num_envs * cfg.horizon
        state = {"x": x, "iteration": iteration}
        if not loop.log(steps, iteration, losses, state=state, last=iteration == num_iterations):
            break
    return loop.result()
