"""Model-based RL loop: collect with an MPC policy planning on the learned model, refit, repeat.

The lecture notes' "planning actions" loop (collect trajectories, estimate the motion model
``argmin ||x' - p_theta(x, u)||``, plan ``argmax sum_k r(x_k, u_k)`` subject to
``x_{k+1} = p_theta(x_k, u_k)``) and PETS (Chua et al. 2018, Alg. 1):

1. run ``initial_episodes`` episodes with uniformly random actions;
2. for each iteration: fit a fresh model to all data so far, then run one episode with an
   ``MPCPolicy`` whose planner (CEM, iCEM, MPPI or iLQR ``MPC``) plans on the model, and add
   it to the data. Ensembles plan with trajectory sampling (``ts_mode``, ``particles`` per
   sequence).

The reward is the env's own ``reward`` unless a learned ``reward_fn(x, u, x_next) -> [N]`` is
given. Optionally the planner is evaluated on ``eval_episodes`` fixed start states after each
iteration (these evaluation episodes are not added to the data nor counted as env steps).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from diffctl.control import (
    CEM,
    ICEM,
    MPC,
    MPPI,
    CEMConfig,
    FunctionCost,
    ICEMConfig,
    MPCConfig,
    MPCPolicy,
    MPPIConfig,
)
from diffctl.data import Trajectory, rollout
from diffctl.envs import Env, make

from .base import DynamicsModel
from .ensemble import TS_MODES, EnsembleDynamics
from .linear import LinearModel
from .mlp import MLPDynamics
from .training import FitConfig, fit

__all__ = ["MBRLConfig", "MBRLResult", "mbrl", "DEFAULT_ANGLE_DIMS", "make_planner"]

#: state components that are angles, per env (fed to the networks as sin/cos)
DEFAULT_ANGLE_DIMS: dict[str, tuple[int, ...]] = {
    "pendulum": (0,),
    "cartpole": (2,),
    "cartpole-continuous": (2,),
    "acrobot": (0, 1),
}

Reward = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class MBRLConfig:
    """Settings of ``mbrl`` (defaults: a small PETS-like setup that runs on a CPU).

    Attributes:
        env: registered env name (continuous actions).
        env_options: ``KEY=VALUE`` constructor options of the env (``("swing_up=true",)``;
            values parsed as JSON where possible, else kept as strings).
        model: ``mlp``, ``ensemble`` or ``linear``.
        hidden, num_members: network widths; ensemble size.
        angle_dims: angle components of the state (None: ``DEFAULT_ANGLE_DIMS`` of the env).
        planner: ``cem``, ``icem`` (Pinneri et al. 2020, with its default colored noise,
            population decay and elite memory), ``mppi`` or ``mpc`` (iLQR on the model's mean
            prediction).
        horizon: planning horizon.
        num_samples, num_elites, plan_iterations: sampling-planner population, CEM elites,
            planner iterations per control step.
        particles: rollouts per sampled sequence (ensembles: a multiple of ``num_members``).
        ts_mode: trajectory sampling of ensembles, ``tsinf`` or ``ts1`` (PETS Sec. 4.2).
        iterations: planning episodes (fit + collect rounds).
        initial_episodes: random-action episodes before the first fit.
        episode_steps: steps per episode (None: the env's ``max_steps``).
        eval_episodes: planner evaluation episodes after each iteration (0: none).
        target_return: stop once an iteration's return (the evaluation mean when evaluating)
            reaches it (None: run all iterations).
        fit: training settings of each refit (a fresh model every iteration).
        seed: seeds the start states, the random actions, the model and the planner.
        progress: show a progress bar over iterations.
    """

    env: str = "pendulum"
    env_options: tuple[str, ...] = ()
    model: Literal["mlp", "ensemble", "linear"] = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    num_members: int = 5
    angle_dims: tuple[int, ...] | None = None
    planner: Literal["cem", "icem", "mppi", "mpc"] = "cem"
    horizon: int = 25
    num_samples: int = 300
    num_elites: int = 30
    plan_iterations: int = 4
    particles: int = 1
    ts_mode: Literal["tsinf", "ts1"] = "tsinf"
    iterations: int = 9
    initial_episodes: int = 1
    episode_steps: int | None = None
    eval_episodes: int = 0
    target_return: float | None = None
    fit: FitConfig = FitConfig(
        epochs=50,
        batch_size=128,
        lr=3e-3,
        val_fraction=0.0,
        patience=5,
        eval_horizon=25,
        progress=False,
    )
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in (
            "num_members",
            "horizon",
            "num_samples",
            "num_elites",
            "plan_iterations",
            "particles",
            "iterations",
            "initial_episodes",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        for name in ("episode_steps",):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name}: expected a positive int or None, got {v!r}")
        if (
            isinstance(self.eval_episodes, bool)
            or not isinstance(self.eval_episodes, int)
            or (self.eval_episodes < 0)
        ):
            raise ValueError(f"eval_episodes: expected an int >= 0, got {self.eval_episodes!r}")
        if self.num_elites > self.num_samples:
            raise ValueError(f"num_elites: must be <= num_samples ({self.num_samples})")
        if self.model not in ("mlp", "ensemble", "linear"):
            raise ValueError(f"model: expected mlp, ensemble or linear, got {self.model!r}")
        if self.planner not in ("cem", "icem", "mppi", "mpc"):
            raise ValueError(f"planner: expected cem, icem, mppi or mpc, got {self.planner!r}")
        if self.ts_mode not in TS_MODES:
            raise ValueError(f"ts_mode: expected one of {TS_MODES}, got {self.ts_mode!r}")
        if not isinstance(self.fit, FitConfig):
            raise TypeError(f"fit: expected a FitConfig, got {type(self.fit).__name__}")
        self.env_kwargs()  # validates the KEY=VALUE pairs

    def env_kwargs(self) -> dict[str, Any]:
        """``env_options`` as constructor keyword arguments."""
        out: dict[str, Any] = {}
        for item in self.env_options:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"env_options: expected KEY=VALUE, got {item!r}")
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
        return out


@dataclass
class MBRLResult:
    """Outcome of ``mbrl``: the last fitted ``model``, the ``policy`` that planned on it, all
    real ``data`` collected (one column per episode) and ``history`` (one dict per episode:
    iteration (0 for random episodes), env_steps so far, return, eval_return, model metrics,
    fit_time, episode_time, x0 (the episode's start state))."""

    model: DynamicsModel
    policy: MPCPolicy | None
    data: Trajectory
    history: list[dict[str, Any]] = field(default_factory=list)


def _build_model(config: MBRLConfig, env: Env) -> DynamicsModel:
    nx, nu = env.spec.state_dim, env.spec.act_dim
    angles = config.angle_dims
    if angles is None:
        angles = DEFAULT_ANGLE_DIMS.get(env.spec.name, ())
    if config.model == "linear":
        return LinearModel(nx, nu)
    if config.model == "mlp":
        return MLPDynamics(nx, nu, hidden=config.hidden, angle_dims=angles)
    return EnsembleDynamics(
        nx, nu, num_members=config.num_members, hidden=config.hidden, angle_dims=angles
    )


def make_planner(
    model: DynamicsModel,
    reward: Reward,
    env: Env,
    config: MBRLConfig,
    generator: torch.Generator | None = None,
) -> Any:
    """The planner of ``config`` on ``model`` maximising ``reward`` within ``env``'s bounds.

    Sampling planners on an ``EnsembleDynamics`` use trajectory sampling: every sampled action
    sequence is rolled out by ``particles`` particles, row ``i`` by member ``i % E`` (``tsinf``)
    or re-drawn members (``ts1``), with the members' Gaussian noise.
    """
    lo, hi = env.spec.action_bounds(env.device, env.dtype)
    if config.planner == "mpc":

        def stage_cost(x: Tensor, u: Tensor) -> Tensor:
            return -reward(x, u, model(x, u))

        cfg = MPCConfig(
            horizon=config.horizon,
            u_lower=env.spec.action_low,
            u_upper=env.spec.action_high,
            max_iter=config.plan_iterations * 5,
        )
        return MPC(model, FunctionCost(stage_cost), cfg, nu=env.spec.act_dim)
    dynamics: Callable[..., Tensor] = model
    if isinstance(model, EnsembleDynamics):
        dynamics = model.sampler(config.ts_mode, noise=True, generator=generator)
    common = dict(reward=reward, action_low=lo, action_high=hi, generator=generator)
    if config.planner in ("cem", "icem"):  # the same settings; iCEM adds its own defaults
        planner, config_cls = (CEM, CEMConfig) if config.planner == "cem" else (ICEM, ICEMConfig)
        elite_cfg = config_cls(
            horizon=config.horizon,
            num_samples=config.num_samples,
            num_elites=config.num_elites,
            iterations=config.plan_iterations,
            particles=config.particles,
            seed=config.seed,
        )
        return planner(dynamics, config=elite_cfg, **common)
    cfg = MPPIConfig(
        horizon=config.horizon,
        num_samples=config.num_samples,
        iterations=config.plan_iterations,
        particles=config.particles,
        seed=config.seed,
    )
    return MPPI(dynamics, config=cfg, **common)


def _random_policy(env: Env, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
    lo, hi = env.spec.action_bounds(env.device, env.dtype)

    def policy(obs: Tensor) -> Tensor:
        n, nu = obs.shape[0], env.spec.act_dim
        r = torch.rand(n, nu, generator=generator, dtype=env.dtype, device=env.device)
        return lo + (hi - lo) * r

    return policy


def mbrl(
    config: MBRLConfig | None = None,
    *,
    env: Env | None = None,
    reward_fn: Reward | None = None,
) -> MBRLResult:
    """Run the model-based loop (see module docstring).

    Args:
        config: ``MBRLConfig``.
        env: the real system (default: ``make(config.env, **config.env_options)``).
        reward_fn: learned or hand-written ``r(x, u, x_next) -> [N]`` to plan with (default:
            the env's reward). Returns are always measured with the env's reward.
    """
    config = MBRLConfig() if config is None else config
    if not isinstance(config, MBRLConfig):
        raise TypeError(f"config: expected an MBRLConfig, got {type(config).__name__}")
    env = make(config.env, **config.env_kwargs()) if env is None else env
    if not isinstance(env, Env):
        raise TypeError(f"env: expected a diffctl Env, got {type(env).__name__}")
    if env.spec.discrete:
        raise ValueError(f"env: {env.spec.name} has discrete actions; use a continuous variant")
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
    env_steps = 0
    for _ in range(config.initial_episodes):
        t0 = time.perf_counter()
        tr = rollout(env, _random_policy(env, gen), steps, x0=env.initial_state(1, gen))
        episodes.append(tr)
        env_steps += steps
        history.append(
            {
                "iteration": 0,
                "x0": tr.states[0, 0].tolist(),
                "env_steps": env_steps,
                "return": tr.rewards.sum().item(),
                "eval_return": None,
                "fit_time": 0.0,
                "episode_time": time.perf_counter() - t0,
            }
        )
    model: DynamicsModel | None = None
    policy: MPCPolicy | None = None
    bar = tqdm(
        range(1, config.iterations + 1),
        desc=f"mbrl {env.spec.name}",
        disable=not config.progress,
        leave=False,
    )
    for it in bar:
        t0 = time.perf_counter()
        torch.manual_seed(config.seed + it)  # network initialisation
        model = _build_model(config, env).to(device=env.device, dtype=env.dtype)
        data = Trajectory.cat(episodes, dim=1)
        fitted = fit(model, data, replace(config.fit, seed=config.seed + it, source="states"))
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        fit_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        plan_gen = torch.Generator(env.device).manual_seed(config.seed + 1000 + it)
        policy = MPCPolicy(make_planner(model, reward, env, config, plan_gen))
        tr = rollout(env, policy, steps, x0=env.initial_state(1, gen))
        episodes.append(tr)
        env_steps += steps
        ret = tr.rewards.sum().item()
        row = {
            "iteration": it,
            "x0": tr.states[0, 0].tolist(),
            "env_steps": env_steps,
            "return": ret,
            "eval_return": None,
            "fit_time": fit_time,
            "episode_time": time.perf_counter() - t0,
            "model_k_step_nrmse": fitted.metrics["k_step_nrmse"],
            "model_one_step_nmse": fitted.metrics["one_step_nmse"],
        }
        if eval_x0 is not None:
            policy.reset()
            ev = rollout(env, policy, steps, x0=eval_x0)
            row["eval_return"] = ev.rewards.sum(0).mean().item()
        history.append(row)
        score = row["eval_return"] if eval_x0 is not None else ret
        bar.set_postfix(ret=f"{score:.1f}", steps=env_steps)
        if config.target_return is not None and score >= config.target_return:
            break
    bar.close()
    assert model is not None  # iterations >= 1
    return MBRLResult(
        model=model, policy=policy, data=Trajectory.cat(episodes, dim=1), history=history
    )
