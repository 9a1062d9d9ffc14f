"""Model-based policy optimisation: SAC trained on short rollouts of a learned ensemble.

MBPO (Janner et al. 2019, "When to Trust Your Model: Model-Based Policy Optimization", Alg. 2),
the Dyna-style path next to the planners of ``diffctl.models.mbrl``:

1. take ``random_steps`` env steps with uniformly random actions, then act with SAC's
   stochastic policy; every real transition goes to ``D_env``;
2. every ``model_train_every`` env steps: train the Gaussian ensemble on ``D_env`` (the
   previous one trained further; elites chosen on held-out episodes), then start
   ``rollouts_per_step * model_train_every`` model rollouts from real states drawn from
   ``D_env``, ``k`` steps each (``rollout_schedule``), the policy choosing the actions and each
   step going through a randomly drawn elite, to a sample of its Gaussian (TS-1); rewards and
   termination are the env's own torch functions on the predicted states, and a rollout stops
   after a predicted state the env's ``terminated`` ends. The transitions go to ``D_model``, a
   ring of the last ``model_buffer_steps`` env steps' rollouts;
3. after every env step from ``random_steps`` on: ``updates_per_step`` SAC updates
   (``diffctl.agents.sac.SACLearner``), each on a minibatch of which a ``real_ratio`` part comes
   from ``D_env`` and the rest from ``D_model``.

The policy acts on observations, the model on the env's states (``env.observe`` maps one to
the other). History: one row per training episode (return, env steps, the evaluation return
of the deterministic policy when ``eval_episodes`` is set, wall time so far).

With a ``checkpoint`` path the run's whole state is written there after every training
episode (``diffctl.agents.loop.TrainLoop``'s agent file: the policy, both buffers, the model,
the optimisers, the generator); ``resume`` continues such a run as the uninterrupted one would
have gone on (bit for bit on the CPU).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffctl.agents.agent import Agent
from diffctl.agents.checkpoint import load_checkpoint
from diffctl.agents.loop import TrainLoop
from diffctl.agents.sac import SACLearner, make_agent
from diffctl.configs.models import MBPOConfig
from diffctl.data import ReplayBuffer, Trajectory
from diffctl.envs import Env

from .ensemble import EnsembleDynamics
from .mbrl import check_resumable, continuous_env, episode_returns, model_dims, run_episodes
from .training import fit

__all__ = ["MBPOConfig", "MBPOResult", "RESUMABLE", "check_resume", "mbpo", "model_rollouts"]


@dataclass
class MBPOResult:
    """Outcome of ``mbpo``: the trained ``agent``, the last fitted ``model``, the real ``data``
    (``[N, 1]``, time-major, episodes one after another) and ``history`` (one dict per
    training episode: episode, env_steps so far, return, eval_return, episode_steps, wall_time
    since the start, model_one_step_nmse of the last refit)."""

    agent: Agent
    model: EnsembleDynamics
    data: Trajectory
    history: list[dict[str, Any]] = field(default_factory=list)


@torch.no_grad()
def model_rollouts(
    model: EnsembleDynamics,
    env: Env,
    agent: Agent,
    x0: Tensor,
    length: int,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """Rollouts of ``agent``'s stochastic policy on ``model`` from states ``x0 [N, nx]``.

    Each step goes through a randomly drawn elite, to a sample of its Gaussian
    (``model.sample(mode="ts1")``); rewards and termination are ``env.reward`` and
    ``env.terminated`` on the predicted states. A rollout stops after a step that terminates.
    Returns the transitions, ``obs``, ``actions``, ``rewards``, ``next_obs``, ``terminated``,
    each ``[M, ...]`` (``M <= N * length``: the steps of the rollouts still running).
    """
    x = x0
    out: dict[str, list[Tensor]] = {k: [] for k in ("obs", "actions", "rewards", "next_obs")}
    out["terminated"] = []
    for _ in range(length):
        obs = env.observe(x)
        u = agent.act(obs, generator=generator).to(x.dtype)
        x1 = model.sample(x, u, mode="ts1", noise=True, generator=generator)
        term = env.terminated(x1)
        for k, v in zip(out, (obs, u, env.reward(x, u, x1), env.observe(x1), term)):
            out[k].append(v)
        x = x1[~term]
        if x.shape[0] == 0:
            break
    return {k: torch.cat(v) for k, v in out.items()}


def _build_model(config: MBPOConfig, env: Env) -> EnsembleDynamics:
    angles, positions = model_dims(env, config.angle_dims, config.position_dims)
    return EnsembleDynamics(
        env.spec.state_dim,
        env.spec.act_dim,
        num_members=config.num_members,
        num_elites=config.ensemble_elites,
        hidden=config.hidden,
        angle_dims=angles,
        position_dims=positions,
    ).to(device=env.device, dtype=env.dtype)


def _real_data(real: ReplayBuffer, ends: Tensor) -> Trajectory:
    """``D_env`` as one time-major trajectory ``[N, 1]`` whose last step ends an episode."""
    d = real.data()
    n = len(real)
    truncated = ends[:n].clone()
    truncated[-1] |= ~d["terminated"][-1]
    return Trajectory(
        obs=d["obs"][:, None],
        actions=d["actions"][:, None],
        rewards=d["rewards"][:, None],
        next_obs=d["next_obs"][:, None],
        terminated=d["terminated"][:, None],
        truncated=truncated[:, None],
        states=d["states"][:, None],
        next_states=d["next_states"][:, None],
    )


#: settings a resumed run may change: they do not alter what has been computed so far
RESUMABLE = ("progress",)


def check_resume(path: str | os.PathLike, config: MBPOConfig, env: Env) -> None:
    """Refuse to resume from ``path`` unless it is a checkpoint of ``mbpo`` run with
    ``config``'s settings (up to ``RESUMABLE``) on ``env``."""
    _, train_state = load_checkpoint(path)
    state = (train_state or {}).get("state", {})
    if "mbpo_config" not in state:
        raise ValueError(f"resume: {os.fspath(path)!r} is no mbpo checkpoint (no MBPO state)")
    saved = json.loads(state["mbpo_config"])
    check_resumable(path, saved, state["env"], config, env, RESUMABLE)


def mbpo(
    config: MBPOConfig | None = None,
    *,
    env: Env | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
) -> MBPOResult:
    """Run MBPO (see the module docstring).

    Args:
        config: ``MBPOConfig``.
        env: the real system (default: ``make(config.env, **config.env_options)``); the
            networks and buffers live on its device, in its dtype.
        checkpoint: after every training episode, write the run's whole state here
            (atomically): an agent file (``diffctl.agents.load`` reads the policy) whose
            training state holds both buffers, the model, the optimisers and the generator.
        resume: such a checkpoint of a run with the same settings (up to ``RESUMABLE``):
            continue after its last episode, as the uninterrupted run would.
    """
    config = MBPOConfig() if config is None else config
    if not isinstance(config, MBPOConfig):
        raise TypeError(f"config: expected an MBPOConfig, got {type(config).__name__}")
    env = continuous_env(config, env)
    if resume is not None:
        check_resume(resume, config, env)
    spec, c = env.spec, config
    steps = c.episode_steps or spec.max_steps
    gen = torch.Generator(env.device).manual_seed(c.seed)
    eval_x0 = None
    if c.eval_episodes:
        eval_gen = torch.Generator(env.device).manual_seed(c.seed + 10_000)
        eval_x0 = env.initial_state(c.eval_episodes, eval_gen)

    agent = make_agent(spec, c.sac, c.seed).to(device=env.device, dtype=env.dtype)
    learner = SACLearner(agent, c.sac)
    if c.target_entropy is not None:
        learner.target_entropy = float(c.target_entropy)
    torch.manual_seed(c.seed)  # the ensemble's initialisation
    model = _build_model(c, env)
    lo, hi = spec.action_bounds(env.device, env.dtype)
    buf = dict(device=env.device, dtype=env.dtype)
    real = ReplayBuffer(c.total_steps, spec.obs_dim, spec.act_dim, state_dim=spec.state_dim, **buf)
    max_len = max(c.rollout_schedule[2:])
    model_data = ReplayBuffer(
        c.rollouts_per_step * c.model_buffer_steps * max_len, spec.obs_dim, spec.act_dim, **buf
    )
    n_real = round(c.real_ratio * c.sac.batch_size)
    keys = ("obs", "actions", "rewards", "next_obs", "terminated")

    parts = {f"{name}_optimizer": opt for name, opt in learner.optimizers.items()}
    parts.update(generator=gen, real_buffer=real, model_buffer=model_data, model=model)
    loop = TrainLoop(agent, None, parts, checkpoint=checkpoint)
    initial = {
        "mbpo_config": json.dumps(asdict(c)),
        "env": spec.name,
        "t": 0,  # the next env step
        "x": env.initial_state(1, gen),
        "ep_return": 0.0,
        "ep_steps": 0,
        "ends": torch.zeros(c.total_steps, dtype=torch.bool, device=env.device),  # truncations
        "nmse": None,  # the last refit's one-step error
        "n_updates": 0,
        "n_fits": 0,
    }
    v = loop.resume(resume, initial)
    x, ends = v["x"], v["ends"]
    ep_return, ep_steps, nmse, n_updates, n_fits = (
        v[k] for k in ("ep_return", "ep_steps", "nmse", "n_updates", "n_fits")
    )
    bar = tqdm(range(v["t"], c.total_steps), desc=f"mbpo {spec.name}", disable=not c.progress)
    for t in bar:
        with torch.no_grad():
            obs = env.observe(x)
            if t < c.random_steps:
                r = torch.rand(1, spec.act_dim, generator=gen, device=env.device, dtype=env.dtype)
                u = lo + (hi - lo) * r
            else:
                u = agent.act(obs, generator=gen)
            x1 = env.dynamics(x, u)
            rew, term = env.reward(x, u, x1), env.terminated(x1)
            real.add(obs, u, rew, env.observe(x1), term, state=x, next_state=x1)
        ep_return += float(rew)
        ep_steps += 1
        ended = bool(term) or ep_steps == steps  # one host sync per env step
        if ended:
            ends[t] = not bool(term)
            row = {
                "episode": len(loop.history) + 1,
                "env_steps": t + 1,
                "return": ep_return,
                "eval_return": None,
                "episode_steps": ep_steps,
                "wall_time": loop.wall_time,
                "model_one_step_nmse": nmse,
            }
            if eval_x0 is not None:

                def policy(o: Tensor) -> Tensor:
                    return agent.act(o, deterministic=True)

                ev, _ = run_episodes(env, policy, steps, eval_x0)
                row["eval_return"] = episode_returns(ev).mean().item()
            loop.history.append(row)
            bar.set_postfix(ret=f"{row['eval_return'] or ep_return:.1f}")
            x = env.initial_state(1, gen)
            ep_return, ep_steps = 0.0, 0
        else:
            x = x1
        if t + 1 >= c.random_steps:
            if (t + 1 - c.random_steps) % c.model_train_every == 0:
                data = _real_data(real, ends)
                fit_cfg = replace(c.fit, seed=c.seed + n_fits, source="states")
                if int(data.truncated.sum() + data.terminated.sum()) < 2:
                    fit_cfg = replace(fit_cfg, val_fraction=0.0)  # one episode cannot be split
                model.train().requires_grad_(True)
                nmse = fit(model, data, fit_cfg).metrics["one_step_nmse"]
                model.eval().requires_grad_(False)
                n_fits += 1
                starts = real.sample(c.rollouts_per_step * c.model_train_every, gen)["states"]
                rolled = model_rollouts(model, env, agent, starts, c.rollout_length(t + 1), gen)
                model_data.add(*(rolled[k] for k in keys))
            for _ in range(c.updates_per_step):
                pieces = []
                if n_real:
                    pieces.append(real.sample(n_real, gen))
                if n_real < c.sac.batch_size:
                    pieces.append(model_data.sample(c.sac.batch_size - n_real, gen))
                batch = {k: torch.cat([p[k] for p in pieces]) for k in keys}
                learner.update(batch, gen, n_updates)
                n_updates += 1
        if ended:
            loop.save(
                {
                    **initial,
                    "t": t + 1,
                    "x": x,
                    "ep_return": ep_return,
                    "ep_steps": ep_steps,
                    "ends": ends,
                    "nmse": nmse,
                    "n_updates": n_updates,
                    "n_fits": n_fits,
                }
            )
    bar.close()
    return MBPOResult(agent=agent, model=model, data=_real_data(real, ends), history=loop.history)
