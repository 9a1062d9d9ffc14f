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

if TYPE_CHECKING:  # torch loads when a method runs: ``diffctl compare --help`` stays fast
    import torch

    from .runner import TaskSpec

__all__ = [
    "METHODS",
    "DEFAULT_METHODS",
    "IRL_METHODS",
    "ROBOT_METHODS",
    "Curve",
    "PLANNER_SETTINGS",
]

Curve = list[dict[str, float]]

# Per-env planner settings (horizon, iterations, samples); pendulum's follow the closed-loop
# tests in tests/control. Other envs fall back to "default".
PLANNER_SETTINGS: dict[str, dict[str, Any]] = {
    "pendulum": {
        "horizon": 20,
        "max_iter": 5,
        "cem_samples": 100,
        "cem_elites": 10,
        "cem_iters": 3,
    },
    "default": {
        "horizon": 30,
        "max_iter": 10,
        "cem_samples": 500,
        "cem_elites": 50,
        "cem_iters": 5,
    },
}
# Transitions logged by the exploratory policy at budget 1.
LOG_STEPS = 2000
# Planning episodes of the model-based loop at budget 1 (after one random episode).
MBRL_ITERATIONS = 9
# Planned episodes of PETS at budget 1 (after one random one: 20k steps on 1000-step tasks).
PETS_EPISODES = 19
# Env steps of MBPO at budget 1 (the 20k; MBPO's half-cheetah settings).
MBPO_STEPS = 20_000
# Model-free training steps at budget 1 (an algorithm not named here: its preset's budget).
AGENT_STEPS = {
    "ppo": 200_000, "sac": 20_000, "ddpg": 20_000, "td3": 20_000,
    "trpo": 150_000, "npg": 200_000, "dqn": 50_000,
}  # fmt: skip


def _settings(env_name: str) -> dict[str, Any]:
    return PLANNER_SETTINGS.get(env_name, PLANNER_SETTINGS["default"])


def _make_env(name: str, device: str):
    from diffctl.envs import make

    return make(name, device=device)


# ----------------------------------------------------------------------------- evaluation
def _evaluate_planner(spec: TaskSpec, env, planner) -> dict[str, Any]:
    """Closed-loop episodes of an ``MPCPolicy`` around ``planner`` on the true env."""
    from diffctl.control import MPCPolicy

    return _evaluate_policy(spec, env, MPCPolicy(planner, warm_start=True))


def _evaluate_policy(spec: TaskSpec, env, policy) -> dict[str, Any]:
    """Closed-loop episodes of an ``MPCPolicy`` on the true env (seeded starts)."""
    from diffctl.envs import VecEnv

    venv = VecEnv(env, spec.episodes, device=spec.device, seed=10_000 + spec.seed, validate=False)
    venv.reset()
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
    bounded = all(math.isfinite(b) for b in lo + hi)
    cfg = MPCConfig(
        horizon=settings["horizon"], max_iter=settings["max_iter"],
        u_lower=lo if bounded else None, u_upper=hi if bounded else None,
    )  # fmt: skip
    return MPC(dynamics, _reward_cost(env, dynamics), cfg, nu=env.spec.act_dim)


def _cem(env, dynamics, settings: dict[str, Any], seed: int):
    from diffctl.control import CEM, CEMConfig

    # bounds by clipping: PETS' truncation keeps the mean stuck on a bound on the pendulum
    cfg = CEMConfig(
        horizon=settings["horizon"], num_samples=settings["cem_samples"],
        num_elites=settings["cem_elites"], iterations=settings["cem_iters"],
        bound_mode="clip", seed=seed,
    )  # fmt: skip
    return CEM(
        dynamics, _reward_cost(env, dynamics), action_low=env.spec.action_low,
        action_high=env.spec.action_high, config=cfg, nu=env.spec.act_dim,
    )  # fmt: skip


# ----------------------------------------------------------------------------- shared stages
@functools.lru_cache(maxsize=8)
def _logs(env_name: str, seed: int, budget: float, device: str):
    """Transitions from a uniformly random policy (the exploratory logs)."""
    import torch

    from diffctl.data import rollout
    from diffctl.envs import VecEnv

    env = _make_env(env_name, device)
    # at least two episodes, so fitting can hold one out for validation
    episodes = max(int(LOG_STEPS * budget) // env.spec.max_steps, 2)
    venv = VecEnv(env, episodes, device=device, seed=seed, validate=False)
    g = torch.Generator(device=device).manual_seed(seed)
    low, high = env.spec.action_bounds(device, env.dtype)
    bounded = bool(torch.isfinite(low).all() and torch.isfinite(high).all())

    def random_policy(obs: torch.Tensor) -> torch.Tensor:
        shape = (obs.shape[0], env.spec.act_dim)
        if not bounded:  # unbounded actions: a unit Gaussian
            return torch.randn(shape, generator=g, device=device)
        return low + (high - low) * torch.rand(shape, generator=g, device=device)

    return rollout(venv, random_policy, env.spec.max_steps)


@functools.lru_cache(maxsize=8)
def _fitted(kind: str, env_name: str, seed: int, budget: float, device: str):
    """A dynamics model of ``kind`` fitted to the random logs (cached per process)."""
    import torch

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
        if planner == "mpc":  # iLQR on the ensemble's mean prediction
            p = _mpc(env, model, settings)
        elif kind == "ensemble":  # PETS trajectory sampling: each sample follows one member
            import torch

            g = torch.Generator(device=spec.device).manual_seed(spec.seed)
            p = _cem(env, model.sampler("tsinf", noise=True, generator=g), settings, spec.seed)
        else:
            p = _cem(env, model, settings, spec.seed)
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

        from diffctl.agents import default_config, evaluate

        module = importlib.import_module(f"diffctl.agents.{algo}")
        default = default_config(algo, spec.env)  # the tuned preset for this env
        steps = max(int(AGENT_STEPS.get(algo, default.total_steps) * spec.budget), 1000)
        if hasattr(default, "num_steps"):  # on-policy: at least one batch of rollouts
            steps = max(steps, default.num_envs * default.num_steps)
        config = dataclasses.replace(default, total_steps=steps)
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


def _loop_curve(history: list[dict[str, Any]]) -> Curve:
    """Return against env steps and wall time (fits and episodes) of an ``mbrl`` history."""
    wall = 0.0
    curve = []
    for h in history:
        wall += h["fit_time"] + h["episode_time"]
        curve.append({"env_steps": float(h["env_steps"]), "wall_time": wall,
                      "return": float(h["return"])})  # fmt: skip
    return curve


def mbrl_row(spec: TaskSpec) -> dict[str, Any]:
    """The model-based loop (``diffctl.models.mbrl``): one random episode, then episodes planned
    with CEM on a model refitted after each; the last model is then planned on with the
    differentiable iLQR MPC and evaluated like the other rows."""
    from diffctl.models.mbrl import MBRLConfig, mbrl

    env = _make_env(spec.env, spec.device)
    iterations = max(round(MBRL_ITERATIONS * spec.budget), 1)
    cfg = MBRLConfig(env=spec.env, iterations=iterations, seed=spec.seed, progress=False)
    result = mbrl(cfg, env=env)
    out = _evaluate_planner(spec, env, _mpc(env, result.model, _settings(spec.env)))
    curve = _loop_curve(result.history)
    steps = int(result.history[-1]["env_steps"])
    return {**out, "env_steps": steps, "curve": curve,
            "notes": f"{cfg.model} model refit over {len(result.history)} episodes "
                     f"({cfg.planner} while learning), iLQR MPC on it"}  # fmt: skip


def pets_row(spec: TaskSpec) -> dict[str, Any]:
    """PETS at robot scale (``diffctl.configs.models.PETS_PRESET``: ensemble, iCEM, refitted
    after every episode): one random episode, then ``PETS_EPISODES * budget`` planned ones. An
    evaluation episode costs as much as a training one here (a whole iCEM solve per step), so
    the row's returns are its last three training episodes (each from a fresh start, with the
    planner as it stood then) rather than separate evaluation episodes."""
    from diffctl.configs.models import PETS_PRESET
    from diffctl.models.mbrl import MBRLConfig, mbrl

    env = _make_env(spec.env, spec.device)
    iterations = max(round(PETS_EPISODES * spec.budget), 1)
    cfg = MBRLConfig(
        env=spec.env, **PETS_PRESET, iterations=iterations, seed=spec.seed, progress=False
    )
    result = mbrl(cfg, env=env)
    planned = [h for h in result.history if h["iteration"] > 0]
    curve = _loop_curve(result.history)
    solve = [h["solve_time"] for h in planned]
    return {
        "returns": [h["return"] for h in planned[-3:]],
        "env_steps": int(result.history[-1]["env_steps"]),
        "solve_ms_per_step": 1e3 * sum(solve) / len(solve),
        "curve": curve,
        "notes": f"PETS ({cfg.planner}), returns of the last {min(3, len(planned))} training "
        "episodes",
    }


def mbpo_row(spec: TaskSpec) -> dict[str, Any]:
    """MBPO at robot scale (``MBPOConfig``'s defaults with ``MBPO_PRESETS`` for the task):
    ``MBPO_STEPS * budget`` env steps, the first 5,000 of them (a quarter at most) random; the
    trained policy is evaluated like the model-free rows."""
    import dataclasses

    from diffctl.agents import evaluate
    from diffctl.configs.models import MBPO_PRESETS, MBPOConfig
    from diffctl.models.mbpo import mbpo

    env = _make_env(spec.env, spec.device)
    steps = max(round(MBPO_STEPS * spec.budget), 1000)
    cfg = MBPOConfig(env=spec.env, **MBPO_PRESETS.get(spec.env, {}), seed=spec.seed)
    cfg = dataclasses.replace(
        cfg, total_steps=steps, random_steps=min(cfg.random_steps, steps // 4), progress=False
    )
    result = mbpo(cfg, env=env)
    ev = evaluate(result.agent, spec.env, episodes=spec.episodes, seed=10_000 + spec.seed)
    curve = [
        {"env_steps": float(h["env_steps"]), "wall_time": h["wall_time"],
         "return": h["return"]}
        for h in result.history
    ]  # fmt: skip
    return {
        "returns": ev["returns"],
        "env_steps": steps,
        "curve": curve,
        "notes": f"MBPO: SAC on {cfg.rollouts_per_step} model rollouts per env step, "
        f"{cfg.updates_per_step} updates per step",
    }


def mpc_irl(spec: TaskSpec) -> dict[str, Any]:
    """Learn a cost from MPC demos by imitation through the differentiable MPC, re-plan with it.

    The expert is the true-dynamics MPC (cold-started, as the imitating MPC is); the learned
    cost is a quadratic ``RewardModel`` (Amos et al. 2018, Sec. 5.2). Env steps: the demos'.
    """
    import torch

    from diffctl.control import MPC, MPCConfig, MPCPolicy
    from diffctl.data import rollout
    from diffctl.irl import MPCImitationConfig, mpc_imitation

    env = _make_env(spec.env, spec.device)
    horizon, iters = 10, 10
    expert = MPCPolicy(
        MPC(env, _reward_cost(env), MPCConfig(horizon=horizon, max_iter=iters)), warm_start=False
    )
    g = torch.Generator(device=spec.device).manual_seed(spec.seed)
    steps = max(int(240 * spec.budget), 40)
    demos = rollout(env, expert, 40, num_envs=max(steps // 40, 1), generator=g)
    angle_dims = (0,) if spec.env == "pendulum" else ()
    cfg = MPCImitationConfig(
        iterations=4, lr=1.0, horizon=horizon, mpc_iters=iters, optimizer="lbfgs",
        angle_dims=angle_dims, seed=spec.seed,
    )  # fmt: skip
    result = mpc_imitation(env, demos, cfg)
    out = _evaluate_policy(spec, env, result.policy(horizon, iters))
    loss0, loss1 = result.history[0]["loss"], result.history[-1]["loss"]
    return {
        **out,
        "env_steps": demos.rewards.numel(),
        "notes": f"cost learned from MPC demos (imitation loss {loss0:.2g} -> {loss1:.2g})",
    }


METHODS: dict[str, Callable[[TaskSpec], dict[str, Any]]] = {
    "mpc": mpc_true,
    "cem": cem_true,
    "mpc-ensemble": _model_row("ensemble", "mpc"),
    "cem-ensemble": _model_row("ensemble", "cem"),
    "mpc-linear": _model_row("linear", "mpc"),
    "mbrl": mbrl_row,
    "pets": pets_row,
    "mbpo": mbpo_row,
    "ppo": _agent_row("ppo"),
    "sac": _agent_row("sac"),
    "ddpg": _agent_row("ddpg"),
    "trpo": _agent_row("trpo"),
    "npg": _agent_row("npg"),
    "dqn": _agent_row("dqn"),
    "es": _agent_row("es"),
    "ars": _agent_row("ars"),
    "mpc-irl": mpc_irl,
}
IRL_METHODS: tuple[str, ...] = ("mpc-irl",)
#: rows sized for robots (an hour each on a CPU): run when named in ``--methods``
ROBOT_METHODS: tuple[str, ...] = ("pets", "mbpo")
#: the seeds' other model-free methods (DQN: discrete actions only): run when named
EXTRA_METHODS: tuple[str, ...] = ("trpo", "npg", "dqn", "es", "ars")
DEFAULT_METHODS: tuple[str, ...] = tuple(
    m for m in METHODS if m not in IRL_METHODS + ROBOT_METHODS + EXTRA_METHODS
)
