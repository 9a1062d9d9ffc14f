"""Predictive sampling on a MuJoCo model: every sample's whole horizon in one ``mujoco.rollout``.

``PredictiveSampling`` is the sampling planner of MuJoCo MPC (MJPC; Howell et al. 2022,
"Predictive Sampling: Real-time Behaviour Synthesis with MuJoCo", arXiv:2212.00541), planning
on the env's own MuJoCo model:

1. The nominal plan is a spline through ``num_knots`` control knots spread over the horizon
   (zero-order hold or linear interpolation), evaluated at the start of every control step and
   held for the step, as the true system receives it.
2. Each iteration perturbs the nominal knots with Gaussian noise (``noise_std`` times the half
   width of each actuator's control range), clamps them to the range, keeps the unperturbed
   nominal as sample 0, and rolls every sample out for the whole horizon: all ``B * K`` rows
   and ``T * S`` substeps (``S`` = ``planning_substeps`` per control step) in **one batched
   ``mujoco.rollout`` call** in C, multi-threaded over rows; no Python loop over samples or
   time. The cost is evaluated on the returned states in torch, batched over rows and time.
3. ``update = "best"`` (predictive sampling) keeps the lowest-cost sample, the nominal
   included, so a plan never gets worse on the model; ``"mppi"`` moves the knots to the
   exponentially weighted mean of the samples, ``exp(-(S_k - min S) / temperature)``
   (Williams et al. 2017, without the noise term), for a side-by-side comparison.
4. Receding horizon (``act``): between re-plans the controller plays the nominal spline; at a
   re-plan, the nominal is resampled at the new knot times, shifted by the time elapsed (MJPC's
   nominal-plan update; time beyond the last knot holds its value), so the search continues
   from where it was. ``replan_every > 1`` re-plans at a coarser rate than every control step.

The planning model: like MJPC's agent (``agent_timestep``, ``agent_integrator``), the planner
plans on a copy of the true model whose time step may be coarser: ``planning_substeps``
substeps per control step (``None``: the env's own ``frame_skip``, i.e. exactly the true
model) and ``planning_integrator`` (``None``: the model's). The copy takes the env model's
masses, damping, gears and frictions (what ``env.params`` writes) at every plan. ``plan``
implements the ``Planner`` protocol (``MPCPolicy`` can drive it; it re-plans every step from
the shifted warm start).

The cost is a callable ``cost(x [R, T, nx], u [R, T, nu]) -> [R]`` in torch (float64, on the
CPU), ``x[:, t]`` the state after control step ``t`` in the env's layout ``[qpos, qvel, act,
sensordata]`` (the sensors as MuJoCo computed them at the start of the step's last substep of
the planning model).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import PlanResult

__all__ = ["PredictiveSamplingConfig", "PredictiveSampling", "UPDATES", "INTERPOLATIONS"]

UPDATES = ("best", "mppi")
INTERPOLATIONS = ("zero", "linear")
_PARAM_FIELDS = ("body_mass", "dof_damping", "actuator_gear", "geom_friction")


@dataclass(frozen=True)
class PredictiveSamplingConfig:
    """Settings of ``PredictiveSampling`` (defaults: the humanoid balance on 2 CPU cores).

    MJPC's humanoid stand task plans 0.35 s ahead on its model at a 0.015 s agent time step
    with 3 spline knots. The defaults here were tuned on gymnasium's humanoid (ball feet,
    no ankles, so standing is an active balance) at ~1,500 planning-model steps per control
    step: 96 samples over 0.24 s (16 steps of 0.015 s; 48 samples, or 96 re-planned every
    other step, failed twice as often under pushes, a longer horizon at the same budget
    failed sooner), one Euler step of
    0.015 s per control step in the planning model (the true model's RK4 at 0.015 s is
    unstable; at 2 substeps it cost 2-3x for no measured gain), and wide noise (half the
    control range), which beat 0.1-0.3 there.

    Attributes:
        horizon: planning horizon in control steps (of ``env.spec.dt``).
        num_samples: rollouts per iteration, the nominal included.
        num_knots: spline knots over the horizon (MJPC humanoid: 3).
        interpolation: ``"zero"`` (zero-order hold) or ``"linear"`` between knots.
        noise_std: knot noise, as a fraction of each actuator's half control range.
        noise_scales: multipliers of ``noise_std`` the samples cycle through (sample ``k``
            gets ``noise_scales[(k - 1) % len]``): small steps refine the nominal while large
            ones explore, in the same batch.
        update: ``"best"`` (predictive sampling) or ``"mppi"`` (weighted mean).
        temperature: MPPI's ``lambda`` (in cost units); only with ``update = "mppi"``.
        iterations: sampling iterations per re-plan.
        replan_every: control steps between re-plans in ``act``.
        planning_substeps: substeps per control step of the planning model (its time step
            is ``env.spec.dt / planning_substeps``); ``None``: the env's frame skip.
        planning_integrator: ``"euler"``, ``"rk4"``, ``"implicit"``, ``"implicitfast"`` or
            ``None`` (the model's). ``planning_substeps=None, planning_integrator=None``
            plans on exactly the env's model.
        nthread: rollout threads (``None``: ``torch.get_num_threads()``).
        seed: seed of the noise.
    """

    horizon: int = 16
    num_samples: int = 96
    num_knots: int = 3
    interpolation: str = "linear"
    noise_std: float = 0.5
    noise_scales: tuple[float, ...] = (1.0,)
    update: str = "best"
    temperature: float = 1.0
    iterations: int = 1
    replan_every: int = 1
    planning_substeps: int | None = 1
    planning_integrator: str | None = "euler"
    nthread: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("horizon", "num_samples", "num_knots", "iterations", "replan_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        for name in ("planning_substeps", "nthread"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name}: expected a positive int or None, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected an int >= 0, got {self.seed!r}")
        if self.num_knots > self.horizon:
            raise ValueError(
                f"num_knots: must be <= horizon ({self.horizon}), got {self.num_knots}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation: expected one of {INTERPOLATIONS}, got {self.interpolation!r}"
            )
        if self.update not in UPDATES:
            raise ValueError(f"update: expected one of {UPDATES}, got {self.update!r}")
        if not (isinstance(self.noise_std, float | int) and self.noise_std >= 0):
            raise ValueError(f"noise_std: expected a number >= 0, got {self.noise_std!r}")
        if not (
            isinstance(self.noise_scales, tuple)
            and self.noise_scales
            and all(isinstance(v, float | int) and v > 0 for v in self.noise_scales)
        ):
            raise ValueError(
                f"noise_scales: expected a non-empty tuple of positive numbers, "
                f"got {self.noise_scales!r}"
            )
        if not (isinstance(self.temperature, float | int) and self.temperature > 0):
            raise ValueError(f"temperature: expected a positive number, got {self.temperature!r}")
        if self.planning_integrator not in (None, "euler", "rk4", "implicit", "implicitfast"):
            raise ValueError(
                "planning_integrator: expected None, 'euler', 'rk4', 'implicit' or "
                f"'implicitfast', got {self.planning_integrator!r}"
            )


def _interpolation_matrix(times: np.ndarray, knot_times: np.ndarray, kind: str) -> np.ndarray:
    """``W [len(times), P]``: values at ``times`` = ``W @ knots`` (clamped outside the knots)."""
    p = knot_times.size
    w = np.zeros((times.size, p))
    if p == 1:
        w[:, 0] = 1.0
        return w
    t = np.clip(times, knot_times[0], knot_times[-1])
    j = np.clip(np.searchsorted(knot_times, t, side="right") - 1, 0, p - 2)
    frac = (t - knot_times[j]) / (knot_times[j + 1] - knot_times[j])
    rows = np.arange(times.size)
    if kind == "zero":
        at_end = frac >= 1.0 - 1e-12
        w[rows, np.where(at_end, j + 1, j)] = 1.0
    else:
        w[rows, j] = 1.0 - frac
        w[rows, j + 1] += frac
    return w


class PredictiveSampling:
    """Sampling-based MPC on a ``MujocoEnv``'s model (see the module docstring).

    Args:
        env: a ``MujocoEnv`` (``mjcf:``/``mujoco:`` env): its model, control range and ``dt``.
        cost: ``cost(x [R, T, nx], u [R, T, nu]) -> [R]`` in torch (float64).
        config: ``PredictiveSamplingConfig``.
    """

    def __init__(
        self,
        env: Any,
        cost: Callable[[Tensor, Tensor], Tensor],
        config: PredictiveSamplingConfig | None = None,
    ) -> None:
        sim = getattr(env, "sim", None)
        if sim is None or not hasattr(sim, "model") or not hasattr(sim, "nphys"):
            raise TypeError(f"env: expected a MujocoEnv, got {type(env).__name__}")
        if not callable(cost):
            raise TypeError(f"cost: expected a callable, got {type(cost).__name__}")
        self.config = config = config or PredictiveSamplingConfig()
        if not isinstance(config, PredictiveSamplingConfig):
            raise TypeError(
                f"config: expected a PredictiveSamplingConfig, got {type(config).__name__}"
            )
        import mujoco
        from mujoco import rollout

        self.env, self.cost, self.mujoco = env, cost, mujoco
        self.nu, self.nphys, self.nx = sim.nu, sim.nphys, sim.nx
        self.dt = float(env.spec.dt)
        low = np.asarray(env.spec.action_low, dtype=np.float64)
        high = np.asarray(env.spec.action_high, dtype=np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError("env: every actuator needs a finite control range to sample in")
        self.low, self.high = low, high
        self.half_range = 0.5 * (high - low)
        self.substeps = config.planning_substeps or int(sim.frame_skip)
        model = copy.copy(sim.model)
        model.opt.timestep = self.dt / self.substeps
        if config.planning_integrator is not None:
            model.opt.integrator = getattr(
                mujoco.mjtIntegrator, f"mjINT_{config.planning_integrator.upper()}"
            )
        self.model = model
        self.nthread = config.nthread or torch.get_num_threads()
        self._pool = rollout.Rollout(nthread=self.nthread)
        self._datas = [mujoco.MjData(model) for _ in range(self.nthread)]
        self.nstate = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        t = config.horizon
        self.knot_times = np.linspace(0.0, (t - 1) * self.dt, config.num_knots)
        self._w = _interpolation_matrix(
            np.arange(t) * self.dt, self.knot_times, config.interpolation
        )  # [T, P]
        self.rng = np.random.default_rng(config.seed)
        self._knots: np.ndarray | None = None  # [B, P, nu] nominal of ``act``
        self._age = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ helpers
    @property
    def horizon(self) -> int:
        return self.config.horizon

    def close(self) -> None:
        """Shut the planner's rollout thread pool down (it is unusable afterwards)."""
        self._pool.close()

    def _sync_params(self) -> None:
        """Copy the physical parameters that ``env.params`` writes (masses, damping, gears,
        frictions) from the env's model into the planning model."""
        src = self.env.sim.model
        for name in _PARAM_FIELDS:
            getattr(self.model, name)[:] = getattr(src, name)

    def actions_of(self, knots: np.ndarray) -> np.ndarray:
        """Per-step actions ``[..., T, nu]`` of knots ``[..., P, nu]``."""
        return np.einsum("tp,...pu->...tu", self._w, knots)

    def shift(self, knots: np.ndarray, steps: int) -> np.ndarray:
        """Knots ``[..., P, nu]`` of the spline moved ``steps`` control steps ahead."""
        if steps == 0:
            return knots
        w = _interpolation_matrix(
            self.knot_times + steps * self.dt, self.knot_times, self.config.interpolation
        )
        return np.einsum("qp,...pu->...qu", w, knots)

    def rollout(self, x0: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """States ``[R, T, nx]`` after each control step from ``x0 [R, >= nphys]`` under
        per-step actions ``[R, T, nu]``: one batched ``mujoco.rollout`` call."""
        r, t, _ = actions.shape
        s = self.substeps
        state0 = np.zeros((r, self.nstate))
        state0[:, 1:] = x0[:, : self.nphys]
        ctrl = np.ascontiguousarray(np.repeat(actions, s, axis=1))  # [R, T*S, nu]
        state, sens = self._pool.rollout(self.model, self._datas, state0, ctrl, nstep=t * s)
        last = np.arange(s - 1, t * s, s)
        return np.concatenate([state[:, last, 1:], sens[:, last]], axis=2)

    # ------------------------------------------------------------------ planning
    def optimise(self, x0: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """``iterations`` sampling iterations from nominal knots ``[B, P, nu]`` at ``x0
        [B, nx]``; returns the new knots and info (``cost [B]``, ``nominal_cost [B]``)."""
        cfg = self.config
        b, p, nu = knots.shape
        k = cfg.num_samples
        self._sync_params()
        x_rows = np.repeat(x0, k, axis=0)  # [B*K, nx]
        scales = np.resize(np.asarray(cfg.noise_scales, dtype=np.float64), k - 1)
        scales = np.concatenate([[0.0], scales])[None, :, None, None]  # sample 0: the nominal
        nominal_cost = None
        for _ in range(cfg.iterations):
            noise = self.rng.standard_normal((b, k, p, nu)) * (cfg.noise_std * self.half_range)
            noise *= scales
            cand = np.clip(knots[:, None] + noise, self.low, self.high)  # [B, K, P, nu]
            acts = self.actions_of(cand).reshape(b * k, cfg.horizon, nu)
            xs = self.rollout(x_rows, acts)
            c = self.cost(torch.from_numpy(xs), torch.from_numpy(acts))
            c = c.detach().to("cpu", torch.float64).numpy().reshape(b, k)
            c = np.where(np.isfinite(c), c, np.inf)
            if nominal_cost is None:
                nominal_cost = c[:, 0].copy()
            if cfg.update == "best":
                best = np.argmin(c, axis=1)
                knots = cand[np.arange(b), best]
                cost = c[np.arange(b), best]
            else:
                z = -(c - c.min(axis=1, keepdims=True)) / cfg.temperature
                w = np.exp(z)
                w /= w.sum(axis=1, keepdims=True)
                knots = np.clip(np.einsum("bk,bkpu->bpu", w, cand), self.low, self.high)
                cost = (w * c).sum(axis=1)
        return knots, {"cost": cost, "nominal_cost": nominal_cost}

    def plan(self, x0: Tensor, warm_start: Tensor | None = None) -> PlanResult:
        """``Planner`` protocol: plan from states ``x0 [B, nx]``; ``warm_start [T, B, nu]``
        (read at the knot steps) is the nominal, zeros (clamped into the range) without one."""
        t0 = time.perf_counter()
        x = self._states(x0)
        b = x.shape[0]
        if warm_start is None:
            knots = np.broadcast_to(
                np.clip(0.0, self.low, self.high), (b, self.config.num_knots, self.nu)
            ).copy()
        else:
            w = warm_start.detach().to("cpu", torch.float64).numpy()
            if w.shape != (self.horizon, b, self.nu):
                raise ValueError(
                    f"warm_start: expected shape {(self.horizon, b, self.nu)}, got {w.shape}"
                )
            idx = np.rint(self.knot_times / self.dt).astype(int)
            knots = w[idx].transpose(1, 0, 2).copy()
        knots, info = self.optimise(x, knots)
        acts = self.actions_of(knots)  # [B, T, nu]
        xs = self.rollout(x, acts)
        dev, dt = x0.device, x0.dtype
        states = np.concatenate([x[:, None], xs], axis=1).transpose(1, 0, 2)
        return PlanResult(
            actions=torch.from_numpy(acts.transpose(1, 0, 2).copy()).to(dev, dt),
            states=torch.from_numpy(states.copy()).to(dev, dt),
            cost=torch.from_numpy(info["cost"]).to(dev, dt),
            converged=torch.zeros(b, dtype=torch.bool, device=dev),
            iterations=torch.full((b,), self.config.iterations, dtype=torch.int64, device=dev),
            info={"nominal_cost": torch.from_numpy(info["nominal_cost"]), "knots": knots},
            solve_time=time.perf_counter() - t0,
        )

    def _states(self, x0: Tensor) -> np.ndarray:
        if not isinstance(x0, Tensor):
            raise TypeError(f"x0: expected a tensor, got {type(x0).__name__}")
        x = torch.atleast_2d(x0).detach().to("cpu", torch.float64).numpy()
        if x.ndim != 2 or x.shape[1] != self.nx:
            raise ValueError(f"x0: expected shape [B, {self.nx}], got {tuple(x0.shape)}")
        if not np.isfinite(x).all():
            raise ValueError("x0: state contains NaN or inf")
        return x

    # ------------------------------------------------------------------ receding horizon
    def reset(self, seed: int | None = None) -> None:
        """Forget the nominal plan (the next ``act`` starts from zero controls); with ``seed``,
        also restart the noise from ``(config.seed, seed)``, so that a run (one balance start,
        say) draws the same noise whatever ran before it."""
        self._knots = None
        self._age = 0
        if seed is not None:
            self.rng = np.random.default_rng((self.config.seed, seed))

    def act(self, x: Tensor) -> Tensor:
        """Receding-horizon action ``[B, nu]`` at states ``x [B, nx]``: re-plans every
        ``replan_every`` calls (nominal shifted by the elapsed steps), else plays the plan."""
        xs = self._states(x)
        b = xs.shape[0]
        if self._knots is not None and self._knots.shape[0] != b:
            self.reset()
        if self._knots is None or self._age >= self.config.replan_every:
            t0 = time.perf_counter()
            if self._knots is None:
                knots = np.zeros((b, self.config.num_knots, self.nu))
                knots = np.clip(knots, self.low, self.high)
            else:
                knots = self.shift(self._knots, self._age)
            self._knots, info = self.optimise(xs, knots)
            self._age = 0
            self.history.append(
                {
                    "step": len(self.history),
                    "solve_time": time.perf_counter() - t0,
                    "cost": float(info["cost"].mean()),
                    "improvement": float((info["nominal_cost"] - info["cost"]).mean()),
                }
            )
        w = _interpolation_matrix(
            np.array([self._age * self.dt]), self.knot_times, self.config.interpolation
        )
        u = np.einsum("tp,bpu->bu", w, self._knots)
        self._age += 1
        return torch.from_numpy(u).to(x.device, x.dtype)

    __call__ = act

    def solve_time_per_plan(self) -> float:
        """Mean wall time of a re-plan in ``act`` (seconds); NaN before the first."""
        if not self.history:
            return math.nan
        return sum(h["solve_time"] for h in self.history) / len(self.history)
