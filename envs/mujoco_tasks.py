"""gymnasium's MuJoCo v5 tasks on MuJoCo's C engine: ``make("mujoco:<Task>-v5", **kwargs)``.

Each task is built from gymnasium's own model file and settings (frame skip, reset noise, health
and termination rules, observation exclusions) and takes the same keyword arguments as
gymnasium's class (``forward_reward_weight``, ``ctrl_cost_weight``, ``healthy_z_range``,
``exclude_current_positions_from_observation``, ...), so results compare with published ones.
Its ``reward``, ``observe`` and ``terminated`` are torch code equal to gymnasium's ``step``
(tested to 1e-9 in float64 from random states, ``tests/envs/test_mujoco.py``).

Where gymnasium reads a quantity from ``mjData`` that MuJoCo computed during the step rather
than from ``qpos``/``qvel`` (a body's or site's position, the constraint force on the cart),
the task adds it to the model as a sensor, and the state carries the reading (see
``mujoco_bridge``): a reward computed "after the step" from ``data.site_xpos`` reads the
position where MuJoCo left it during the step (before the last substep's integration; at RK4's
last internal stage for the RK4 tasks), exactly as gymnasium does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from .mujoco_bridge import MujocoEnv, _import_mujoco

__all__ = ["TASKS", "make_mujoco", "gym_assets_dir"]


def gym_assets_dir() -> str:
    """gymnasium's folder of MuJoCo model files (needs ``gymnasium``)."""
    try:
        import gymnasium
    except ImportError as e:
        raise ImportError(
            "mujoco:<Task>-v5 builds gymnasium's model files: pip install 'diffctl[mujoco]'"
        ) from e
    return os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets")


def _normal(u: Tensor) -> Tensor:
    """Standard normal numbers from uniform ones in [0, 1) (inverse CDF)."""
    eps = 2.0**-25
    return math.sqrt(2.0) * torch.erfinv(2 * u.clamp(eps, 1 - eps) - 1)


class GymTask(MujocoEnv):
    """Base of the gymnasium tasks: a model file, a frame skip and gymnasium's options.

    Subclasses set ``xml``, ``frame_skip_default``, ``options`` (gymnasium's keyword
    arguments and defaults), ``max_steps_default`` and ``sensors`` (``(mjtSensor name,
    mjtObj name, object name)`` triples added to the model, read back by ``sensor``).
    """

    xml: ClassVar[str]
    task: ClassVar[str]
    frame_skip_default: ClassVar[int]
    max_steps_default: ClassVar[int] = 1000
    options: ClassVar[dict[str, Any]] = {}
    sensors: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    def __init__(self, *, frame_skip: int | None = None, **kwargs: Any) -> None:
        opts = dict(self.options)
        bridge = {}
        for k, v in kwargs.items():
            if k in opts:
                opts[k] = v
            elif k in _BRIDGE_ARGS:
                bridge[k] = v
            else:
                raise ValueError(
                    f"{k}: unknown option of mujoco:{self.task}; gymnasium's options: "
                    f"{', '.join(sorted(opts)) or 'none'}; and {', '.join(sorted(_BRIDGE_ARGS))}"
                )
        self.opts = opts
        self.reset_scale = float(opts.get("reset_noise_scale", 0.0))
        super().__init__(
            os.path.join(gym_assets_dir(), self.xml),
            frame_skip=frame_skip or self.frame_skip_default,
            add_sensors=self._add_sensors,
            reset_noise_scale=self.reset_scale,
            max_steps=self.max_steps_default,
            name=f"mujoco:{self.task}",
            **bridge,
        )

    def _add_sensors(self, spec: Any) -> None:
        mujoco = _import_mujoco()
        for kind, objtype, objname in self.sensors:
            spec.add_sensor(
                type=getattr(mujoco.mjtSensor, kind),
                objtype=getattr(mujoco.mjtObj, objtype),
                objname=objname,
                name=f"{objname}:{kind}",
            )

    def read(self, x: Tensor, kind: str, objname: str) -> Tensor:
        """A sensor this task added (``kind`` as in ``sensors``)."""
        return self.sensor(x, f"{objname}:{kind}")

    def _obs_dim(self) -> int:
        probe = torch.zeros(1, self.sim.nx, dtype=self.dtype, device=self.device)
        return int(self._observe(probe).shape[-1])

    def _ctrl_cost(self, u: Tensor, weight: float) -> Tensor:
        return weight * u.square().sum(-1)

    def _forward_velocity(self, x: Tensor, x_next: Tensor, dim: int = 0) -> Tensor:
        return (x_next[..., dim] - x[..., dim]) / self.spec.dt

    def _positions_velocities(self, x: Tensor, skip: int, clip: float | None = None) -> Tensor:
        q, v = self.qpos(x), self.qvel(x)
        if clip is not None:
            v = v.clamp(-clip, clip)
        return torch.cat([q[..., skip:], v], dim=-1)

    def _uniform_reset(self, u: Tensor, qvel_normal: bool = False) -> Tensor:
        m, s = self.model, self.reset_scale
        qpos0 = torch.as_tensor(m.qpos0, dtype=u.dtype, device=u.device)
        qpos = qpos0 + s * (2 * u[:, : m.nq] - 1)
        noise = u[:, m.nq : m.nq + m.nv]
        qvel = s * _normal(noise) if qvel_normal else s * (2 * noise - 1)
        return self.state_from(qpos, qvel)

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        return self._uniform_reset(u)


_BRIDGE_ARGS = frozenset({"nthread", "fd_eps", "params", "device", "dtype", "frame_skip"})


class _Locomotion(GymTask):
    """Forward-running tasks: reward ``w_f * dx/dt + healthy - w_c |u|^2``."""

    skip_positions: ClassVar[int] = 1
    clip_velocity: ClassVar[float | None] = None

    @property
    def position_dims(self) -> tuple[int, ...]:
        """State components the dynamics do not depend on: the root's position on the flat
        floor (what ``exclude_current_positions_from_observation`` leaves out). Learned models
        leave them out of their input (``diffctl.models``)."""
        return tuple(range(self.skip_positions))

    def _observe(self, x: Tensor) -> Tensor:
        skip = self.skip_positions if self.opts["exclude_current_positions_from_observation"] else 0
        return self._positions_velocities(x, skip, self.clip_velocity)

    def _healthy(self, x: Tensor) -> Tensor:
        return torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        o = self.opts
        forward = o["forward_reward_weight"] * self._forward_velocity(x, x_next)
        healthy = o.get("healthy_reward", 0.0) * self._healthy(x_next).to(x.dtype)
        return forward + healthy - self._ctrl_cost(u, o["ctrl_cost_weight"])


class HalfCheetah(_Locomotion):
    xml, task, frame_skip_default = "half_cheetah.xml", "HalfCheetah-v5", 5
    options: ClassVar[dict[str, Any]] = {
        "forward_reward_weight": 1.0,
        "ctrl_cost_weight": 0.1,
        "reset_noise_scale": 0.1,
        "exclude_current_positions_from_observation": True,
    }

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        return self._uniform_reset(u, qvel_normal=True)


class Swimmer(_Locomotion):
    xml, task, frame_skip_default = "swimmer.xml", "Swimmer-v5", 4
    skip_positions = 2
    options: ClassVar[dict[str, Any]] = {
        "forward_reward_weight": 1.0,
        "ctrl_cost_weight": 1e-4,
        "reset_noise_scale": 0.1,
        "exclude_current_positions_from_observation": True,
    }


class _Hopping(_Locomotion):
    """Hopper and Walker2d: healthy while the torso's height and angle stay in range."""

    clip_velocity = 10.0

    def _healthy(self, x: Tensor) -> Tensor:
        o, q = self.opts, self.qpos(x)
        z, angle = q[..., 1], q[..., 2]
        (zlo, zhi), (alo, ahi) = o["healthy_z_range"], o["healthy_angle_range"]
        ok = (zlo < z) & (z < zhi) & (alo < angle) & (angle < ahi)
        if "healthy_state_range" in o:
            lo, hi = o["healthy_state_range"]
            s = torch.cat([q, self.qvel(x)], dim=-1)[..., 2:]
            ok = ok & ((lo < s) & (s < hi)).all(-1)
        return ok

    def _terminated(self, x: Tensor) -> Tensor:
        return ~self._healthy(x) & bool(self.opts["terminate_when_unhealthy"])


_HOPPING = {
    "forward_reward_weight": 1.0,
    "ctrl_cost_weight": 1e-3,
    "healthy_reward": 1.0,
    "terminate_when_unhealthy": True,
    "reset_noise_scale": 5e-3,
    "exclude_current_positions_from_observation": True,
}


class Hopper(_Hopping):
    xml, task, frame_skip_default = "hopper.xml", "Hopper-v5", 4
    options: ClassVar[dict[str, Any]] = {
        **_HOPPING,
        "healthy_state_range": (-100.0, 100.0),
        "healthy_z_range": (0.7, float("inf")),
        "healthy_angle_range": (-0.2, 0.2),
    }


class Walker2d(_Hopping):
    xml, task, frame_skip_default = "walker2d_v5.xml", "Walker2d-v5", 4
    options: ClassVar[dict[str, Any]] = {
        **_HOPPING,
        "healthy_z_range": (0.8, 2.0),
        "healthy_angle_range": (-1.0, 1.0),
    }


class InvertedPendulum(GymTask):
    xml, task, frame_skip_default = "inverted_pendulum.xml", "InvertedPendulum-v5", 2
    options: ClassVar[dict[str, Any]] = {"reset_noise_scale": 0.01}

    def _observe(self, x: Tensor) -> Tensor:
        return self._positions_velocities(x, 0)

    def _terminated(self, x: Tensor) -> Tensor:
        obs = self._observe(x)
        return ~torch.isfinite(obs).all(-1) | (obs[..., 1].abs() > 0.2)

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        return (~self._terminated(x_next)).to(x.dtype)


class InvertedDoublePendulum(GymTask):
    """The pole's tip height and the cart's limit force are read from sensors (gymnasium reads
    ``data.site_xpos`` and ``data.qfrc_constraint``). The cart's only constraint is its slider
    limit (the geoms do not collide), so ``qfrc_constraint[0]`` is that limit's force, pushing
    inwards: positive on the left limit, negative on the right."""

    xml, task, frame_skip_default = "inverted_double_pendulum.xml", "InvertedDoublePendulum-v5", 5
    options: ClassVar[dict[str, Any]] = {"healthy_reward": 10.0, "reset_noise_scale": 0.1}
    sensors = (
        ("mjSENS_FRAMEPOS", "mjOBJ_SITE", "tip"),
        ("mjSENS_JOINTLIMITFRC", "mjOBJ_JOINT", "slider"),
    )

    def _cart_constraint_force(self, x: Tensor) -> Tensor:
        f = self.read(x, "mjSENS_JOINTLIMITFRC", "slider")[..., 0]
        return torch.where(self.qpos(x)[..., 0] < 0, f, -f)

    def _observe(self, x: Tensor) -> Tensor:
        q, v = self.qpos(x), self.qvel(x)
        qfrc = self._cart_constraint_force(x).clamp(-10, 10)[..., None]
        angles = q[..., 1:]
        return torch.cat([q[..., :1], angles.sin(), angles.cos(), v.clamp(-10, 10), qfrc], -1)

    def _terminated(self, x: Tensor) -> Tensor:
        return self.read(x, "mjSENS_FRAMEPOS", "tip")[..., 2] <= 1

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        tip = self.read(x_next, "mjSENS_FRAMEPOS", "tip")
        v = self.qvel(x_next)
        dist = 0.01 * tip[..., 0] ** 2 + (tip[..., 2] - 2) ** 2
        vel = 1e-3 * v[..., 1] ** 2 + 5e-3 * v[..., 2] ** 2
        alive = self.opts["healthy_reward"] * (~self._terminated(x_next)).to(x.dtype)
        return alive - dist - vel

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        return self._uniform_reset(u, qvel_normal=True)


_GOAL_TRIES = 16  # rejection-sampling candidates per start (all rejected: p < 1e-10)


def _first_accepted(candidates: Tensor, ok: Tensor) -> Tensor:
    """The first accepted candidate of each row: ``candidates [n, K, d]``, ``ok [n, K]``."""
    idx = torch.argmax(ok.to(torch.int8), dim=1)  # first True (0 if none)
    return candidates[torch.arange(candidates.shape[0], device=ok.device), idx]


class Reacher(GymTask):
    xml, task, frame_skip_default = "reacher.xml", "Reacher-v5", 2
    max_steps_default = 50
    options: ClassVar[dict[str, Any]] = {"reward_dist_weight": 1.0, "reward_control_weight": 1.0}
    sensors = (
        ("mjSENS_FRAMEPOS", "mjOBJ_XBODY", "fingertip"),
        ("mjSENS_FRAMEPOS", "mjOBJ_XBODY", "target"),
    )

    def _to_target(self, x: Tensor) -> Tensor:
        tip = self.read(x, "mjSENS_FRAMEPOS", "fingertip")
        return tip - self.read(x, "mjSENS_FRAMEPOS", "target")

    def _observe(self, x: Tensor) -> Tensor:
        q, v = self.qpos(x), self.qvel(x)
        theta = q[..., :2]
        return torch.cat(
            [theta.cos(), theta.sin(), q[..., 2:], v[..., :2], self._to_target(x)[..., :2]], -1
        )

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        o = self.opts
        dist = torch.linalg.vector_norm(self._to_target(x_next), dim=-1)
        return -dist * o["reward_dist_weight"] - u.square().sum(-1) * o["reward_control_weight"]

    @property
    def reset_noise_dim(self) -> int:  # type: ignore[override]
        return self.model.nq + self.model.nv + 2 * _GOAL_TRIES

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        m, n = self.model, u.shape[0]
        qpos = torch.as_tensor(m.qpos0, dtype=u.dtype, device=u.device) + 0.2 * u[:, : m.nq] - 0.1
        qvel = 0.01 * u[:, m.nq : m.nq + m.nv] - 0.005
        goals = (0.4 * u[:, m.nq + m.nv :] - 0.2).reshape(n, _GOAL_TRIES, 2)
        goal = _first_accepted(goals, torch.linalg.vector_norm(goals, dim=-1) < 0.2)
        qpos = torch.cat([qpos[:, :-2], goal], -1)
        qvel = torch.cat([qvel[:, :-2], torch.zeros_like(qvel[:, -2:])], -1)
        return self.state_from(qpos, qvel)


class Pusher(GymTask):
    xml, task, frame_skip_default = "pusher_v5.xml", "Pusher-v5", 5
    max_steps_default = 100
    options: ClassVar[dict[str, Any]] = {
        "reward_near_weight": 0.5,
        "reward_dist_weight": 1.0,
        "reward_control_weight": 0.1,
    }
    sensors = (
        ("mjSENS_FRAMEPOS", "mjOBJ_XBODY", "tips_arm"),
        ("mjSENS_FRAMEPOS", "mjOBJ_XBODY", "object"),
        ("mjSENS_FRAMEPOS", "mjOBJ_XBODY", "goal"),
    )

    def _bodies(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(self.read(x, "mjSENS_FRAMEPOS", b) for b in ("tips_arm", "object", "goal"))

    def _observe(self, x: Tensor) -> Tensor:
        return torch.cat([self.qpos(x)[..., :7], self.qvel(x)[..., :7], *self._bodies(x)], -1)

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        o = self.opts
        tips, obj, goal = self._bodies(x_next)
        near = torch.linalg.vector_norm(obj - tips, dim=-1) * o["reward_near_weight"]
        dist = torch.linalg.vector_norm(obj - goal, dim=-1) * o["reward_dist_weight"]
        return -dist - u.square().sum(-1) * o["reward_control_weight"] - near

    @property
    def reset_noise_dim(self) -> int:  # type: ignore[override]
        return self.model.nv + 2 * _GOAL_TRIES

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        m, n = self.model, u.shape[0]
        qpos = torch.as_tensor(m.qpos0, dtype=u.dtype, device=u.device).expand(n, m.nq)
        qvel = 0.01 * u[:, : m.nv] - 0.005
        c = u[:, m.nv :].reshape(n, _GOAL_TRIES, 2)
        cyl = torch.stack([0.3 * c[..., 0] - 0.3, 0.4 * c[..., 1] - 0.2], -1)
        cyl = _first_accepted(cyl, torch.linalg.vector_norm(cyl, dim=-1) > 0.17)
        qpos = torch.cat([qpos[:, :-4], cyl, torch.zeros_like(cyl)], -1)
        qvel = torch.cat([qvel[:, :-4], torch.zeros_like(qvel[:, -4:])], -1)
        return self.state_from(qpos, qvel)


#: Task name -> class. Ant, Humanoid and HumanoidStandup live in ``mujoco_robots``.
TASKS: dict[str, Callable[..., GymTask]] = {
    cls.task: cls
    for cls in (
        InvertedPendulum,
        InvertedDoublePendulum,
        Reacher,
        Pusher,
        Swimmer,
        Hopper,
        Walker2d,
        HalfCheetah,
    )
}


def make_mujoco(task: str, **kwargs: Any) -> GymTask:
    """``make("mujoco:<Task>-v5", **kwargs)``: one of gymnasium's MuJoCo v5 tasks."""
    if task not in TASKS:
        raise ValueError(
            f"name: unknown MuJoCo task {task!r}; known: "
            + ", ".join(f"mujoco:{t}" for t in sorted(TASKS))
        )
    return TASKS[task](**kwargs)


from . import mujoco_robots  # noqa: E402,F401  (adds Ant, Humanoid, HumanoidStandup to TASKS)
