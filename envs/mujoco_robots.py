"""gymnasium's Ant-v5, Humanoid-v5 and HumanoidStandup-v5 on MuJoCo's C engine.

``make("mujoco:Ant-v5", **kwargs)`` (and the two humanoids) take gymnasium's keyword arguments
(``xml_file`` excepted) and compute observation, reward and termination in torch from the state
``x = [physics, sensordata]`` (``mujoco_bridge``). What gymnasium reads from ``mjData`` after a
step is rebuilt from sensors the task adds to the model:

* ``xpos`` of Ant's ``main_body``: a ``framepos`` sensor of the body frame (``mjOBJ_XBODY``).
* Humanoid's centre of mass ``sum(m_b xipos_b) / sum(m_b)``: ``framepos`` of every body's
  inertial frame (``mjOBJ_BODY``), summed in torch.
* ``cinert[1:]`` (MuJoCo's ``mju_inertCom``: inertia about the root's subtree centre of mass, in
  world axes, then ``m (xipos - com)`` and ``m``): ``framepos`` and ``framex/y/zaxis`` of every
  inertial frame (``xipos``, the columns of ``ximat``, copied exactly) and the root's
  ``subtreecom``; the arithmetic is ``mju_inertCom``'s, operation for operation.
* ``cvel[1:]`` (``[angular, linear velocity at the root's subtree com]``): ``frameangvel`` and
  ``framelinvel`` of every inertial frame; the linear part is moved back from ``xipos`` to the
  com (``mj_objectVelocity`` inverted: equal up to one rounding).
* ``qfrc_actuator[6:]``: a ``jointactfrc`` sensor per hinge joint (an exact copy).
* ``cfrc_ext`` (``mj_rnePostConstraint``: the contact wrench on each body, ``[torque about the
  root's subtree com, force]``, world axes): a ``contact`` sensor per body with the ``netforce``
  reduction (the net force and torque of the body's contacts about their force-weighted centroid,
  and that point), shifted to the com and negated in torch (the sensor reports the force the
  body exerts). This is the same sum in another order: equal up to rounding.

All three models use the RK4 integrator, after which gymnasium reads ``mjData`` at RK4's last
internal stage; ``MujocoSim.step`` evaluates the sensors at that stage, rebuilt as MuJoCo's RK4
builds it (``mujoco_bridge``). The next state equals gymnasium's (bit for bit in the tests), and
with the constraint solver's warm start off in both, so do observation, reward and termination
(1e-9). With the warm start on (gymnasium's default), the stage's solves start from zero here and
from the previous substep's solution in gymnasium; Ant's Newton solver converges either way
(exact), the humanoids' 50 PGS iterations do not: worst cases over 100 states of a falling random
rollout with many contacts (``tests/envs/test_mujoco_robots.py``): Humanoid cinert 7.1e-8, cvel
1.3e-5, cfrc_ext 4.4e-2 (of up to 3.1e3), reward 9.9e-6; HumanoidStandup cinert 2.2e-8, cvel
2.1e-5, cfrc_ext 2.3e-2 (of up to 1.2e3), reward 1.8e-6.

Reset follows each ``reset_model`` (Ant: uniform positions, normal velocities; humanoids:
uniform both). gymnasium's first observation after ``reset`` holds ``cfrc_ext = 0`` (``mj_forward``
does not run ``mj_rnePostConstraint``), so ``initial_state`` zeroes the contact readings too;
``state_from`` evaluates them at the state.

Body masses and inertias in ``cinert`` and the centre of mass are read from the model (the
current ``env.params``, as constants: no gradient flows to them through the observation).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .mujoco_tasks import TASKS, GymTask, _import_mujoco

__all__ = ["Ant", "Humanoid", "HumanoidStandup"]

#: Contact-sensor data fields read (``mjtConDataField`` bits: force, torque, position) and the
#: ``netforce`` reduction.
_CONTACT_DATA = (1 << 1) | (1 << 2) | (1 << 4)
_NETFORCE = 3

#: Sensor groups: name -> (mjtSensor, mjtObj). Each group has one sensor per object, adjacent.
_GROUPS = {
    "xipos": ("mjSENS_FRAMEPOS", "mjOBJ_BODY"),
    "xaxis": ("mjSENS_FRAMEXAXIS", "mjOBJ_BODY"),
    "yaxis": ("mjSENS_FRAMEYAXIS", "mjOBJ_BODY"),
    "zaxis": ("mjSENS_FRAMEZAXIS", "mjOBJ_BODY"),
    "angvel": ("mjSENS_FRAMEANGVEL", "mjOBJ_BODY"),
    "linvel": ("mjSENS_FRAMELINVEL", "mjOBJ_BODY"),
    "contact": ("mjSENS_CONTACT", "mjOBJ_BODY"),
    "com": ("mjSENS_SUBTREECOM", "mjOBJ_BODY"),
    "actfrc": ("mjSENS_JOINTACTFRC", "mjOBJ_JOINT"),
    "main": ("mjSENS_FRAMEPOS", "mjOBJ_XBODY"),
}


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """``a x b`` over the last axis, component by component as MuJoCo's ``mju_cross``."""
    a0, a1, a2 = a.unbind(-1)
    b0, b1, b2 = b.unbind(-1)
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)


class _Robot(GymTask):
    """Shared sensor plumbing: groups of sensors over the bodies (world excluded) read as
    ``[..., nbody - 1, dim]`` blocks."""

    groups: ClassVar[tuple[str, ...]] = ()

    def _add_sensors(self, spec: Any) -> None:
        mujoco = _import_mujoco()
        for i, b in enumerate(spec.bodies):
            if not b.name:  # Ant's lower legs: sensors address bodies by name
                b.name = f"body{i}"
        bodies = [b.name for b in spec.bodies]
        hinges = [j.name for j in spec.joints if j.type == mujoco.mjtJoint.mjJNT_HINGE]
        objects = {
            "com": [bodies[1]],  # the root body: its subtree com is what cinert, cvel use
            "actfrc": hinges,
            "main": [self._main_body_name(bodies)],
        }
        self._group_names: dict[str, list[str]] = {}
        for group in self.groups:
            kind, objtype = _GROUPS[group]
            names = objects.get(group, bodies[1:])
            for name in names:
                extra = {"intprm": [_CONTACT_DATA, _NETFORCE, 1]} if group == "contact" else {}
                spec.add_sensor(
                    type=getattr(mujoco.mjtSensor, kind),
                    objtype=getattr(mujoco.mjtObj, objtype),
                    objname=name,
                    name=f"{group}:{name}",
                    **extra,
                )
            self._group_names[group] = names

    def _main_body_name(self, bodies: list[str]) -> str:
        return bodies[1]

    def _slice(self, group: str) -> tuple[int, int, int]:
        """``(start column in x, objects, dim)`` of a sensor group (adjacent by construction)."""
        cache = self.__dict__.setdefault("_group_slices", {})
        if group not in cache:
            names = self._group_names[group]
            sensors = [self.model.sensor(f"{group}:{n}") for n in names]
            dim = int(sensors[0].dim[0])
            adr = int(sensors[0].adr[0])
            assert all(int(s.adr[0]) == adr + k * dim for k, s in enumerate(sensors))
            cache[group] = (self.layout["sensordata"].start + adr, len(names), dim)
        return cache[group]

    def _group(self, x: Tensor, group: str) -> Tensor:
        start, n, dim = self._slice(group)
        return x[..., start : start + n * dim].unflatten(-1, (n, dim))

    def _const(self, value: np.ndarray, x: Tensor) -> Tensor:
        return torch.as_tensor(np.asarray(value), dtype=x.dtype, device=x.device)

    # ---------------------------------------------------------------- mjData quantities
    def _com(self, x: Tensor) -> Tensor:
        """``subtree_com`` of the root body ``[..., 1, 3]``."""
        return self._group(x, "com")

    def cfrc_ext(self, x: Tensor) -> Tensor:
        """``cfrc_ext[1:]`` ``[..., nbody - 1, 6]``: the contact wrench on each body."""
        data = self._group(x, "contact")
        force, torque, point = data[..., 0:3], data[..., 3:6], data[..., 6:9]
        # the sensor gives the body's push on the others about ``point``; move it to the com
        return -torch.cat([torque + _cross(point - self._com(x), force), force], -1)

    def cinert(self, x: Tensor) -> Tensor:
        """``cinert[1:]`` ``[..., nbody - 1, 10]`` (``mju_inertCom``)."""
        xipos = self._group(x, "xipos")
        ax, ay, az = (self._group(x, g) for g in ("xaxis", "yaxis", "zaxis"))
        # ximat row-major: mat[3 r + c] = axis_c[r]
        m0, m3, m6 = ax.unbind(-1)
        m1, m4, m7 = ay.unbind(-1)
        m2, m5, m8 = az.unbind(-1)
        inert = self._const(self.model.body_inertia[1:], x)
        i0, i1, i2 = inert.unbind(-1)
        mass = self._const(self.model.body_mass[1:], x)
        d0, d1, d2 = (xipos - self._com(x)).unbind(-1)
        t0, t1, t2 = m0 * i0, m3 * i0, m6 * i0
        t3, t4, t5 = m1 * i1, m4 * i1, m7 * i1
        t6, t7, t8 = m2 * i2, m5 * i2, m8 * i2
        r0 = m0 * t0 + m1 * t3 + m2 * t6
        r1 = m3 * t1 + m4 * t4 + m5 * t7
        r2 = m6 * t2 + m7 * t5 + m8 * t8
        r3 = m0 * t1 + m1 * t4 + m2 * t7
        r4 = m0 * t2 + m1 * t5 + m2 * t8
        r5 = m3 * t2 + m4 * t5 + m5 * t8
        r0 = r0 + mass * (d1 * d1 + d2 * d2)
        r1 = r1 + mass * (d0 * d0 + d2 * d2)
        r2 = r2 + mass * (d0 * d0 + d1 * d1)
        r3 = r3 - mass * d0 * d1
        r4 = r4 - mass * d0 * d2
        r5 = r5 - mass * d1 * d2
        mass = mass.expand_as(r0)
        return torch.stack([r0, r1, r2, r3, r4, r5, mass * d0, mass * d1, mass * d2, mass], -1)

    def cvel(self, x: Tensor) -> Tensor:
        """``cvel[1:]`` ``[..., nbody - 1, 6]``: angular velocity, linear velocity at the com."""
        ang = self._group(x, "angvel")
        dif = self._group(x, "xipos") - self._com(x)
        return torch.cat([ang, self._group(x, "linvel") + _cross(dif, ang)], -1)

    def qfrc_actuator(self, x: Tensor) -> Tensor:
        """``qfrc_actuator`` of the hinge joints ``[..., n_hinge]`` (``qfrc_actuator[6:]``)."""
        return self._group(x, "actfrc")[..., 0]

    # ---------------------------------------------------------------- reset
    def _zero_contacts(self, x: Tensor) -> Tensor:
        start, n, dim = self._slice("contact")
        x = x.clone()
        x[..., start : start + n * dim] = 0
        return x


class Ant(_Robot):
    xml, task, frame_skip_default = "ant.xml", "Ant-v5", 5
    groups = ("contact", "com", "main")
    options: ClassVar[dict[str, Any]] = {
        "forward_reward_weight": 1.0,
        "ctrl_cost_weight": 0.5,
        "contact_cost_weight": 5e-4,
        "healthy_reward": 1.0,
        "main_body": 1,
        "terminate_when_unhealthy": True,
        "healthy_z_range": (0.2, 1.0),
        "contact_force_range": (-1.0, 1.0),
        "reset_noise_scale": 0.1,
        "exclude_current_positions_from_observation": True,
        "include_cfrc_ext_in_observation": True,
    }

    def _main_body_name(self, bodies: list[str]) -> str:
        main = self.opts["main_body"]
        if isinstance(main, str) and main in bodies:
            return main
        if isinstance(main, int | np.integer) and not isinstance(main, bool):
            if 0 <= main < len(bodies):
                return bodies[main]
        raise ValueError(
            f"main_body: expected a body name or id of {self.xml} ({', '.join(bodies)}), "
            f"got {main!r}"
        )

    def _contact_forces(self, x: Tensor) -> Tensor:
        """``clip(cfrc_ext, contact_force_range)`` ``[..., nbody, 6]`` (world row included)."""
        lo, hi = self.opts["contact_force_range"]
        c = self.cfrc_ext(x)
        full = torch.cat([torch.zeros_like(c[..., :1, :]), c], -2)
        return full.clamp(lo, hi)

    def _observe(self, x: Tensor) -> Tensor:
        o = self.opts
        q, v = self.qpos(x), self.qvel(x)
        if o["exclude_current_positions_from_observation"]:
            q = q[..., 2:]
        parts = [q, v]
        if o["include_cfrc_ext_in_observation"]:
            parts.append(self._contact_forces(x)[..., 1:, :].flatten(-2))
        return torch.cat(parts, -1)

    def _healthy(self, x: Tensor) -> Tensor:
        lo, hi = self.opts["healthy_z_range"]
        state = torch.cat([self.qpos(x), self.qvel(x)], -1)
        z = state[..., 2]
        return torch.isfinite(state).all(-1) & (lo <= z) & (z <= hi)

    def _terminated(self, x: Tensor) -> Tensor:
        return ~self._healthy(x) & bool(self.opts["terminate_when_unhealthy"])

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        o = self.opts
        before = self._group(x, "main")[..., 0, 0]
        after = self._group(x_next, "main")[..., 0, 0]
        forward = o["forward_reward_weight"] * (after - before) / self.spec.dt
        healthy = o["healthy_reward"] * self._healthy(x_next).to(x.dtype)
        contact = o["contact_cost_weight"] * self._contact_forces(x_next).square().sum((-2, -1))
        return forward + healthy - self._ctrl_cost(u, o["ctrl_cost_weight"]) - contact

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        return self._zero_contacts(self._uniform_reset(u, qvel_normal=True))


_HUMANOID_OBS = {
    "reset_noise_scale": 1e-2,
    "exclude_current_positions_from_observation": True,
    "include_cinert_in_observation": True,
    "include_cvel_in_observation": True,
    "include_qfrc_actuator_in_observation": True,
    "include_cfrc_ext_in_observation": True,
}


class _HumanoidBase(_Robot):
    groups = ("xipos", "xaxis", "yaxis", "zaxis", "angvel", "linvel", "contact", "com", "actfrc")

    def _observe(self, x: Tensor) -> Tensor:
        o = self.opts
        q, v = self.qpos(x), self.qvel(x)
        if o["exclude_current_positions_from_observation"]:
            q = q[..., 2:]
        parts = [q, v]
        if o["include_cinert_in_observation"]:
            parts.append(self.cinert(x).flatten(-2))
        if o["include_cvel_in_observation"]:
            parts.append(self.cvel(x).flatten(-2))
        if o["include_qfrc_actuator_in_observation"]:
            parts.append(self.qfrc_actuator(x))
        if o["include_cfrc_ext_in_observation"]:
            parts.append(self.cfrc_ext(x).flatten(-2))
        return torch.cat(parts, -1)

    def _contact_cost(self, x: Tensor, weight: float, bounds: tuple[float, float]) -> Tensor:
        lo, hi = bounds
        return (weight * self.cfrc_ext(x).square().sum((-2, -1))).clamp(lo, hi)

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        return self._zero_contacts(self._uniform_reset(u))


class Humanoid(_HumanoidBase):
    xml, task, frame_skip_default = "humanoid.xml", "Humanoid-v5", 5
    options: ClassVar[dict[str, Any]] = {
        "forward_reward_weight": 1.25,
        "ctrl_cost_weight": 0.1,
        "contact_cost_weight": 5e-7,
        "contact_cost_range": (-float("inf"), 10.0),
        "healthy_reward": 5.0,
        "terminate_when_unhealthy": True,
        "healthy_z_range": (1.0, 2.0),
        **_HUMANOID_OBS,
    }

    def mass_center(self, x: Tensor) -> Tensor:
        """gymnasium's ``mass_center``: ``sum(m_b xipos_b) / sum(m_b)`` ``[..., 3]``."""
        mass = self._const(self.model.body_mass[1:], x)
        return (mass[:, None] * self._group(x, "xipos")).sum(-2) / mass.sum()

    def _healthy(self, x: Tensor) -> Tensor:
        lo, hi = self.opts["healthy_z_range"]
        z = self.qpos(x)[..., 2]
        return (lo < z) & (z < hi)

    def _terminated(self, x: Tensor) -> Tensor:
        return ~self._healthy(x) & bool(self.opts["terminate_when_unhealthy"])

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        o = self.opts
        dx = self.mass_center(x_next)[..., 0] - self.mass_center(x)[..., 0]
        forward = o["forward_reward_weight"] * dx / self.spec.dt
        healthy = o["healthy_reward"] * self._healthy(x_next).to(x.dtype)
        contact = self._contact_cost(x_next, o["contact_cost_weight"], o["contact_cost_range"])
        return forward + healthy - self._ctrl_cost(u, o["ctrl_cost_weight"]) - contact


class HumanoidStandup(_HumanoidBase):
    """``uph_cost_weight`` is accepted and, as in gymnasium, not used."""

    xml, task, frame_skip_default = "humanoidstandup.xml", "HumanoidStandup-v5", 5
    options: ClassVar[dict[str, Any]] = {
        "uph_cost_weight": 1.0,
        "ctrl_cost_weight": 0.1,
        "impact_cost_weight": 0.5e-6,
        "impact_cost_range": (-float("inf"), 10.0),
        **_HUMANOID_OBS,
    }

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        o = self.opts
        uph = self.qpos(x_next)[..., 2] / float(self.model.opt.timestep)
        impact = self._contact_cost(x_next, o["impact_cost_weight"], o["impact_cost_range"])
        return uph - self._ctrl_cost(u, o["ctrl_cost_weight"]) - impact + 1


TASKS.update({cls.task: cls for cls in (Ant, Humanoid, HumanoidStandup)})
