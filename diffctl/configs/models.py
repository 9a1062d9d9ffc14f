"""The learned-dynamics settings, ``FitConfig``, ``MBRLConfig`` and ``MBPOConfig``, without torch.

Defined here, apart from ``fit`` (``diffctl.models.training``, which re-exports it, as does
``diffctl.models``) and ``mbrl`` (``diffctl.models.mbrl``, which re-exports ``MBRLConfig``), so
that ``diffctl fit --help`` and ``diffctl mbrl --help`` build their flags without loading torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Literal

from .agents import SACConfig
from .control import TS_MODES

__all__ = ["FitConfig", "MBRLConfig", "MBPOConfig", "MBPO_PRESETS", "PETS_PRESET", "SOURCES"]

#: which logged signal is the state: ``auto`` takes ``states`` when the dataset has them
SOURCES = ("auto", "states", "obs")


@dataclass(frozen=True)
class FitConfig:
    """Training settings of ``fit`` (validated at construction; errors name the field).

    Attributes:
        epochs: maximum passes over the training windows.
        batch_size: windows per minibatch.
        lr: Adam learning rate (None: the model's ``default_lr``).
        weight_decay: L2 penalty (Adam's ``weight_decay``).
        train_horizon: steps of the training loss (None: the model's default; 1 = one-step).
        eval_horizon: ``k`` of the open-loop metric (shortened to the longest window available).
        val_fraction: fraction of episodes held out for validation and early stopping.
        patience: epochs without validation improvement before stopping (0: never stop early).
        max_grad_norm: gradient clipping threshold (None: no clipping).
        max_eval_windows: most ``k``-step windows used by the metric (evenly spaced).
        source: which logged signal is the state: ``states``, ``obs`` or ``auto``.
        seed: seed of the split, bootstrap and minibatch order.
        progress: show a tqdm progress bar.
    """

    epochs: int = 100
    batch_size: int = 256
    lr: float | None = None
    weight_decay: float = 0.0
    train_horizon: int | None = None
    eval_horizon: int = 50
    val_fraction: float = 0.2
    patience: int = 10
    max_grad_norm: float | None = None
    max_eval_windows: int = 2048
    source: Literal["auto", "states", "obs"] = "auto"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_horizon", "max_eval_windows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.train_horizon is not None and (
            isinstance(self.train_horizon, bool)
            or not isinstance(self.train_horizon, int)
            or self.train_horizon < 1
        ):
            raise ValueError(
                f"train_horizon: expected a positive int or None, got {self.train_horizon!r}"
            )
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr: expected > 0 or None, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay: expected >= 0, got {self.weight_decay}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction: expected a value in [0, 1), got {self.val_fraction}")
        if (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, int)
            or self.patience < 0
        ):
            raise ValueError(f"patience: expected an int >= 0, got {self.patience!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm: expected > 0 or None, got {self.max_grad_norm}")
        if self.source not in SOURCES:
            raise ValueError(f"source: expected one of {SOURCES}, got {self.source!r}")


@dataclass(frozen=True)
class MBRLConfig:
    """Settings of ``mbrl`` (defaults: a small PETS-like setup that runs on a CPU).

    Attributes:
        env: registered env name (continuous actions).
        env_options: ``KEY=VALUE`` constructor options of the env (``("swing_up=true",)``;
            values parsed as JSON where possible, else kept as strings).
        model: ``mlp``, ``ensemble`` or ``linear``.
        hidden, num_members: network widths; ensemble size.
        ensemble_elites: members kept for prediction and planning, chosen on held-out episodes
            (None: all; MBPO keeps 5 of 7).
        angle_dims: angle components of the state (None: ``DEFAULT_ANGLE_DIMS`` of the env).
        position_dims: state components the dynamics do not depend on, left out of the
            networks' input (None: the env's ``position_dims``, e.g. half-cheetah's ``x``).
        planner: ``cem``, ``icem`` (Pinneri et al. 2020, with its default colored noise,
            population decay and elite memory), ``mppi`` or ``mpc`` (iLQR on the model's mean
            prediction).
        horizon: planning horizon.
        num_samples, num_elites, plan_iterations: sampling-planner population, CEM elites,
            planner iterations per control step.
        particles: rollouts per sampled sequence, scored by their mean return (with an ensemble
            each through one elite, assigned in balanced blocks; PETS: 20 for 5 members).
        ts_mode: trajectory sampling of ensembles, ``tsinf`` or ``ts1`` (PETS Sec. 4.2).
        compile: compile the sampling planner's rollout with ``torch.compile``.
        planner_options: ``KEY=VALUE`` settings of the planner's own config beyond the ones
            above (``("bound_mode=clip",)`` for CEM, ``("noise_beta=3",)`` for iCEM,
            ``("temperature=0.5",)`` for MPPI; values parsed as JSON where possible).
        iterations: planning episodes (fit + collect rounds).
        initial_episodes: random-action episodes before the first fit.
        episode_steps: steps per episode (None: the env's ``max_steps``).
        eval_episodes: planner evaluation episodes after each iteration (0: none).
        target_return: stop once an iteration's return (the evaluation mean when evaluating)
            reaches it (None: run all iterations).
        refit: ``fresh`` (a new model every iteration) or ``continue`` (train the previous
            model further on all the data: cheaper when the data grow large).
        fit: training settings of each refit.
        seed: seeds the start states, the random actions, the model and the planner.
        progress: show a progress bar over iterations.
    """

    env: str = "pendulum"
    env_options: tuple[str, ...] = ()
    model: Literal["mlp", "ensemble", "linear"] = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    num_members: int = 5
    ensemble_elites: int | None = None
    angle_dims: tuple[int, ...] | None = None
    position_dims: tuple[int, ...] | None = None
    planner: Literal["cem", "icem", "mppi", "mpc"] = "cem"
    horizon: int = 25
    num_samples: int = 300
    num_elites: int = 30
    plan_iterations: int = 4
    particles: int = 1
    ts_mode: Literal["tsinf", "ts1"] = "tsinf"
    compile: bool = False
    planner_options: tuple[str, ...] = ()
    iterations: int = 9
    initial_episodes: int = 1
    episode_steps: int | None = None
    eval_episodes: int = 0
    target_return: float | None = None
    refit: Literal["fresh", "continue"] = "fresh"
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
        _check_elites(self.ensemble_elites, self.num_members)
        if self.refit not in ("fresh", "continue"):
            raise ValueError(f"refit: expected fresh or continue, got {self.refit!r}")
        if self.ts_mode not in TS_MODES:
            raise ValueError(f"ts_mode: expected one of {TS_MODES}, got {self.ts_mode!r}")
        if not isinstance(self.fit, FitConfig):
            raise TypeError(f"fit: expected a FitConfig, got {type(self.fit).__name__}")
        self.env_kwargs()  # validates the KEY=VALUE pairs
        self.planner_config()  # validates the planner's options

    def env_kwargs(self) -> dict[str, Any]:
        """``env_options`` as constructor keyword arguments."""
        return _key_values(self.env_options, "env_options")

    def planner_config(self, **settings: Any) -> Any:
        """The config of ``planner`` (``CEMConfig``, ``ICEMConfig``, ``MPPIConfig`` or
        ``MPCConfig``) from these settings, ``settings`` (what depends on the env and the
        model: bounds, ensemble size) and ``planner_options`` on top. An option the planner's
        config does not have is an error naming the ones it has."""
        from dataclasses import fields

        from .control import CEMConfig, ICEMConfig, MPCConfig, MPPIConfig

        if self.planner == "mpc":
            cls: type = MPCConfig
            own = dict(horizon=self.horizon, max_iter=self.plan_iterations * 5)
        else:
            cls = {"cem": CEMConfig, "icem": ICEMConfig, "mppi": MPPIConfig}[self.planner]
            own = dict(
                horizon=self.horizon,
                num_samples=self.num_samples,
                iterations=self.plan_iterations,
                particles=self.particles,
                ts_mode=self.ts_mode,
                compile=self.compile,
                seed=self.seed,
                ensemble_size=0,  # the loop sets it from the model (its elites)
            )
            if self.planner != "mppi":
                own["num_elites"] = self.num_elites
        options = _key_values(self.planner_options, "planner_options")
        known = {f.name for f in fields(cls)}
        for key in options:
            if key in own or key not in known:
                why = "set by the loop" if key in own else f"{cls.__name__} has no such field"
                free = ", ".join(sorted(known - set(own) - set(settings)))
                raise ValueError(f"planner_options: {key!r}: {why} (options: {free})")
        try:
            return cls(**{**own, **settings, **options})
        except (TypeError, ValueError) as e:
            raise ValueError(f"planner_options: {e}") from e


def _check_elites(elites: int | None, members: int) -> None:
    """``ensemble_elites``: None or an int in ``[1, members]``."""
    if elites is not None and (
        isinstance(elites, bool) or not isinstance(elites, int) or not 1 <= elites <= members
    ):
        raise ValueError(
            f"ensemble_elites: expected an int in [1, num_members={members}] or None, "
            f"got {elites!r}"
        )


def _key_values(items: tuple[str, ...], name: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict, values parsed as JSON where possible (else strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{name}: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


#: PETS on MuJoCo locomotion (Chua et al. 2018; mbrl-lib's half-cheetah preset, with iCEM in
#: place of CEM for its sample efficiency): 5 Gaussian members of 3 x 200, the previous model
#: trained further after every episode, iCEM over 25 steps compiled with 100 samples x 5
#: iterations, each sequence scored by the mean return of 5 particles over the elites (TS-inf;
#: PETS scores by its particles' mean rather than by one member's guess, which the best of many
#: samples exploits). PETS's 4 x 200 and 30 steps take about 1.6x the time per solve; the
#: smaller sizes may return a little less (README, "Model-based control at robot scale").
#: ``MBRLConfig(env=..., **PETS_PRESET, ...)``.
PETS_PRESET: dict[str, Any] = dict(
    model="ensemble",
    hidden=(200, 200, 200),
    num_members=5,
    planner="icem",
    horizon=25,
    num_samples=100,
    num_elites=10,
    plan_iterations=5,
    particles=5,
    compile=True,
    initial_episodes=1,
    refit="continue",
    fit=FitConfig(
        epochs=100,
        batch_size=256,
        lr=1e-3,
        val_fraction=0.1,
        patience=5,
        eval_horizon=10,
        progress=False,
    ),
)


@dataclass(frozen=True)
class MBPOConfig:
    """Settings of ``diffctl.models.mbpo.mbpo`` (Janner et al. 2019, "When to Trust Your
    Model"; defaults: its half-cheetah settings, with 20 SAC updates per env step, the low end
    of its 20 to 40, for a CPU's time).

    Attributes:
        env: registered env name (continuous actions).
        env_options: ``KEY=VALUE`` constructor options of the env.
        hidden, num_members, ensemble_elites: the Gaussian ensemble (MBPO: 4 x 200, 5 of 7).
        angle_dims, position_dims: as in ``MBRLConfig``.
        total_steps: real env steps of the run.
        random_steps: first env steps with uniformly random actions (MBPO: 5,000).
        model_train_every: env steps between refits of the model, each followed by a batch of
            model rollouts (MBPO: 250).
        rollouts_per_step: model rollouts per env step, all started after each refit from
            real states drawn from the data (``rollouts_per_step * model_train_every`` at a
            time; MBPO: 400, i.e. 100,000 every 250 steps).
        rollout_schedule: ``(start, end, min_length, max_length)``: the model rollouts last
            ``min_length`` steps until env step ``start``, then a length rising linearly to
            ``max_length`` at ``end`` (MBPO's schedule in env steps; its half-cheetah keeps 1).
        model_buffer_steps: env steps of rollouts the model buffer keeps (MBPO keeps one epoch:
            1,000 env steps, 400,000 rollouts at length 1).
        updates_per_step: SAC gradient steps per env step (MBPO: 20 to 40; on the half-cheetah
            10 learn more slowly, README).
        real_ratio: fraction of each SAC minibatch drawn from the real data (MBPO: 0.05).
        target_entropy: SAC's entropy target (None: ``-act_dim``; MBPO's half-cheetah: -3).
        sac: the SAC learner's settings (networks, learning rates, batch size, gamma, tau;
            its ``total_steps``, ``buffer_size``, ``learning_starts`` and ``updates_per_step``
            are unused: the fields above schedule the run).
        fit: training settings of each refit (the previous model trained further).
        episode_steps: steps per episode (None: the env's ``max_steps``).
        eval_episodes: episodes of the deterministic policy after each training episode, from
            fixed start states (0: none); not counted as env steps nor added to the data.
        seed: seeds the start states, the random actions, the networks and every sample.
        progress: show a progress bar over env steps.
    """

    env: str = "mujoco:HalfCheetah-v5"
    env_options: tuple[str, ...] = ()
    hidden: tuple[int, ...] = (200, 200, 200, 200)
    num_members: int = 7
    ensemble_elites: int | None = 5
    angle_dims: tuple[int, ...] | None = None
    position_dims: tuple[int, ...] | None = None
    total_steps: int = 20_000
    random_steps: int = 5_000
    model_train_every: int = 250
    rollouts_per_step: int = 400
    rollout_schedule: tuple[int, int, int, int] = (20_000, 100_000, 1, 1)
    model_buffer_steps: int = 1_000
    updates_per_step: int = 20
    real_ratio: float = 0.05
    target_entropy: float | None = None
    sac: SACConfig = SACConfig(
        batch_size=256,
        actor_lr=3e-4,
        critic_lr=3e-4,
        alpha_lr=3e-4,
        policy_frequency=1,
        alpha=1.0,
        hidden=(256, 256),
    )
    fit: FitConfig = FitConfig(
        epochs=100,
        batch_size=256,
        lr=1e-3,
        val_fraction=0.2,
        patience=5,
        eval_horizon=10,
        progress=False,
    )
    episode_steps: int | None = None
    eval_episodes: int = 0
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in (
            "num_members",
            "total_steps",
            "model_train_every",
            "rollouts_per_step",
            "model_buffer_steps",
            "updates_per_step",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        for name in ("random_steps", "eval_episodes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: expected an int >= 0, got {v!r}")
        if self.random_steps >= self.total_steps:
            raise ValueError(
                f"random_steps: {self.random_steps} leaves no learning step of total_steps "
                f"{self.total_steps}"
            )
        v = self.episode_steps
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"episode_steps: expected a positive int or None, got {v!r}")
        _check_elites(self.ensemble_elites, self.num_members)
        sched = self.rollout_schedule
        if (
            len(sched) != 4
            or any(isinstance(v, bool) or not isinstance(v, int) for v in sched)
            or not 0 <= sched[0] < sched[1]
            or not 1 <= sched[2]
            or not 1 <= sched[3]
        ):
            raise ValueError(
                "rollout_schedule: expected (start, end, min_length, max_length) ints with "
                f"0 <= start < end and lengths >= 1, got {sched!r}"
            )
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ValueError(f"real_ratio: expected a value in [0, 1], got {self.real_ratio!r}")
        if not isinstance(self.sac, SACConfig):
            raise TypeError(f"sac: expected a SACConfig, got {type(self.sac).__name__}")
        if not isinstance(self.fit, FitConfig):
            raise TypeError(f"fit: expected a FitConfig, got {type(self.fit).__name__}")
        self.env_kwargs()  # validates the KEY=VALUE pairs

    def env_kwargs(self) -> dict[str, Any]:
        """``env_options`` as constructor keyword arguments."""
        return _key_values(self.env_options, "env_options")

    def rollout_length(self, env_step: int) -> int:
        """Model rollout length at ``env_step`` (``rollout_schedule``)."""
        start, end, lo, hi = self.rollout_schedule
        frac = min(max((env_step - start) / (end - start), 0.0), 1.0)
        return int(lo + frac * (hi - lo))


#: MBPO's settings per task on top of ``MBPOConfig``'s defaults (MBPO's half-cheetah ones, with
#: its entropy target -3 there, and LayerNorm critics: without them SAC's critics diverged on
#: the model's data on one seed of three): ``MBPOConfig(env=env, **MBPO_PRESETS.get(env, {}))``.
MBPO_PRESETS: dict[str, dict[str, Any]] = {
    "mujoco:HalfCheetah-v5": {
        "target_entropy": -3.0,
        "sac": replace(MBPOConfig().sac, critic_layer_norm=True),
    }
}
