"""Model-based RL loop: collect with an MPC policy planning on the learned model, refit, repeat.

The lecture notes' "planning actions" loop (collect trajectories, estimate the motion model
``argmin ||x' - p_theta(x, u)||``, plan ``argmax sum_k r(x_k, u_k)`` subject to
``x_{k+1} = p_theta(x_k, u_k)``) and PETS (Chua et al. 2018, Alg. 1):

1. run ``initial_episodes`` episodes with uniformly random actions;
2. for each iteration: fit the model to all data so far (a fresh one, or with
   ``refit="continue"`` the previous one trained further, as mbrl-lib's PETS does), then run one
   episode with an ``MPCPolicy`` whose planner (CEM, iCEM, MPPI or iLQR ``MPC``) plans on the
   model, and add it to the data. Ensembles plan with trajectory sampling over their elites
   (``ts_mode``; ``particles`` rollouts per sampled sequence, each through one member's mean
   prediction, or a sample of its Gaussian with the planner option ``propagation="sample"``).

The planner maximises the env's own ``reward`` (unless a learned ``reward_fn(x, u, x_next) ->
[N]`` is given) on predicted states, and rewards stop after a predicted state the env's
``terminated`` ends. Episodes end at ``episode_steps`` or when the real env terminates (Hopper,
InvertedDoublePendulum); only the steps taken are data and env steps. Optionally the planner is
evaluated on ``eval_episodes`` fixed start states after each iteration (these evaluation episodes
are not added to the data nor counted as env steps).

With a ``checkpoint`` path the loop's whole state is written there after every episode
(``diffctl.models.mbrl_checkpoint``); ``resume`` continues such a run, bit for bit as if it had
never stopped. Stepping checks for termination once per control step (one host
synchronisation per step of a single real env, next to a whole planner solve).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffctl.configs.models import MBRLConfig
from diffctl.control import (
    CEM,
    ICEM,
    MPC,
    MPPI,
    FunctionCost,
    MPCPolicy,
)
from diffctl.data import Trajectory
from diffctl.envs import Env, make

from .base import DynamicsModel
from .ensemble import EnsembleDynamics
from .linear import LinearModel
from .mbrl_checkpoint import LoopState, load_loop_state, save_loop_state
from .mlp import MLPDynamics
from .training import fit

__all__ = [
    "MBRLConfig",
    "MBRLResult",
    "mbrl",
    "DEFAULT_ANGLE_DIMS",
    "RESUMABLE",
    "continuous_env",
    "model_dims",
    "load_resume",
    "check_resumable",
    "make_planner",
    "run_episodes",
    "episode_returns",
]

#: state components that are angles, per env (fed to the networks as sin/cos)
DEFAULT_ANGLE_DIMS: dict[str, tuple[int, ...]] = {
    "pendulum": (0,),
    "cartpole": (2,),
    "cartpole-continuous": (2,),
    "acrobot": (0, 1),
}

Reward = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass
class MBRLResult:
    """Outcome of ``mbrl``: the last fitted ``model``, the ``policy`` that planned on it, all
    real ``data`` collected (episodes one after another along time, each ending in a
    ``terminated`` or ``truncated`` step) and ``history`` (one dict per episode: iteration (0
    for random episodes), episode_steps, env_steps so far, return, eval_return, model metrics,
    fit_time, episode_time, solve_time (mean planner seconds per control step), x0 (the
    episode's start state))."""

    model: DynamicsModel
    policy: MPCPolicy | None
    data: Trajectory
    history: list[dict[str, Any]] = field(default_factory=list)


def model_dims(
    env: Env, angle_dims: tuple[int, ...] | None, position_dims: tuple[int, ...] | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The angle and position components a model of ``env`` treats apart: the given ones, or
    for None ``DEFAULT_ANGLE_DIMS`` of the env and the env's own ``position_dims``."""
    if angle_dims is None:
        angle_dims = DEFAULT_ANGLE_DIMS.get(env.spec.name, ())
    if position_dims is None:
        position_dims = tuple(getattr(env, "position_dims", ()))
    return tuple(angle_dims), tuple(position_dims)


def continuous_env(config: Any, env: Env | None) -> Env:
    """``env``, or ``make(config.env, **config.env_kwargs())`` for None, checked to be a diffctl
    ``Env`` with continuous actions (what the model-based methods need)."""
    env = make(config.env, **config.env_kwargs()) if env is None else env
    if not isinstance(env, Env):
        raise TypeError(f"env: expected a diffctl Env, got {type(env).__name__}")
    if env.spec.discrete:
        raise ValueError(f"env: {env.spec.name} has discrete actions; use a continuous variant")
    return env


def _build_model(config: MBRLConfig, env: Env) -> DynamicsModel:
    nx, nu = env.spec.state_dim, env.spec.act_dim
    angles, positions = model_dims(env, config.angle_dims, config.position_dims)
    if config.model == "linear":
        return LinearModel(nx, nu)
    arch = dict(hidden=config.hidden, angle_dims=angles, position_dims=positions)
    if config.model == "mlp":
        return MLPDynamics(nx, nu, **arch)
    return EnsembleDynamics(
        nx, nu, num_members=config.num_members, num_elites=config.ensemble_elites, **arch
    )


def make_planner(
    model: DynamicsModel,
    reward: Reward,
    env: Env,
    config: MBRLConfig,
    generator: torch.Generator | None = None,
) -> Any:
    """The planner of ``config`` on ``model`` maximising ``reward`` within ``env``'s bounds,
    with rewards stopping after a predicted state that ``env.terminated`` ends.

    Sampling planners on an ``EnsembleDynamics`` use trajectory sampling over its elites
    (``ensemble_size = num_elites``): every sampled action sequence is rolled out by
    ``particles`` particles, each through one elite's mean prediction, kept for the whole
    horizon (``tsinf``) or re-drawn every step (``ts1``).
    """
    if config.planner == "mpc":

        def stage_cost(x: Tensor, u: Tensor) -> Tensor:
            return -reward(x, u, model(x, u))

        bounds = dict(u_lower=env.spec.action_low, u_upper=env.spec.action_high)
        cfg = config.planner_config(**bounds)
        return MPC(model, FunctionCost(stage_cost), cfg, nu=env.spec.act_dim)
    ts = {"ensemble_size": model.num_elites} if isinstance(model, EnsembleDynamics) else {}
    lo, hi = env.spec.action_bounds(env.device, env.dtype)
    planner = {"cem": CEM, "icem": ICEM, "mppi": MPPI}[config.planner]
    return planner(
        model,
        config=config.planner_config(**ts),
        reward=reward,
        action_low=lo,
        action_high=hi,
        generator=generator,
        terminated=env.terminated,
    )


def _random_policy(env: Env, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
    lo, hi = env.spec.action_bounds(env.device, env.dtype)

    def policy(obs: Tensor) -> Tensor:
        n, nu = obs.shape[0], env.spec.act_dim
        r = torch.rand(n, nu, generator=generator, dtype=env.dtype, device=env.device)
        return lo + (hi - lo) * r

    return policy


@torch.no_grad()
def run_episodes(
    env: Env, policy: Callable[[Tensor], Tensor], steps: int, x0: Tensor
) -> tuple[Trajectory, float]:
    """Run ``policy`` from ``x0 [B, nx]`` for ``steps`` steps or until every row has terminated.

    A policy with ``needs_state`` gets the state, others the observation. Rows that terminated
    earlier keep stepping from their terminal state (as in ``diffctl.data.rollout``); the last
    step of a row that never terminated is marked ``truncated``. Returns the trajectory ``[T,
    B]`` (``T <= steps``) and the policy's mean planner solve time per step (``last_plan``'s
    ``solve_time``; 0 for a policy that does not plan).
    """
    needs_state = bool(getattr(policy, "needs_state", False))
    x, done = x0, torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
    cols: dict[str, list[Tensor]] = {k: [] for k in ("states", "actions", "rewards", "term")}
    solve = 0.0
    for _ in range(steps):
        u = policy(x if needs_state else env.observe(x))
        plan = getattr(policy, "last_plan", None)
        solve += plan.solve_time if plan is not None else 0.0
        x1 = env.dynamics(x, u)
        term = env.terminated(x1)
        for k, v in zip(cols, (x, u, env.reward(x, u, x1), term)):
            cols[k].append(v)
        x, done = x1, done | term
        if bool(done.all()):
            break
    states = torch.stack([*cols["states"], x])
    terminated = torch.stack(cols["term"])
    truncated = torch.zeros_like(terminated)
    truncated[-1] = ~terminated.any(0)
    obs = env.observe(states)
    tr = Trajectory(
        obs=obs[:-1],
        actions=torch.stack(cols["actions"]),
        rewards=torch.stack(cols["rewards"]),
        next_obs=obs[1:],
        terminated=terminated,
        truncated=truncated,
        states=states[:-1],
        next_states=states[1:],
    )
    return tr, solve / len(cols["term"])


def episode_returns(tr: Trajectory) -> Tensor:
    """Return ``[B]`` of each row of ``tr`` up to and including its first terminated step."""
    ended_before = (tr.terminated.long().cumsum(0) - tr.terminated.long()) > 0
    return tr.rewards.masked_fill(ended_before, 0).sum(0)


#: settings a resumed run may change: they do not alter what has been computed so far
RESUMABLE = ("iterations", "target_return", "progress")


def check_resumable(
    path: str | os.PathLike,
    saved: dict[str, Any],
    saved_env: str,
    config: Any,
    env: Env,
    resumable: tuple[str, ...],
) -> None:
    """Refuse to resume the run checkpointed at ``path`` (its settings ``saved``, the JSON
    form of its config dataclass, on env ``saved_env``) with ``config`` on ``env`` unless the
    settings differ in ``resumable`` fields only and the env is the same."""
    now = json.loads(json.dumps(asdict(config)))
    for key in sorted(set(now) | set(saved)):
        if key not in resumable and now.get(key) != saved.get(key):
            raise ValueError(
                f"resume: {os.fspath(path)} was run with {key}={saved.get(key)!r}, this "
                f"run has {now.get(key)!r} (only {', '.join(resumable)} may change)"
            )
    if saved_env != env.spec.name:
        raise ValueError(
            f"resume: {os.fspath(path)} ran on env {saved_env!r}, not {env.spec.name!r}"
        )


def load_resume(path: str | os.PathLike, config: MBRLConfig, env: Env) -> LoopState:
    """The state of the run checkpointed at ``path``, checked to be resumable by ``config`` on
    ``env``: the same settings up to ``RESUMABLE``, the same env."""
    state = load_loop_state(path, env.device, env.dtype)
    check_resumable(path, state.config, state.env, config, env, RESUMABLE)
    return state


def mbrl(
    config: MBRLConfig | None = None,
    *,
    env: Env | None = None,
    reward_fn: Reward | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: str | os.PathLike | LoopState | None = None,
) -> MBRLResult:
    """Run the model-based loop (see module docstring).

    Args:
        config: ``MBRLConfig``.
        env: the real system (default: ``make(config.env, **config.env_options)``).
        reward_fn: learned or hand-written ``r(x, u, x_next) -> [N]`` to plan with (default:
            the env's reward). Returns are always measured with the env's reward.
        checkpoint: write the loop's state here after every episode (atomically).
        resume: a checkpoint of an earlier run with the same settings (up to ``RESUMABLE``),
            or its ``load_resume``: continue after its last iteration.
    """
    config = MBRLConfig() if config is None else config
    if not isinstance(config, MBRLConfig):
        raise TypeError(f"config: expected an MBRLConfig, got {type(config).__name__}")
    env = continuous_env(config, env)
    if reward_fn is not None and not callable(reward_fn):
        raise TypeError(f"reward_fn: expected a callable r(x, u, x_next), got {reward_fn!r}")
    reward = reward_fn if reward_fn is not None else env.reward
    steps = config.episode_steps or env.spec.max_steps
    gen = torch.Generator(env.device).manual_seed(config.seed)
    eval_x0 = None
    if config.eval_episodes:
        eval_x0 = env.initial_state(
            config.eval_episodes, torch.Generator(env.device).manual_seed(config.seed + 10_000)
        )
    episodes: list[Trajectory] = []
    history: list[dict[str, Any]] = []
    model: DynamicsModel | None = None
    first = 1

    def save(iteration: int) -> None:
        if checkpoint is not None:
            state = LoopState(
                json.loads(json.dumps(asdict(config))),
                env.spec.name,
                iteration,
                episodes,
                history,
                gen.get_state(),
                model,
            )
            save_loop_state(checkpoint, state)

    if resume is not None:
        state = resume if isinstance(resume, LoopState) else load_resume(resume, config, env)
        episodes, history, model = state.episodes, state.history, state.model
        gen.set_state(state.generator)
        first = state.iteration + 1
    else:
        for _ in range(config.initial_episodes):
            t0 = time.perf_counter()
            tr, _ = run_episodes(env, _random_policy(env, gen), steps, env.initial_state(1, gen))
            episodes.append(tr)
            history.append(
                {
                    "iteration": 0,
                    "x0": tr.states[0, 0].tolist(),
                    "episode_steps": tr.num_steps,
                    "env_steps": sum(e.num_steps for e in episodes),
                    "return": episode_returns(tr).item(),
                    "eval_return": None,
                    "fit_time": 0.0,
                    "episode_time": time.perf_counter() - t0,
                    "solve_time": None,
                }
            )
            save(0)
    policy: MPCPolicy | None = None
    bar = tqdm(
        range(first, config.iterations + 1),
        desc=f"mbrl {env.spec.name}",
        disable=not config.progress,
        leave=False,
    )
    for it in bar:
        t0 = time.perf_counter()
        torch.manual_seed(config.seed + it)  # network initialisation
        if model is None or config.refit == "fresh":
            model = _build_model(config, env).to(device=env.device, dtype=env.dtype)
        model.train().requires_grad_(True)
        data = Trajectory.cat(episodes, dim=0)
        fit_cfg = replace(config.fit, seed=config.seed + it, source="states")
        if len(episodes) < 2:  # one episode cannot be split: the first fit has no validation
            fit_cfg = replace(fit_cfg, val_fraction=0.0)
        fitted = fit(model, data, fit_cfg)
        model.eval().requires_grad_(False)
        fit_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        plan_gen = torch.Generator(env.device).manual_seed(config.seed + 1000 + it)
        policy = MPCPolicy(make_planner(model, reward, env, config, plan_gen))
        tr, solve_time = run_episodes(env, policy, steps, env.initial_state(1, gen))
        episodes.append(tr)
        row = {
            "iteration": it,
            "x0": tr.states[0, 0].tolist(),
            "episode_steps": tr.num_steps,
            "env_steps": sum(e.num_steps for e in episodes),
            "return": episode_returns(tr).item(),
            "eval_return": None,
            "fit_time": fit_time,
            "episode_time": time.perf_counter() - t0,
            "solve_time": solve_time,
            "model_k_step_nrmse": fitted.metrics["k_step_nrmse"],
            "model_one_step_nmse": fitted.metrics["one_step_nmse"],
        }
        if eval_x0 is not None:
            policy.reset()
            ev, _ = run_episodes(env, policy, steps, eval_x0)
            row["eval_return"] = episode_returns(ev).mean().item()
        history.append(row)
        save(it)
        score = row["eval_return"] if eval_x0 is not None else row["return"]
        bar.set_postfix(ret=f"{score:.1f}", steps=row["env_steps"])
        if config.target_return is not None and score >= config.target_return:
            break
    bar.close()
    assert model is not None  # iterations >= 1, and a checkpoint's model is from before it
    return MBRLResult(
        model=model, policy=policy, data=Trajectory.cat(episodes, dim=0), history=history
    )
