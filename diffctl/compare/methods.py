"""The rows of ``diffctl compare``: each method is ``fn(spec) -> dict``.

A method returns ``returns`` (evaluation episodes under the env's true reward), ``env_steps``
(real transitions it consumed to learn: logs, training steps; 0 for planning on the true
dynamics), optionally ``solve_ms_per_step``, a ``curve`` (list of ``{"env_steps",
"wall_time", "return"}``) and ``notes``.

Stages shared by several rows of the same (env, seed, budget) in one process (the logged data,
the fitted models, the expert demos) are cached, so a serial run collects and fits once, and a
Ray task, which runs alone, recomputes them with the same seeds and gets the same numbers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .runner import TaskSpec

__all__ = ["METHODS", "DEFAULT_METHODS", "IRL_METHODS", "Curve", "PLANNER_SETTINGS"]

Curve = list[dict[str, float]]

# Per-env planner settings (horizon, iterations, samples); pendulum's follow the closed-loop
# tests in tests/control. Other envs fall back to "default".
PLANNER_SETTINGS: dict[str, dict[str, Any]] = {
    "pendulum": {"horizon": 30, "max_iter": 10, "cem_samples": 500, "cem_iters": 5},
    "default": {"horizon": 30, "max_iter": 10, "cem_samples": 500, "cem_iters": 5},
}
# Transitions logged by the exploratory policy at budget 1.
LOG_STEPS = 2000
# Model-free training steps at budget 1.
AGENT_STEPS = {"ppo": 200_000, "sac": 20_000, "ddpg": 20_000, "td3": 20_000}


def _settings(env_name: str) -> dict[str, Any]:
    return PLANNER_SETTINGS.get(env_name, PLANNER_SETTINGS["default"])


def _make_env(name: str, device: str):
    from diffctl.envs import make

    return make(name, device=device)


# ----------------------------------------------------------------------------- evaluation
def _evaluate_planner(spec: TaskSpec, env, planner) -> dict[str, Any]:
    """Closed-loop episodes of an ``MPCPolicy`` around ``planner`` on the true env."""
    from diffctl.control import MPCPolicy
    from diffctl.envs import VecEnv

    venv = VecEnv(env, spec.episodes, device=spec.device, seed=10_000 + spec.seed, validate=False)
    venv.reset()
    policy = MPCPolicy(planner, warm_start=True)
    for _ in range(venv.max_steps):
        policy.step(venv)
    stats = venv.episode_statistics()
    return {
        "returns": stats["last_returns"].tolist(),
        "solve_ms_per_step": 1000 * policy.solve_time_per_step(),
    }


def _reward_cost(env, dynamics=None):
    """Planning cost ``-r(x, u, f(x, u))`` with ``f`` the planner's dynamics (a model's).

    When the env's reward ignores ``x_next`` the cost skips ``f``, so the planner's exact
    cost Hessian does not differentiate through a learned model.
    """
    from diffctl.control import FunctionCost

    f = env._dynamics if dynamics is None else dynamics
    if not env.reward_uses_next_state:
        return FunctionCost(lambda x, u: -env._reward(x, u, x))
    return FunctionCost(lambda x, u: -env._reward(x, u, f(x, u)))


def _mpc(env, dynamics, settings: dict[str, Any]):
    from diffctl.control import MPC, MPCConfig

    lo, hi = env.spec.action_low, env.spec.action_high
    cfg = MPCConfig(
        horizon=settings["horizon"], max_iter=settings["max_iter"],
        u_lower=lo if len(lo) > 1 else lo[0], u_upper=hi if len(hi) > 1 else hi[0],
    )  # fmt: skip
    return MPC(dynamics, _reward_cost(env, dynamics), cfg, nu=env.spec.act_dim)


def _cem(env, dynamics, settings: dict[str, Any], seed: int):
    from diffctl.control import CEM, CEMConfig

    cfg = CEMConfig(
        horizon=settings["horizon"], num_samples=settings["cem_samples"],
        iterations=settings["cem_iters"], seed=seed,
    )  # fmt: skip
    return CEM(dynamics, cost=_reward_cost(env, dynamics), action_space=env.spec, config=cfg)


# ----------------------------------------------------------------------------- shared stages
@functools.lru_cache(maxsize=8)
def _logs(env_name: str, seed: int, budget: float, device: str):
    """Transitions from a uniformly random policy (the exploratory logs)."""
    from diffctl.data import rollout
    from diffctl.envs import VecEnv

    env = _make_env(env_name, device)
    steps = max(int(LOG_STEPS * budget), env.spec.max_steps)
    episodes = max(steps // env.spec.max_steps, 1)
    venv = VecEnv(env, episodes, device=device, seed=seed, validate=False)
    g = torch.Generator(device=device).manual_seed(seed)
    low, high = env.spec.action_bounds(device, env.dtype)

    def random_policy(obs: torch.Tensor) -> torch.Tensor:
        r = torch.rand(obs.shape[0], env.spec.act_dim, generator=g, device=device)
        return low + (high - low) * r

    return rollout(venv, random_policy, env.spec.max_steps)


@functools.lru_cache(maxsize=8)
def _fitted(kind: str, env_name: str, seed: int, budget: float, device: str):
    """A dynamics model of ``kind`` fitted to the random logs (cached per process)."""
    from diffctl.models import EnsembleDynamics, FitConfig, LinearModel, fit

    env = _make_env(env_name, device)
    nx, nu = env.spec.state_dim, env.spec.act_dim
    torch.manual_seed(seed)
    angle_dims = tuple(env.spec.extra.get("angle_dims", (0,) if env_name == "pendulum" else ()))
    if kind == "ensemble":
        model = EnsembleDynamics(nx, nu, angle_dims=angle_dims)
    elif kind == "linear":
        model = LinearModel(nx, nu)
    else:
        raise ValueError(f"kind: unknown model kind {kind!r}")
    data = _logs(env_name, seed, budget, device)
    result = fit(model.to(device), data, FitConfig(seed=seed, progress=False))
    return result.model


# ----------------------------------------------------------------------------- methods
def mpc_true(spec: TaskSpec) -> dict[str, Any]:
    env = _make_env(spec.env, spec.device)
    out = _evaluate_planner(spec, env, _mpc(env, env, _settings(spec.env)))
    return {**out, "env_steps": 0, "notes": "true dynamics"}


def cem_true(spec: TaskSpec) -> dict[str, Any]:
    env = _make_env(spec.env, spec.device)
    out = _evaluate_planner(spec, env, _cem(env, env, _settings(spec.env), spec.seed))
    return {**out, "env_steps": 0, "notes": "true dynamics"}


def _model_row(kind: str, planner: str) -> Callable[[TaskSpec], dict[str, Any]]:
    def run(spec: TaskSpec) -> dict[str, Any]:
        env = _make_env(spec.env, spec.device)
        model = _fitted(kind, spec.env, spec.seed, spec.budget, spec.device)
        settings = _settings(spec.env)
        p = (
            _mpc(env, model, settings)
            if planner == "mpc"
            else _cem(env, model, settings, spec.seed)
        )
        out = _evaluate_planner(spec, env, p)
        data = _logs(spec.env, spec.seed, spec.budget, spec.device)
        steps = data.rewards.numel()
        return {**out, "env_steps": steps, "notes": f"{kind} model from {steps} random steps"}

    run.__name__ = f"{planner}_{kind}"
    return run


def _agent_row(algo: str) -> Callable[[TaskSpec], dict[str, Any]]:
    def run(spec: TaskSpec) -> dict[str, Any]:
        import dataclasses
        import importlib

        from diffctl.agents import evaluate

        module = importlib.import_module(f"diffctl.agents.{algo}")
        config_cls = getattr(module, f"{algo.upper()}Config")
        steps = max(int(AGENT_STEPS[algo] * spec.budget), 1000)
        config = dataclasses.replace(config_cls(), total_steps=steps)
        result = module.train(spec.env, config, seed=spec.seed, device=spec.device)
        ev = evaluate(result.agent, spec.env, episodes=spec.episodes, seed=10_000 + spec.seed)
        curve = [
            {"env_steps": float(h["step"]), "wall_time": float(h["wall_time"]),
             "return": float(h["mean_return"])}
            for h in result.history
            if not math.isnan(float(h.get("mean_return", float("nan"))))
        ]  # fmt: skip
        return {"returns": ev["returns"], "env_steps": steps, "curve": curve}

    run.__name__ = algo
    return run


METHODS: dict[str, Callable[[TaskSpec], dict[str, Any]]] = {
    "mpc": mpc_true,
    "cem": cem_true,
    "mpc-ensemble": _model_row("ensemble", "mpc"),
    "cem-ensemble": _model_row("ensemble", "cem"),
    "mpc-linear": _model_row("linear", "mpc"),
    "ppo": _agent_row("ppo"),
    "sac": _agent_row("sac"),
    "ddpg": _agent_row("ddpg"),
}
DEFAULT_METHODS: tuple[str, ...] = tuple(METHODS)
IRL_METHODS: tuple[str, ...] = ()
