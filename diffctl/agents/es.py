"""OpenAI-ES: evolution strategies with antithetic noise and rank-shaped fitness.

Salimans, Ho, Chen, Sidor & Sutskever (2017), "Evolution strategies as a scalable alternative
to reinforcement learning". The policy's parameters ``theta [P]`` are perturbed by
``sigma * eps_i``, ``eps_i ~ N(0, I)``, in antithetic pairs ``theta +- sigma eps_i``
(``i = 1..N``, the "mirrored sampling" of Sec. 2.2); every one of the ``2N`` perturbed policies
runs one episode, all of them at once as one ``VecEnv`` of ``2N`` envs (one env per
perturbation, the policy applied with per-env weights, ``batched_forward``). Their returns are
replaced by centred ranks in ``[-0.5, 0.5]`` (fitness shaping, Sec. 2.2; Wierstra et al. 2014)
and the gradient of ``E_eps F(theta + sigma eps)`` is estimated as (Eq. 3 with Algorithm 1's
score, antithetic)::

    g = 1 / (2 N sigma) * sum_i (u(F_i^+) - u(F_i^-)) eps_i

Adam ascends ``g - l2 * theta`` (the L2 penalty of the paper's code). The policy is linear
(``hidden=()``) or an MLP; discrete envs take the argmax of its outputs, continuous ones clip
them to the action box. ``step`` counts the env steps the episodes actually took.

This module also holds the pieces ``ars`` shares: ``EvolutionPolicy`` (the flat-parameter
policy and its batched forward), ``generation_rollout`` (one batched episode per perturbation,
or ``starts`` episodes from starts the whole generation shares), ``Episodes`` (the statistics
``TrainLoop`` logs) and ``start_run`` (config, env batch, agent, generator, resume).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from diffctl.agents.agent import Agent, TrainResult, seeded_init
from diffctl.agents.loop import Callback, TrainLoop
from diffctl.configs.agents import ES_PRESETS as PRESETS
from diffctl.configs.agents import ESConfig
from diffctl.data import RunningNormalizer
from diffctl.envs import Env, VecEnv, make

__all__ = [
    "CONFIG",
    "PRESETS",
    "ESConfig",
    "EvolutionPolicy",
    "EvolutionRun",
    "centred_ranks",
    "default_config",
    "es_gradient",
    "generation_rollout",
    "make_agent",
    "start_run",
    "train",
]

CONFIG = ESConfig

_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "elu": nn.functional.elu}


def default_config(env_name: str) -> ESConfig:
    return PRESETS.get(env_name, ESConfig())


# ------------------------------------------------------------------ policy
class EvolutionPolicy(nn.Module):
    """A linear (``hidden=()``) or MLP policy whose parameters are one flat vector ``theta``.

    ``mode(obs)`` is the policy of the agent (argmax for discrete actions, the outputs clipped
    to the box for continuous ones); ``batched_forward(thetas [B, P], obs [B, obs_dim])`` applies
    ``B`` different parameter vectors, one per row of ``obs``, as batched matmuls.
    """

    def __init__(
        self, spec: Any, hidden: tuple[int, ...], activation: str, bias: bool = True
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        self.discrete = bool(spec.discrete)
        out = spec.num_actions if self.discrete else spec.act_dim
        sizes = [spec.obs_dim, *hidden, out]
        self.layers = nn.ModuleList(
            nn.Linear(i, o, bias=bias) for i, o in zip(sizes[:-1], sizes[1:])
        )
        self.activation = activation
        if not self.discrete:
            low, high = spec.action_bounds()
            self.register_buffer("low", low)
            self.register_buffer("high", high)

    @property
    def theta(self) -> Tensor:
        """The parameters as one vector ``[P]`` (a copy)."""
        return torch.cat([p.detach().reshape(-1) for p in self.parameters()])

    @torch.no_grad()
    def set_theta(self, theta: Tensor) -> None:
        i = 0
        for p in self.parameters():
            p.copy_(theta[i : i + p.numel()].view_as(p))
            i += p.numel()

    def _act(self, out: Tensor) -> Tensor:
        if self.discrete:
            return out.argmax(-1)
        return torch.maximum(torch.minimum(out, self.high.to(out.dtype)), self.low.to(out.dtype))

    def forward(self, obs: Tensor) -> Tensor:
        h = obs
        act = _ACTIVATIONS[self.activation]
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < len(self.layers) - 1:
                h = act(h)
        return h

    def mode(self, obs: Tensor) -> Tensor:
        return self._act(self(obs))

    def batched_forward(self, thetas: Tensor, obs: Tensor) -> Tensor:
        """Actions of policy ``thetas[b]`` at ``obs[b]`` for every ``b`` (one batched matmul
        per layer: ``h_b <- act(W_b h_b + c_b)``)."""
        h, i = obs.to(thetas.dtype), 0
        act = _ACTIVATIONS[self.activation]
        for k, layer in enumerate(self.layers):
            o, n_in = layer.out_features, layer.in_features
            w = thetas[:, i : i + o * n_in].reshape(-1, o, n_in)
            i += o * n_in
            h = torch.einsum("boi,bi->bo", w, h)
            if layer.bias is not None:
                h = h + thetas[:, i : i + o]
                i += o
            if k < len(self.layers) - 1:
                h = act(h)
        return self._act(h)


def make_agent(spec: Any, config: ESConfig, seed: int = 0) -> Agent:
    def build() -> Agent:
        actor = EvolutionPolicy(spec, config.hidden, config.activation)
        # zero output layer: every action equally likely to win under the first perturbations
        # (a random one can favour one action so strongly that sigma-noise never flips it)
        with torch.no_grad():
            for p in actor.layers[-1].parameters():
                p.zero_()
        norm = RunningNormalizer((spec.obs_dim,)) if config.normalize_obs else None
        return Agent("es", spec, config, actor, obs_normalizer=norm)

    return seeded_init(seed, build)


# ------------------------------------------------------------------ generation rollout
class Episodes:
    """The returns of the last generation(s), with ``VecEnv.episode_statistics``'s interface."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, returns: Tensor, episodes_each: int = 1) -> None:
        """Count ``returns``, each the mean return of ``episodes_each`` episodes."""
        self.total += float(returns.sum()) * episodes_each
        self.count += returns.numel() * episodes_each

    def episode_statistics(self, clear: bool = True) -> dict[str, Any]:
        out = {
            "count": self.count,
            "mean_return": self.total / self.count if self.count else float("nan"),
        }
        if clear:
            self.total, self.count = 0.0, 0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total, self.count = float(state["total"]), int(state["count"])


def make_vec_env(env: Any, num_envs: int, seed: int, device: Any) -> VecEnv:
    """One ``VecEnv`` of ``num_envs`` envs (one per perturbation) for a name, Env or VecEnv."""
    if isinstance(env, str):
        env = make(env)
    if isinstance(env, VecEnv):
        env = env.env
    if not isinstance(env, Env):
        raise TypeError(
            "env: evolution strategies reset one batch of diffctl envs per generation and need "
            f"a diffctl Env (a name, an Env or a VecEnv), got {type(env).__name__}"
        )
    return VecEnv(env, num_envs, device=device, seed=seed, validate=False)


@torch.no_grad()
def generation_rollout(
    runner: VecEnv,
    policy: EvolutionPolicy,
    thetas: Tensor,
    seed: int,
    episode_steps: int,
    normalizer: RunningNormalizer | None = None,
    starts: int = 0,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run every policy ``thetas[p]`` (``P`` rows) for one episode (to its end or
    ``episode_steps``) in its own env(s) of ``runner``, all at once, with common random numbers:

    - ``starts=0``: one env per policy (``runner.num_envs == P``); envs ``p`` and ``p + P/2``
      (an antithetic pair) start from the same state, so a pair's returns differ by the
      perturbation only;
    - ``starts=K > 0``: ``K`` envs per policy (``runner.num_envs == K * P``, env ``p * K + j``
      runs policy ``p`` from start ``j``); every policy runs from the same ``K`` start states,
      drawn once, so the returns of *all* policies, not only a pair's, differ by the
      perturbation only. A policy's return is the mean of its ``K`` episodes.

    Returns the undiscounted returns ``[P]``, the env steps each policy took ``[P]`` (int64)
    and, when ``normalizer`` is given, the raw observations the running episodes saw
    ``[M, obs_dim]`` (the policies see them normalised with ``normalizer``'s current statistics).
    """
    b, k, p = runner.num_envs, max(starts, 1), thetas.shape[0]
    if p * k != b:
        per = "one env" if k == 1 else f"{k} envs"
        raise ValueError(f"thetas: expected {b // k} rows ({per} each), got {p}")
    runner.reset(seed=seed)
    if starts:  # all P policies from the same K starts
        obs = runner.set_state(runner.env.initial_state(k, runner.generator).repeat(p, 1))
        thetas = thetas.repeat_interleave(k, dim=0)
    elif b % 2 == 0:  # env b and env b + B/2 (the pair theta +- sigma eps) share a start
        x0 = runner.env.initial_state(b // 2, runner.generator)
        obs = runner.set_state(torch.cat([x0, x0]))
    else:  # an odd batch (one policy alone, say) has no pairs: the starts of the reset
        obs = runner.set_state(runner.state)
    returns = torch.zeros(b, dtype=torch.float64, device=runner.device)
    lengths = torch.zeros(b, dtype=torch.int64, device=runner.device)
    alive = torch.ones(b, dtype=torch.bool, device=runner.device)
    seen = []
    for t in range(episode_steps):
        if normalizer is not None:
            seen.append(obs[alive])
            obs = normalizer.normalize(obs.to(normalizer.mean.dtype))
        action = policy.batched_forward(thetas, obs)
        obs, reward, term, trunc, _ = runner.step(action)
        returns = returns + torch.where(alive, reward.to(returns.dtype), 0.0)
        lengths = lengths + alive.to(torch.int64)
        alive = alive & ~(term | trunc)
        if t % 25 == 24 and not bool(alive.any()):  # every episode over: stop stepping
            break
    states = torch.cat(seen) if normalizer is not None else None
    return returns.view(p, k).mean(1), lengths.view(p, k).sum(1), states


# ------------------------------------------------------------------ fitness shaping, update
def centred_ranks(x: Tensor) -> Tensor:
    """``rank(x_k) / (n - 1) - 0.5``: the ranks (0 for the smallest) of all ``n`` values, scaled
    to ``[-0.5, 0.5]`` (Salimans et al. 2017, Sec. 2.2). Tied values share their mean rank, so
    a generation of equal returns (every episode at the time limit) gives a zero gradient."""
    flat = x.reshape(-1)
    n = flat.numel()
    values, order = flat.sort(stable=True)
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    first = counts.cumsum(0) - counts  # rank of each group's first member
    mean_rank = first.to(x.dtype) + (counts.to(x.dtype) - 1) / 2
    ranks = torch.empty(n, dtype=x.dtype, device=x.device)
    ranks[order] = mean_rank[group]
    return (ranks / max(n - 1, 1) - 0.5).reshape(x.shape)


def es_gradient(eps: Tensor, returns_pos: Tensor, returns_neg: Tensor, sigma: float) -> Tensor:
    """The antithetic ES gradient estimate ``1/(2 N sigma) sum_i (u_i^+ - u_i^-) eps_i`` from
    the centred ranks ``u`` of all ``2N`` returns (``eps [N, P]``, returns ``[N]`` each)."""
    u = centred_ranks(torch.cat([returns_pos, returns_neg]))
    n = eps.shape[0]
    return (u[:n] - u[n:]).to(eps.dtype) @ eps / (2 * n * sigma)


# ------------------------------------------------------------------ training run
@dataclass
class EvolutionRun:
    """What ``start_run`` sets up for an ES or ARS loop: the resolved config, the ``VecEnv`` of
    one generation, the agent, the generator of the noise, the episode statistics, the episode
    length, the number of generations, the ``TrainLoop`` with its stateful ``parts``, and the
    loop variables (restored by a resume)."""

    config: Any
    runner: VecEnv
    agent: Agent
    generator: torch.Generator
    episodes: Episodes
    horizon: int
    num_generations: int
    parts: dict[str, Any]
    loop: TrainLoop
    iteration: int
    steps: int


def start_run(
    env: Any,
    config: Any,
    seed: int,
    *,
    config_class: type,
    presets: Mapping[str, Any],
    make_agent: Callable[[Any, Any, int], Agent],
    make_parts: Callable[[Agent, Any], dict[str, Any]] | None = None,
    device: str | torch.device | None,
    checkpoint: str | os.PathLike | None,
    checkpoint_every: int,
    resume: str | os.PathLike | None,
    callback: Callback | None,
) -> EvolutionRun:
    """The preamble both ``es.train`` and ``ars.train`` share: resolve the config (``presets``
    by env name, else ``config_class()``), make the ``VecEnv`` of ``2 * num_directions``
    perturbed policies (times ``starts``), the agent (``make_agent(spec, config, seed)``), the
    seeded noise generator, the episode statistics, the algorithm's own stateful parts
    (``make_parts(agent, config)``, e.g. an optimizer) and the ``TrainLoop``, then resume.
    A generation counts ``2 * num_directions * max(starts, 1)`` episodes of ``episode_steps``
    against ``total_steps``."""
    name = env if isinstance(env, str) else getattr(getattr(env, "spec", None), "name", "")
    cfg = config if config is not None else presets.get(name, config_class())
    if not isinstance(cfg, config_class):
        raise TypeError(f"config: expected an {config_class.__name__}, got {type(cfg).__name__}")
    envs = 2 * cfg.num_directions * max(cfg.starts, 1)
    runner = make_vec_env(env, envs, seed, device)
    agent = make_agent(runner.spec, cfg, seed).to(runner.device)
    gen = torch.Generator(device=runner.device)
    gen.manual_seed(seed)
    episodes = Episodes()
    horizon = cfg.episode_steps or runner.max_steps
    num_generations = max(1, cfg.total_steps // (envs * horizon))
    parts = {
        **(make_parts(agent, cfg) if make_parts else {}),
        "generator": gen,
        "episodes": episodes,
    }
    loop = TrainLoop(
        agent, episodes, parts, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
        callback=callback,
    )  # fmt: skip
    state = loop.resume(resume, {"iteration": 0, "steps": 0})
    return EvolutionRun(
        cfg, runner, agent, gen, episodes, horizon, num_generations, parts, loop,
        state["iteration"], state["steps"],
    )  # fmt: skip


def train(
    env: Any,
    config: ESConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train a policy with OpenAI-ES on ``env``; other arguments as ``ppo.train``."""
    run = start_run(
        env, config, seed, config_class=ESConfig, presets=PRESETS, make_agent=make_agent,
        make_parts=lambda agent, cfg: {
            "optimizer": torch.optim.Adam(agent.actor.parameters(), lr=cfg.learning_rate)
        },
        device=device, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
        callback=callback,
    )  # fmt: skip
    cfg, agent, loop, gen, dev = run.config, run.agent, run.loop, run.generator, run.runner.device
    policy, optimizer, n = agent.actor, run.parts["optimizer"], cfg.num_directions
    iteration, steps = run.iteration, run.steps
    while iteration < run.num_generations:
        iteration += 1
        # antithetic perturbations theta +- sigma eps_i, all 2N policies in one batched rollout
        theta = policy.theta
        eps = torch.randn(n, theta.numel(), generator=gen, device=dev, dtype=theta.dtype)
        thetas = torch.cat([theta + cfg.sigma * eps, theta - cfg.sigma * eps])
        env_seed = int(torch.randint(0, 2**31 - 1, (), generator=gen, device=dev))
        norm = agent.obs_normalizer
        returns, lengths, states = generation_rollout(
            run.runner, policy, thetas, env_seed, run.horizon, norm, cfg.starts
        )
        if norm is not None:
            norm.update(states.to(norm.mean.dtype))
        # rank-shaped antithetic gradient estimate, L2 penalty, Adam ascent
        g = es_gradient(eps, returns[:n], returns[n:], cfg.sigma) - cfg.weight_decay * theta
        optimizer.zero_grad(set_to_none=True)
        i = 0
        for p in policy.parameters():
            p.grad = -g[i : i + p.numel()].view_as(p).clone()
            i += p.numel()
        optimizer.step()
        run.episodes.add(returns, max(cfg.starts, 1))
        steps += int(lengths.sum())
        losses = {
            "max_return": float(returns.max()),
            "grad_norm": float(g.norm()),
            "theta_norm": float(theta.norm()),
        }
        state = {"iteration": iteration, "steps": steps}
        last = iteration == run.num_generations
        if not loop.log(steps, iteration, losses, state=state, last=last):
            break
    return loop.result()
