"""Humanoid balance: keep gymnasium's MuJoCo humanoid standing under pushes by predictive sampling.

The lecture notes' seed 000 keeps a humanoid upright by RL with the reward
``-(roll^2 + pitch^2)`` of its torso. Here the same objective is planned on the true model
(``PredictiveSampling`` on gymnasium's ``humanoid.xml``, the physics of ``mujoco:Humanoid-v5``:
frame skip 5, ``dt = 0.015`` s, reset noise ``1e-2``), with what standing needs besides
(after MJPC's humanoid stand task): torso height, the capture point over the feet, small
centre-of-mass and joint velocities, and a control cost.

The balance run (``balance``): from gymnasium's reset noise, every ``push_every`` seconds the
torso's free-joint velocity gets a horizontal kick of ``push_speed`` m/s in a random direction
(the whole body moves with it, as after a shove); a start succeeds when, for every step, the
torso height stays above ``min_height`` (1.0 m) and its ``|roll|`` and ``|pitch|`` below
``max_tilt`` (0.3 rad). The real-time factor is simulated seconds per wall second of the whole
loop (planning and simulation).

``diffctl.control.ilqg.ILQG`` plans the same cost (``StandCostConfig``) by iLQG on
finite-difference Jacobians of the same planning model; ``balance`` drives either planner.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .predictive import PredictiveSampling, PredictiveSamplingConfig

__all__ = [
    "StandCostConfig",
    "HumanoidStandCost",
    "BalanceConfig",
    "BalanceResult",
    "humanoid_env",
    "roll_pitch",
    "balance",
]

#: sensors the stand cost reads: (name, mjtSensor, mjtObj, object)
SENSORS = (
    ("com", "mjSENS_SUBTREECOM", "mjOBJ_BODY", "torso"),
    ("com_vel", "mjSENS_SUBTREELINVEL", "mjOBJ_BODY", "torso"),
    ("right_foot", "mjSENS_FRAMEPOS", "mjOBJ_GEOM", "right_foot"),
    ("left_foot", "mjSENS_FRAMEPOS", "mjOBJ_GEOM", "left_foot"),
)


def _add_sensors(spec: Any) -> None:
    import mujoco

    for name, kind, objtype, obj in SENSORS:
        spec.add_sensor(
            type=getattr(mujoco.mjtSensor, kind),
            objtype=getattr(mujoco.mjtObj, objtype),
            objname=obj,
            name=f"stand:{name}",
        )


def humanoid_env(nthread: int | None = None, dtype: torch.dtype = torch.float64) -> Any:
    """gymnasium's humanoid (``humanoid.xml``, frame skip 5, reset noise ``1e-2``: the physics
    and start states of ``mujoco:Humanoid-v5``) with the stand cost's sensors added (sensors
    change no physics)."""
    from diffctl.envs.mujoco_bridge import MujocoEnv
    from diffctl.envs.mujoco_tasks import gym_assets_dir

    return MujocoEnv(
        os.path.join(gym_assets_dir(), "humanoid.xml"),
        frame_skip=5,
        reset_noise_scale=1e-2,
        add_sensors=_add_sensors,
        nthread=nthread,
        name="mujoco:Humanoid-v5+stand-sensors",
        dtype=dtype,
    )


def _smooth_abs(r: Tensor, p: float) -> Tensor:
    """``sqrt(r^2 + p^2) - p``: quadratic within ``p`` of zero, then like ``|r|`` (MJPC's
    smooth-abs norm of its height and balance terms)."""
    return (r.square() + p * p).sqrt() - p


def roll_pitch(x: Tensor) -> tuple[Tensor, Tensor]:
    """Torso roll and pitch ``[...]`` (ZYX Euler angles, rad) of humanoid states ``x [..., nx]``
    (``qpos[3:7]`` the torso's quaternion ``w, x, y, z``)."""
    w, qx, qy, qz = x[..., 3], x[..., 4], x[..., 5], x[..., 6]
    roll = torch.atan2(2 * (w * qx + qy * qz), 1 - 2 * (qx * qx + qy * qy))
    s = (2 * (w * qy - qz * qx)).clamp(-1.0, 1.0)
    # asin(s) as atan2: torch's multi-threaded asin on small float64 tensors takes milliseconds
    pitch = torch.atan2(s, (1 - s * s).clamp_min(0.0).sqrt())
    return roll, pitch


@dataclass(frozen=True)
class StandCostConfig:
    """Weights of ``HumanoidStandCost`` (per control step, summed over the horizon).

    Attributes:
        tilt: the seed's ``roll^2 + pitch^2`` of the torso.
        height: ``smooth_abs(z - height_goal)`` of the torso height ``z`` (MJPC's height
            term; ``smooth_abs(r) = sqrt(r^2 + smooth^2) - smooth``).
        height_goal: torso height goal (m; the model stands with straight legs at ~1.28 m).
        capture: ``smooth_abs(|c_xy + fall_time * v_xy - feet_xy|)``: the capture point (the
            centre of mass ``c`` plus its velocity ``v`` times ``fall_time``) over the
            mid-point of the feet (MJPC's balance term).
        fall_time: s.
        smooth: m, of ``smooth_abs``.
        com_vel: ``|v_xy|^2``.
        joint_vel: ``|qvel[6:]|^2``.
        posture: ``|qpos[7:]|^2``: joint angles near the model's reference pose.
        bounds: ``relu(max(|roll|, |pitch|) - tilt_soft_limit)^2 + relu(height_soft_limit -
            z)^2``: a steep wall inside the success bounds (0.3 rad, 1.0 m).
        tilt_soft_limit: rad.
        height_soft_limit: m.
        feet_height: ``relu(z_foot - 0.08)`` summed over the feet (feet near the floor).
        ang_vel: ``|qvel[3:6]|^2``: the torso's angular velocity.
        control: ``|u|^2`` (gymnasium's units, range ``[-0.4, 0.4]``).
        terminal: weight of the last step's state terms (1: like the others).
    """

    tilt: float = 10.0
    height: float = 100.0
    height_goal: float = 1.28
    capture: float = 50.0
    fall_time: float = 0.2
    smooth: float = 0.05
    com_vel: float = 1.0
    joint_vel: float = 1e-3
    posture: float = 0.0
    bounds: float = 1000.0
    tilt_soft_limit: float = 0.15
    height_soft_limit: float = 1.15
    feet_height: float = 0.0
    ang_vel: float = 0.0
    control: float = 0.1
    terminal: float = 2.0


class HumanoidStandCost:
    """``cost(x [R, T, nx], u [R, T, nu]) -> [R]`` of standing (see ``StandCostConfig``).

    The state terms are functions of a few features of the state (``features``): the torso's
    roll, pitch and height, the centre of mass and its velocity, the feet, and the coordinates
    the quadratic terms read; ``state_cost`` weighs the terms of those features. Each term is
    convex in the features, which ``ILQG``'s Gauss-Newton quadratisation relies on.
    """

    #: feature slices: roll, pitch, height, com_xy, com_vel_xy, the feet's mid-point xy, the
    #: feet's heights, then the torso's angular velocity, joint velocities, joint angles
    ROLL, PITCH, Z, COM, VEL, FEET, FEET_Z = (
        0,
        1,
        2,
        slice(3, 5),
        slice(5, 7),
        slice(7, 9),
        slice(9, 11),
    )

    def __init__(self, env: Any, config: StandCostConfig | None = None) -> None:
        self.config = config or StandCostConfig()
        base = env.layout["sensordata"].start
        self.idx = {}
        for name, *_ in SENSORS:
            s = env.model.sensor(f"stand:{name}")
            self.idx[name] = base + int(s.adr[0])
        self.nq, self.nv = env.model.nq, env.model.nv

    def features(self, x: Tensor) -> Tensor:
        """The features ``[..., 11 + 3 + (nv - 6) + (nq - 7)]`` of states ``x [..., nx]``."""
        i, nq = self.idx, self.nq
        roll, pitch = roll_pitch(x)
        right, left = (
            x[..., i["right_foot"] : i["right_foot"] + 3],
            x[..., i["left_foot"] : i["left_foot"] + 3],
        )
        return torch.cat(
            [
                torch.stack([roll, pitch, x[..., 2]], -1),
                x[..., i["com"] : i["com"] + 2],
                x[..., i["com_vel"] : i["com_vel"] + 2],
                0.5 * (right[..., :2] + left[..., :2]),
                torch.stack([right[..., 2], left[..., 2]], -1),
                x[..., nq + 3 : nq + self.nv],  # angular velocity, then joint velocities
                x[..., 7:nq],
            ],
            -1,
        )

    def terms(self, r: Tensor) -> dict[str, Tensor]:
        """The unweighted state terms ``[...]`` of features ``r [..., F]``."""
        c = self.config
        roll, pitch, z = r[..., self.ROLL], r[..., self.PITCH], r[..., self.Z]
        vel = r[..., self.VEL]
        capture = r[..., self.COM] + c.fall_time * vel - r[..., self.FEET]
        tilt = torch.maximum(roll.abs(), pitch.abs())
        return {
            "tilt": roll.square() + pitch.square(),
            "height": _smooth_abs(z - c.height_goal, c.smooth),
            "capture": _smooth_abs(capture.norm(dim=-1), c.smooth),
            "com_vel": vel.square().sum(-1),
            "ang_vel": r[..., 11:14].square().sum(-1),
            "joint_vel": r[..., 14 : 14 + self.nv - 6].square().sum(-1),
            "posture": r[..., 14 + self.nv - 6 :].square().sum(-1),
            "feet_height": (r[..., self.FEET_Z] - 0.08).clamp_min(0).sum(-1),
            "bounds": (tilt - c.tilt_soft_limit).clamp_min(0).square()
            + (c.height_soft_limit - z).clamp_min(0).square(),
        }

    def state_cost(self, r: Tensor) -> Tensor:
        """``sum_k w_k term_k`` ``[...]`` of features ``r [..., F]`` (one step's state cost)."""
        c = self.config
        return sum(getattr(c, name) * term for name, term in self.terms(r).items())  # type: ignore[return-value]

    def __call__(self, x: Tensor, u: Tensor) -> Tensor:
        c = self.config
        state = self.state_cost(self.features(x))  # [R, T]
        step = state + c.control * u.square().sum(-1)
        return step.sum(-1) + (c.terminal - 1.0) * state[..., -1]


@dataclass(frozen=True)
class BalanceConfig:
    """The balance run.

    Attributes:
        steps: control steps per start (1,000 = 15 s).
        push_every: seconds between pushes (the first after ``push_every``).
        push_speed: horizontal torso velocity kick (m/s), random direction.
        min_height: torso height the run must stay above (m).
        max_tilt: bound on ``|roll|`` and ``|pitch|`` (rad).
        seed: start ``seed`` draws the reset noise and the push directions.
    """

    steps: int = 1000
    push_every: float = 2.0
    push_speed: float = 0.5
    min_height: float = 1.0
    max_tilt: float = 0.3
    seed: int = 0


@dataclass
class BalanceResult:
    """Outcome of one start: ``success``, worst values, timing and the per-step trace."""

    success: bool
    steps: int
    min_height: float
    max_roll: float
    max_pitch: float
    failed_at: int | None
    wall_s: float
    sim_s: float
    plan_s: float
    pushes: int
    trace: dict[str, np.ndarray]

    @property
    def real_time_factor(self) -> float:
        return self.sim_s / self.wall_s


def balance(
    env: Any,
    planner: PredictiveSampling,
    config: BalanceConfig | None = None,
    *,
    stop_on_failure: bool = True,
) -> BalanceResult:
    """Run ``planner.act`` in closed loop on ``env`` from one reset-noise start (see the
    module docstring); the true system steps through ``env.dynamics`` (MuJoCo's C engine)."""
    cfg = config or BalanceConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    planner.reset(seed=cfg.seed)  # the start's noise: the same alone or after other starts
    planner.history.clear()
    push_steps = max(1, round(cfg.push_every / env.spec.dt))
    nq = env.model.nq
    with torch.inference_mode():
        x = env.initial_state(1, gen).to(torch.float64)
        heights, rolls, pitches = [], [], []
        failed_at, pushes = None, 0
        t0 = time.perf_counter()
        for t in range(cfg.steps):
            if t > 0 and t % push_steps == 0 and cfg.push_speed > 0:
                a = rng.uniform(0, 2 * math.pi)
                qpos, qvel = x[:, :nq].clone(), x[:, nq : nq + env.model.nv].clone()
                qvel[:, 0] += cfg.push_speed * math.cos(a)
                qvel[:, 1] += cfg.push_speed * math.sin(a)
                x = env.state_from(qpos, qvel).to(torch.float64)
                pushes += 1
            u = planner.act(x)
            x = env.dynamics(x, u)
            r, p = roll_pitch(x[0])
            h, r, p = float(x[0, 2]), float(r), float(p)
            heights.append(h)
            rolls.append(r)
            pitches.append(p)
            if failed_at is None and (
                h <= cfg.min_height or abs(r) >= cfg.max_tilt or abs(p) >= cfg.max_tilt
            ):
                failed_at = t
                if stop_on_failure:
                    break
        wall = time.perf_counter() - t0
    n = len(heights)
    hs, rs, ps = np.array(heights), np.array(rolls), np.array(pitches)
    return BalanceResult(
        success=failed_at is None and n == cfg.steps,
        steps=n,
        min_height=float(hs.min()),
        max_roll=float(np.abs(rs).max()),
        max_pitch=float(np.abs(ps).max()),
        failed_at=failed_at,
        wall_s=wall,
        sim_s=n * env.spec.dt,
        plan_s=sum(h["solve_time"] for h in planner.history),
        pushes=pushes,
        trace={"height": hs, "roll": rs, "pitch": ps},
    )


def default_planner(env: Any, **overrides: Any) -> PredictiveSampling:
    """``PredictiveSampling`` with the stand cost and ``PredictiveSamplingConfig`` defaults
    (``overrides`` replace config fields)."""
    return PredictiveSampling(env, HumanoidStandCost(env), PredictiveSamplingConfig(**overrides))
