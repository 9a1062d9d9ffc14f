"""MuJoCo models as pure, batched, differentiable diffctl environments (MuJoCo's C engine).

``make("mjcf:<path.xml>", reward=...)`` wraps a user's MJCF model; ``make("mujoco:<Task>-v5")``
(``mujoco_tasks``) builds gymnasium's MuJoCo tasks on the same class. Needs the ``mujoco``
package (``pip install 'diffctl[mujoco]'``).

* **State** ``x = [qpos, qvel, act, sensordata]``: MuJoCo's physics state (``mjSTATE_PHYSICS``:
  positions, velocities, actuator activations, and the history and plugin state of models that
  have them; the time is left out, it drives nothing here) followed by the model's sensor
  readings as MuJoCo left them in ``mjData`` after the step. The physics part makes one step a
  function of ``x``; the sensor part carries what gymnasium's tasks read from ``mjData`` after a
  step, which MuJoCo computed during the step (body and site positions, centres of mass,
  contact forces): a task adds those quantities to the model as sensors (``mjSpec``), so its
  reward and observation are functions of ``x`` and equal gymnasium's. Where ``mjData`` is left
  depends on the integrator:

  - Euler and implicit: at the start of the last substep, where a rollout reports the sensors.
  - RK4: at the last substep's last internal stage ``X_3``, where MuJoCo evaluates no sensors.
    The env takes that substep itself (``MujocoSim.last_substep``): four one-substep rollouts
    of an Euler copy give the stage accelerations, warm-started as MuJoCo's stages are; the
    stages and the end state are combined as MuJoCo's ``mj_RungeKutta`` does (positions by
    ``mj_integratePos``'s maps, the rotations of free and ball joints on the Lie group), and
    the last rollout evaluates the sensors at ``X_3``. This equals gymnasium's step to 1e-9 on
    all five RK4 tasks (``tests/envs/test_mujoco_robots.py``), and costs what MuJoCo's own
    substep does: the same four evaluations of the dynamics. RK4 models with activations,
    history or plugin state are read at the step's end.

  ``spec.extra["layout"]`` names the slices. The solver's warm start (``qacc_warmstart``) is
  not in ``x``: every step starts it from zero (within a step, each substep starts from the
  previous one's, as in MuJoCo), which is what gymnasium does after ``set_state`` on a fresh
  ``mjData``; against a chained gymnasium rollout that keeps its warm start, one step differs
  by ~1e-11 on the humanoid (PGS solver) and ~1e-15 on the others (measured in
  ``tests/envs/test_mujoco.py``).
  ``state_from(qpos, qvel)`` builds ``x`` from positions and velocities (sensors evaluated at
  that state, as ``set_state`` + ``mj_forward`` leave them). ``env.layout`` holds the slices,
  ``spec.extra["layout"]`` the same as ``(start, stop)`` pairs.
* **Dynamics**: batched rollouts of ``frame_skip`` substeps with the action held
  (``mjData.ctrl``; MuJoCo clamps it to the actuators' ``ctrlrange``) on a ``mujoco.batch.Batch``,
  multi-threaded over the batch in C (``nthread``, default ``torch.get_num_threads()``), never
  a Python loop. Its rows carry the solver's warm start in and out, which ``mujoco.rollout``
  does not return. Computation is in float64; a float32 env rounds its states and actions on
  the way in and out.
* **Gradients**: ``dynamics`` is a ``torch.autograd.Function``. Its backward computes the
  Jacobians ``dx'/dx`` and ``dx'/du`` by central finite differences of the same step: the
  ``2 (n_phys + nu)`` perturbed copies of every row run as one batched rollout in C (this covers
  the ``frame_skip`` substeps and any integrator in one pass, in ``x``'s own coordinates; the
  per-substep ``mjd_transitionFD`` would need a Python loop over rows and substeps and a map
  from MuJoCo's tangent space). Jacobians are computed only when a gradient is asked for
  (``jacobians`` returns them directly). Columns of the sensor part are zero: the physics does
  not read it. Physical parameters in ``env.params`` get finite-difference gradients the same
  way, one perturbed model per element that requires grad.
* **Physical parameters** ``env.params``: one scalar tensor per element, named by the model's
  names: ``body_mass:<body>``, ``dof_damping:<joint>``, ``actuator_gear:<actuator>`` (the first
  gear component: the transmission's scale) and ``geom_friction:<geom>`` (sliding friction);
  written into the model before every step, so ``env.replace(**{"body_mass:torso": 7.0})`` or
  a ``GreyBoxModel`` over some of them changes the simulated system. Only the elements that
  require grad get finite-difference gradients (two perturbed models each).
* **Time**: ``spec.dt = opt.timestep * frame_skip``; ``spec.max_steps = 1000``.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .base import Env, EnvSpec

__all__ = [
    "MujocoEnv",
    "MjcfEnv",
    "MujocoSim",
    "make_mjcf",
    "param_elements",
    "load_model",
    "field",
    "INSTALL_HINT",
    "FIELDS",
]

INSTALL_HINT = "pip install 'diffctl[mujoco]'"
MAX_STEPS = 1000

#: Model fields whose elements are physical parameters: name -> (MjModel attribute, column).
FIELDS: dict[str, tuple[str, int | None]] = {
    "body_mass": ("body_mass", None),
    "dof_damping": ("dof_damping", None),
    "actuator_gear": ("actuator_gear", 0),  # the transmission's scale
    "geom_friction": ("geom_friction", 0),  # sliding friction
}


def field(model: Any, name: str) -> np.ndarray:
    """The writable view of parameter field ``name`` (a ``FIELDS`` key) of ``model``."""
    attr, column = FIELDS[name]
    values = getattr(model, attr)
    return values if column is None else values[:, column]


def param_elements(model: Any) -> list[tuple[str, str, int]]:
    """``(name, field, index)`` of every physical parameter of ``model``: ``body_mass:<body>``
    (the world body left out), ``dof_damping:<joint>`` (``<joint>:<k>`` for the ``k``-th dof
    of a free or ball joint), ``actuator_gear:<actuator>``, ``geom_friction:<geom>``; an
    unnamed element is named by its index."""

    def label(obj: Any, i: int) -> str:
        return obj.name or str(i)

    out = [(f"body_mass:{label(model.body(i), i)}", "body_mass", i) for i in range(1, model.nbody)]
    ndof = np.bincount(model.dof_jntid, minlength=model.njnt)
    for i in range(model.nv):
        j = int(model.dof_jntid[i])
        name = f"dof_damping:{label(model.joint(j), j)}"
        out.append(
            (name + (f":{i - model.jnt_dofadr[j]}" if ndof[j] > 1 else ""), "dof_damping", i)
        )
    out += [
        (f"actuator_gear:{label(model.actuator(i), i)}", "actuator_gear", i)
        for i in range(model.nu)
    ]
    out += [
        (f"geom_friction:{label(model.geom(i), i)}", "geom_friction", i) for i in range(model.ngeom)
    ]
    return out


def _import_mujoco() -> Any:
    try:
        import mujoco
        from mujoco import rollout  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised without the extra
        raise ImportError(f"MuJoCo environments need the mujoco package: {INSTALL_HINT}") from e
    return mujoco


class MujocoSim:
    """A compiled MuJoCo model and the batched C calls on it (states as float64 numpy).

    Args:
        model: a compiled ``mujoco.MjModel``.
        frame_skip: substeps per step, the action held.
        nthread: threads of the rollout pool.
    """

    def __init__(self, model: Any, frame_skip: int, nthread: int) -> None:
        mujoco = _import_mujoco()
        self.mujoco = mujoco
        self.model = model
        self.frame_skip = frame_skip
        self.nthread = nthread
        state = mujoco.mjtState
        self._physics = int(state.mjSTATE_FULLPHYSICS)
        self._warmstart = int(state.mjSTATE_WARMSTART)
        self.nphys = mujoco.mj_stateSize(model, self._physics) - 1  # less the time
        self._rows = _row_layout(mujoco, model)
        self._batch: Any = None  # a mujoco.batch.Batch, made (and grown) on first use
        self.nsensor = model.nsensordata
        self.nx = self.nphys + self.nsensor
        self.nu = model.nu
        # the model as each call needs it: (Euler, sensors on) -> a copy (see `_variant`)
        self._variants = {
            (euler, sensors): self._variant(model, euler, sensors)
            for euler in (False, True)
            for sensors in (False, True)
        }
        self.read_at = self._reading_instant(model)
        # mj_integratePos's coordinates: (qpos, dof) index pairs moved linearly (hinge, slide,
        # free joints' translation), and the quaternions' qpos [K, 4] and rotation dofs [K, 3]
        # (free and ball joints)
        free, ball = int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_BALL)
        linear: list[tuple[int, int]] = []
        quats: list[tuple[int, int]] = []
        for j in range(model.njnt):
            kind, a, b = int(model.jnt_type[j]), int(model.jnt_qposadr[j]), int(model.jnt_dofadr[j])
            if kind == free:
                linear += [(a + i, b + i) for i in range(3)]
                a, b = a + 3, b + 3
            if kind in (free, ball):
                quats.append((a, b))
            else:
                linear.append((a, b))
        lin, rot = (np.array(c, dtype=np.int64).reshape(-1, 2) for c in (linear, quats))
        self._linear_q, self._linear_v = lin[:, 0], lin[:, 1]
        self._quat_q, self._rot_v = rot[:, :1] + np.arange(4), rot[:, 1:] + np.arange(3)

    def write_params(self, values: Mapping[str, np.ndarray]) -> None:
        """Write physical parameters (field -> full array) into this sim's model and its
        variants."""
        for model in self._variants.values():
            for name, v in values.items():
                field(model, name)[:] = v

    def _reading_instant(self, model: Any) -> str:
        """Where the sensors of a step are read (see the module docstring): ``"start"`` of the
        last substep (what MuJoCo computes during a step), RK4's last ``"stage"`` (RK4 models
        whose physics state is ``qpos, qvel``), or the step's ``"end"`` (RK4 models with
        activations, history or plugin state)."""
        mujoco = self.mujoco
        if model.opt.integrator != mujoco.mjtIntegrator.mjINT_RK4:
            return "start"
        return "stage" if self.nphys == model.nq + model.nv else "end"

    def integrate_pos(self, qpos: np.ndarray, qvel: np.ndarray, h: float) -> np.ndarray:
        """``mj_integratePos`` on rows: ``qpos [R, nq]`` moved by ``qvel [R, nv]`` over ``h``;
        hinge, slide and the free joints' translation linearly, quaternions (free and ball
        joints) by the exponential map, ``q <- normalise(q) * exp(h w / 2)``, as MuJoCo's
        ``mju_quatIntegrate``."""
        out = qpos.copy()
        out[:, self._linear_q] += h * qvel[:, self._linear_v]
        r, k = qpos.shape[0], len(self._quat_q)
        if k:
            quat = _quat_integrate(
                out[:, self._quat_q].reshape(r * k, 4), qvel[:, self._rot_v].reshape(r * k, 3), h
            )
            out[:, self._quat_q] = quat.reshape(r, k, 4)
        return out

    def _variant(self, model: Any, euler: bool, sensors: bool) -> Any:
        """``model`` (itself, or a copy) with, if ``euler``, the Euler integrator and implicit
        damping off: a one-substep rollout then evaluates the forward dynamics once, at its
        start state (RK4 would take four), and advances the velocities by exactly ``h qacc``;
        and without ``sensors``, the sensors off (``mjDSBL_SENSOR``), for the substeps whose
        readings are not kept."""
        if not euler and sensors:
            return model
        m, mujoco = copy.copy(model), self.mujoco
        if euler:
            m.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER
            m.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_EULERDAMP
        if not sensors:
            m.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_SENSOR
        return m

    def _models(self, models: Sequence[Any] | None, euler: bool, sensors: bool) -> Any:
        """The sim's model as ``_variant`` makes it, or (``models``: one per row) the same
        variant of each row's model, one copy per distinct model."""
        if models is None:
            return self._variants[(euler, sensors)]
        copies: dict[int, Any] = {}
        for m in models:
            if id(m) not in copies:
                copies[id(m)] = self._variant(m, euler, sensors)
        return [copies[id(m)] for m in models]

    def _batch_of(self, r: int) -> Any:
        """A ``mujoco.batch.Batch`` of at least ``r`` simulations, kept and grown as needed."""
        if self._batch is None or self._batch.nsim < r:
            from mujoco import batch

            self._batch = batch.Batch(self.model, r, nthread=self.nthread)
        return self._batch

    def rollout(
        self,
        x: np.ndarray,
        u: np.ndarray,
        nstep: int,
        models: Sequence[Any] | Any | None = None,
        warmstart: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``nstep`` substeps from the physics part of ``x [R, >= nphys]`` with ``u [R, nu]``
        held, the constraint solver warm-started from ``warmstart [R, nv]`` (default zero);
        returns the physics states after every substep ``[R, nstep, nphys]``, the sensor
        readings ``[R, nsensor]`` computed at the start of the last substep, and the warm start
        ``qacc_warmstart [R, nv]`` MuJoCo leaves after it (Euler: the last substep's ``qacc``;
        RK4: its last stage's)."""
        r = x.shape[0]
        sims = self._batch_of(r)
        rows = sims.state[:r]
        for src, dst in self._rows["physics"]:
            rows[:, dst] = x[:, src]
        rows[:, self._rows["warmstart"]] = 0.0 if warmstart is None else warmstart
        rows[:, self._rows["time"]] = 0.0  # every call starts at time 0, as x has no time
        model = self.model if models is None else models
        if isinstance(model, list):  # one model per row; the unused rows run the sim's own
            model = model + [self.model] * (sims.nsim - r)
        sims.set_models(model)
        out = sims.rollout(
            nstep,
            control=u.reshape(r, 1, self.nu),
            record=(self._physics, self._warmstart, "sensordata"),
            ids=None if sims.nsim == r else np.arange(r),
        )
        return out[self._physics][:, :, 1:], out["sensordata"][:, -1], out[self._warmstart][:, -1]

    def step(self, x: np.ndarray, u: np.ndarray, models: Sequence[Any] | None = None) -> np.ndarray:
        """``x' [R, nx]`` of one step (``frame_skip`` substeps; ``models``: one per row)."""
        if self.read_at == "start":
            states, sens, _ = self.rollout(x, u, self.frame_skip, models)
            return np.concatenate([states[:, -1], sens], axis=1)
        quiet = self._models(models, euler=False, sensors=False)
        if self.read_at == "end":
            phys = self.rollout(x, u, self.frame_skip, quiet)[0][:, -1]
            return np.concatenate([phys, self.sense(phys, u, models)], axis=1)
        start, warm = x[:, : self.nphys], None
        if self.frame_skip > 1:
            states, _, warm = self.rollout(x, u, self.frame_skip - 1, quiet)
            start = states[:, -1]
        phys, sens = self.last_substep(start, u, warm, models)
        return np.concatenate([phys, sens], axis=1)

    def last_substep(
        self,
        start: np.ndarray,
        u: np.ndarray,
        warmstart: np.ndarray | None = None,
        models: Sequence[Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One RK4 substep from ``start [R, nphys]`` (``qpos, qvel``) as MuJoCo's
        ``mj_RungeKutta`` takes it; returns the state after it ``[R, nphys]`` and the sensor
        readings ``[R, nsensor]`` at its last internal stage ``X_3``, where MuJoCo leaves
        ``mjData``'s derived quantities (and so where gymnasium reads them).

        The classic tableau (``A = 1/2, 1/2, 1``; ``B = 1/6, 1/3, 1/3, 1/6``) over stages
        ``X_i = (X_0 (+) h A_i w_(i-1), v_0 + h A_i a_(i-1))`` with ``a_i = qacc(X_i)``, every
        stage's constraint solve warm-started from the same ``warmstart``; the substep ends
        at ``(X_0 (+) h sum_i B_i w_i, v_0 + h sum_i B_i a_i)``. ``(+)`` is ``mj_integratePos``
        and ``w_i`` the velocity ``v_i``, except on the rotations of free and ball joints:
        MuJoCo 4 integrates them on the Lie group (Runge-Kutta-Munthe-Kaas, Munthe-Kaas 1998),
        ``w_i = dexp^-1(Theta_i, v_i) = v_i + Theta_i x v_i / 2 + Theta_i x (Theta_i x v_i) /
        12`` with ``Theta_i = h A_i w_(i-1)`` the stage's rotation (found to match MuJoCo 4.0.1
        to 1e-16; its source is not published with the wheel). Each ``a_i`` is one substep of
        the sensing copy (Euler: the warm start it leaves is the acceleration at its start),
        all rows at once; the last one also reads the sensors at ``X_3`` (``models``: one
        per row)."""
        nq, h = self.model.nq, self.model.opt.timestep
        quiet = self._models(models, euler=True, sensors=False)
        sensing = self._models(models, euler=True, sensors=True)
        q0, v0 = start[:, :nq], start[:, nq:]
        q, v, w = q0, v0, v0
        acc, vel = [], []
        for c, m in ((0.5, quiet), (0.5, quiet), (1.0, quiet), (None, sensing)):
            _, sens, a = self.rollout(np.concatenate([q, v], axis=1), u, 1, m, warmstart)
            acc.append(a)
            vel.append(w)
            if c is not None:
                q, v = self.integrate_pos(q0, c * w, h), v0 + h * (c * a)
                w = self._dexpinv(h * (c * w), v)
        b = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
        q1 = self.integrate_pos(q0, sum(bi * wi for bi, wi in zip(b, vel)), h)
        v1 = v0 + h * sum(bi * ai for bi, ai in zip(b, acc))
        return np.concatenate([q1, v1], axis=1), sens

    def _dexpinv(self, theta: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``v [R, nv]`` with the rotational dofs of free and ball joints replaced by
        ``v + theta x v / 2 + theta x (theta x v) / 12`` (``theta [R, nv]``: the stage's
        rotation); other dofs unchanged."""
        out = v.copy()
        t, x = theta[:, self._rot_v], v[:, self._rot_v]  # [R, K, 3]
        out[:, self._rot_v] = x + 0.5 * np.cross(t, x) + np.cross(t, np.cross(t, x)) / 12
        return out

    def sense(
        self, phys: np.ndarray, u: np.ndarray | None = None, models: Sequence[Any] | None = None
    ) -> np.ndarray:
        """Sensor readings ``[R, nsensor]`` at physics states ``phys [R, nphys]`` under
        controls ``u`` (default zero), as ``mj_forward`` leaves them (``models``: one per
        row)."""
        if self.nsensor == 0:
            return np.zeros((phys.shape[0], 0))
        if u is None:
            u = np.zeros((phys.shape[0], self.nu))
        return self.rollout(phys, u, 1, self._models(models, euler=True, sensors=True))[1]

    def jacobians(self, x: np.ndarray, u: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """``(dx'/dx [B, nx, nx], dx'/du [B, nx, nu])`` by central differences, all
        ``2 (nphys + nu)`` perturbed rows of every example in one rollout."""
        b, n = x.shape[0], self.nphys + self.nu
        z = np.concatenate([x[:, : self.nphys], u], axis=1)  # [B, n]
        d = np.concatenate([np.eye(n), -np.eye(n)]) * eps  # [2n, n]
        zp = (z[:, None, :] + d[None]).reshape(b * 2 * n, n)
        out = self.step(zp[:, : self.nphys], zp[:, self.nphys :]).reshape(b, 2, n, self.nx)
        jac = ((out[:, 0] - out[:, 1]) / (2 * eps)).transpose(0, 2, 1)  # [B, nx, n]
        jx = np.zeros((b, self.nx, self.nx))
        jx[:, :, : self.nphys] = jac[:, :, : self.nphys]
        return jx, jac[:, :, self.nphys :]

    def param_jacobians(
        self,
        x: np.ndarray,
        u: np.ndarray,
        values: Mapping[str, np.ndarray],
        elements: Sequence[tuple[str, int]],
        eps: float,
    ) -> np.ndarray:
        """``dx'/dp [B, nx, P]`` of the parameters ``elements`` (``(field, index)``; current
        ``values``: field -> array) by central differences, with the step scaled to each
        value: one perturbed model per element and sign, all rows in one rollout."""
        b, p = x.shape[0], len(elements)
        models, steps = [], []
        for sign in (1.0, -1.0):
            for name, i in elements:
                m = copy.copy(self.model)
                v = np.array(values[name], dtype=np.float64)
                h = eps * max(1.0, abs(v[i]))
                v[i] += sign * h
                field(m, name)[:] = v
                models.append(m)
                steps.append(h)
        out = self.step(
            np.tile(x, (2 * p, 1)), np.tile(u, (2 * p, 1)), [m for m in models for _ in range(b)]
        )
        out = out.reshape(2, p, b, self.nx)
        h = np.asarray(steps[:p])[:, None, None]
        return ((out[0] - out[1]) / (2 * h)).transpose(1, 2, 0)


def _row_layout(mujoco: Any, model: Any) -> dict[str, Any]:
    """Where ``x``'s physics part (``mjSTATE_FULLPHYSICS`` less the time), the warm start and
    the time lie in a ``mujoco.batch.Batch`` row (``mjSTATE_INTEGRATION``): ``"physics"``,
    pairs of (slice of ``x``, slice of the row), one per component; ``"warmstart"`` and
    ``"time"``, slices. A component's offset in a state vector is the size of the components
    of lower bits."""
    state = mujoco.mjtState
    full, row = int(state.mjSTATE_FULLPHYSICS), int(state.mjSTATE_INTEGRATION)

    def place(spec: int, bit: int) -> slice:
        start = mujoco.mj_stateSize(model, spec & (bit - 1))
        return slice(start, start + mujoco.mj_stateSize(model, bit))

    physics = []
    for k in range(1, int(state.mjNSTATE)):  # bit 0 is the time
        bit = 1 << k
        if full & bit and mujoco.mj_stateSize(model, bit):
            src = place(full, bit)
            physics.append((slice(src.start - 1, src.stop - 1), place(row, bit)))
    return {
        "physics": physics,
        "warmstart": place(row, int(state.mjSTATE_WARMSTART)),
        "time": place(row, int(state.mjSTATE_TIME)),
    }


def _quat_integrate(quat: np.ndarray, vel: np.ndarray, h: float) -> np.ndarray:
    """MuJoCo's ``mju_quatIntegrate`` on rows: ``quat [R, 4]`` (w, x, y, z) normalised, then
    rotated by ``exp(h vel / 2)`` in its local frame (``vel [R, 3]``)."""
    norm = np.linalg.norm(vel, axis=1, keepdims=True)
    axis = np.where(norm > 1e-15, vel / np.where(norm > 1e-15, norm, 1.0), [1.0, 0.0, 0.0])
    half = 0.5 * h * norm
    rot = np.concatenate([np.cos(half), axis * np.sin(half)], axis=1)
    q = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    w1, v1, w2, v2 = q[:, :1], q[:, 1:], rot[:, :1], rot[:, 1:]
    return np.concatenate([w1 * w2 - (v1 * v2).sum(1, keepdims=True),
                           w1 * v2 + w2 * v1 + np.cross(v1, v2)], axis=1)  # fmt: skip


def _numpy64(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _simulate(env: MujocoEnv, x: Tensor, u: Tensor) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """``x'`` of rows ``x [B, nx]``, ``u [B, nu]`` (and the float64 inputs)."""
    x64, u64 = _numpy64(x), _numpy64(u)
    if not np.isfinite(x64).all():
        raise ValueError("x: state contains NaN or inf")
    if not np.isfinite(u64).all():
        raise ValueError("u: action contains NaN or inf")
    out = torch.from_numpy(env.sim.step(x64, u64)).to(device=x.device, dtype=x.dtype)
    return out, x64, u64


class _Step(torch.autograd.Function):
    """``x' = f(x, u; params)`` through MuJoCo, with finite-difference Jacobians. ``params``
    are the parameters that require grad, ``env.param_elements[k]`` for ``k`` in ``index``."""

    @staticmethod
    def forward(
        ctx: Any, env: MujocoEnv, index: tuple[int, ...], x: Tensor, u: Tensor, *params: Tensor
    ) -> Tensor:
        values = env.write_params()
        out, ctx.x64, ctx.u64 = _simulate(env, x, u)
        ctx.env, ctx.index, ctx.values = env, index, values
        ctx.device, ctx.dtype = x.device, x.dtype
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        env, sim = ctx.env, ctx.env.sim
        g = _numpy64(grad)  # [B, nx]
        sim.write_params(ctx.values)
        gx = gu = None
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            jx, ju = sim.jacobians(ctx.x64, ctx.u64, env.fd_eps)
            gx = torch.from_numpy(np.einsum("bi,bij->bj", g, jx))
            gu = torch.from_numpy(np.einsum("bi,bij->bj", g, ju))
            gx, gu = (t.to(device=ctx.device, dtype=ctx.dtype) for t in (gx, gu))
        gparams: list[Tensor | None] = [None] * len(ctx.index)
        if ctx.index:
            elements = [env.param_elements[k][1:] for k in ctx.index]
            jp = sim.param_jacobians(ctx.x64, ctx.u64, ctx.values, elements, env.fd_eps)
            gp = torch.from_numpy(np.einsum("bi,bij->j", g, jp))
            gparams = list(gp.to(device=ctx.device, dtype=env.dtype).unbind())
        return (None, None, gx, gu, *gparams)


def _compile_quietly(mujoco: Any, spec: Any) -> Any:
    """``spec.compile()`` with MuJoCo's deprecation notice on ``settotalmass`` (in gymnasium's
    humanoid and half-cheetah files) dropped instead of written to ``MUJOCO_LOG.TXT``; other
    warnings become Python warnings."""

    def notice(msg: str) -> None:
        if "settotalmass" not in msg:
            warnings.warn(f"MuJoCo: {msg}", stacklevel=3)

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(notice)
    try:
        with warnings.catch_warnings():  # the bindings repeat the notice as a UserWarning
            warnings.filterwarnings("ignore", "compiler attribute 'settotalmass'")
            return spec.compile()
    finally:
        mujoco.set_mju_user_warning(previous)


def load_model(
    source: str | os.PathLike[str], add_sensors: Callable[[Any], None] | None = None
) -> Any:
    """Compile an MJCF file (with ``add_sensors(spec)`` applied first); MuJoCo's parse errors
    are re-raised as ``ValueError`` naming the file."""
    mujoco = _import_mujoco()
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: MJCF file {path!r} does not exist")
    try:
        spec = mujoco.MjSpec.from_file(path)
        if add_sensors is not None:
            add_sensors(spec)
        return _compile_quietly(mujoco, spec)
    except ValueError as e:
        raise ValueError(f"path: MuJoCo cannot load {path!r}: {e}") from e


class MujocoEnv(Env):
    """A MuJoCo model as a pure, batched, differentiable env (see the module docstring).

    Args:
        model: path of an MJCF file, or a compiled ``mujoco.MjModel``.
        frame_skip: substeps per step (default: the count nearest 20 ms, at least 1).
        reset_noise_scale: start states are ``qpos0 + U(-s, s)``, ``qvel U(-s, s)``.
        nthread: rollout threads (default ``torch.get_num_threads()``).
        fd_eps: finite-difference step of the Jacobians.
        max_steps: episode time limit of ``VecEnv``.
        add_sensors: ``f(mujoco.MjSpec)`` adding sensors before compiling (a path only).
        params: initial physical parameters (see module docstring).
        name: ``spec.name``.
    """

    host_engine: ClassVar[bool] = True  # every step is a call into MuJoCo's C engine

    def __init__(
        self,
        model: Any,
        *,
        frame_skip: int | None = None,
        reset_noise_scale: float = 0.1,
        nthread: int | None = None,
        fd_eps: float = 1e-6,
        max_steps: int = MAX_STEPS,
        add_sensors: Callable[[Any], None] | None = None,
        params: Mapping[str, Any] | None = None,
        name: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        mujoco = _import_mujoco()
        #: the MJCF file the model was compiled from (None for a compiled model passed in)
        self.model_path = os.fspath(model) if isinstance(model, str | os.PathLike) else None
        if isinstance(model, mujoco.MjModel):
            if add_sensors is not None:
                raise ValueError("add_sensors: needs an MJCF path, not a compiled model")
            model = copy.copy(model)
        elif isinstance(model, str | os.PathLike):
            model = load_model(model, add_sensors)
        else:
            raise TypeError(f"model: expected an MJCF path or mujoco.MjModel, got {type(model)}")
        if frame_skip is None:
            frame_skip = max(1, round(0.02 / float(model.opt.timestep)))
        if isinstance(frame_skip, bool) or not isinstance(frame_skip, int) or frame_skip < 1:
            raise ValueError(f"frame_skip: expected a positive int, got {frame_skip!r}")
        if nthread is None:
            nthread = torch.get_num_threads()
        if isinstance(nthread, bool) or not isinstance(nthread, int) or nthread < 1:
            raise ValueError(f"nthread: expected a positive int, got {nthread!r}")
        if not (isinstance(fd_eps, float | int) and 0 < fd_eps < 1):
            raise ValueError(f"fd_eps: expected a number in (0, 1), got {fd_eps!r}")
        if not (isinstance(reset_noise_scale, float | int) and reset_noise_scale >= 0):
            raise ValueError(
                f"reset_noise_scale: expected a number >= 0, got {reset_noise_scale!r}"
            )
        self.sim = MujocoSim(model, frame_skip, nthread)
        self.fd_eps = float(fd_eps)
        self.reset_noise_scale = float(reset_noise_scale)
        self.param_elements = param_elements(model)
        self._fields = {k: np.array(field(model, k), dtype=np.float64) for k in FIELDS}
        self.default_params = {n: float(self._fields[f][i]) for n, f, i in self.param_elements}
        # per field: the elements' indices in the field and their rows in param_elements
        self._field_index = {f: [i for _, g, i in self.param_elements if g == f] for f in FIELDS}
        self._param_rows = {
            f: [k for k, (_, g, _) in enumerate(self.param_elements) if g == f] for f in FIELDS
        }
        super().__init__(params, device=device, dtype=dtype)
        m = model
        nq, nv, na = m.nq, m.nv, m.na
        sim = self.sim
        self.layout = {
            "qpos": slice(0, nq),
            "qvel": slice(nq, nq + nv),
            "act": slice(nq + nv, nq + nv + na),
            "physics": slice(0, sim.nphys),
            "sensordata": slice(sim.nphys, sim.nx),
        }
        ctrl_low, ctrl_high = self._control_range()
        self.spec = EnvSpec(
            name=name or "mjcf:model",
            state_dim=sim.nx,
            obs_dim=self._obs_dim(),
            act_dim=m.nu,
            action_low=ctrl_low,
            action_high=ctrl_high,
            dt=float(m.opt.timestep) * frame_skip,
            max_steps=max_steps,
            extra={
                "layout": {k: (v.start, v.stop) for k, v in self.layout.items()},
                "frame_skip": frame_skip,
            },
        )

    # ------------------------------------------------------------------ model facts
    @property
    def model(self) -> Any:
        """The compiled ``mujoco.MjModel`` (its parameters are ``env.params``'s at each step)."""
        return self.sim.model

    def _control_range(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        m = self.model
        low, high = [], []
        for i in range(m.nu):
            if m.actuator_ctrllimited[i]:
                low.append(float(m.actuator_ctrlrange[i, 0]))
                high.append(float(m.actuator_ctrlrange[i, 1]))
            else:
                low.append(-float("inf"))
                high.append(float("inf"))
        return tuple(low), tuple(high)

    def _obs_dim(self) -> int:
        probe = torch.zeros(1, self.sim.nx, dtype=self.dtype, device=self.device)
        return int(self._observe(probe).shape[-1])

    def write_params(self) -> dict[str, np.ndarray]:
        """Write ``env.params`` into the model; returns them as full fields (field -> array)."""
        current = _numpy64(torch.stack([self.params[n] for n, _, _ in self.param_elements]))
        fields = {}
        for name, default in self._fields.items():
            fields[name] = default.copy()
            fields[name][self._field_index[name]] = current[self._param_rows[name]]
        self.sim.write_params(fields)
        return fields

    def _set_params(self, params: Mapping[str, Any]) -> None:
        super()._set_params(params)
        for name in params:
            if not name.startswith("actuator_gear:") and float(self.params[name].detach()) < 0:
                raise ValueError(f"{name}: must be >= 0, got {float(self.params[name])}")

    # ------------------------------------------------------------------ states
    def qpos(self, x: Tensor) -> Tensor:
        """Joint positions ``[..., nq]`` of states ``x``."""
        return x[..., self.layout["qpos"]]

    def qvel(self, x: Tensor) -> Tensor:
        """Joint velocities ``[..., nv]`` of states ``x``."""
        return x[..., self.layout["qvel"]]

    def sensor(self, x: Tensor, name: str) -> Tensor:
        """The readings ``[..., dim]`` of the sensor ``name`` carried in ``x``."""
        try:
            s = self.model.sensor(name)
        except KeyError as e:
            raise ValueError(f"name: the model has no sensor {name!r}") from e
        start = self.layout["sensordata"].start + int(s.adr[0])
        return x[..., start : start + int(s.dim[0])]

    def state_from(self, qpos: Tensor, qvel: Tensor, act: Tensor | None = None) -> Tensor:
        """States ``[B, nx]`` from positions ``[B, nq]`` and velocities ``[B, nv]`` (and
        activations), with the sensors evaluated there: gymnasium's ``set_state``."""
        m = self.model
        qpos, qvel = torch.atleast_2d(qpos), torch.atleast_2d(qvel)
        if qpos.shape[-1] != m.nq or qvel.shape[-1] != m.nv or qpos.shape[0] != qvel.shape[0]:
            raise ValueError(
                f"qpos, qvel: expected shapes [B, {m.nq}] and [B, {m.nv}], got "
                f"{tuple(qpos.shape)} and {tuple(qvel.shape)}"
            )
        b = qpos.shape[0]
        phys = torch.zeros(b, self.sim.nphys, dtype=torch.float64)
        phys[:, : m.nq] = qpos.detach().to("cpu", torch.float64)
        phys[:, m.nq : m.nq + m.nv] = qvel.detach().to("cpu", torch.float64)
        if act is not None:
            phys[:, self.layout["act"]] = torch.atleast_2d(act).detach().to("cpu", torch.float64)
        return self._with_sensors(phys.numpy())

    def _with_sensors(self, phys: np.ndarray) -> Tensor:
        self.write_params()
        x = np.concatenate([phys, self.sim.sense(phys)], axis=1)
        return torch.from_numpy(x).to(device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------------ Env protocol
    @property
    def reset_noise_dim(self) -> int:  # type: ignore[override]
        return self.model.nq + self.model.nv

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        m, s = self.model, self.reset_noise_scale
        qpos0 = torch.as_tensor(m.qpos0, dtype=u.dtype, device=u.device)
        qpos = qpos0 + s * (2 * u[:, : m.nq] - 1)
        qvel = s * (2 * u[:, m.nq :] - 1)
        return self.state_from(qpos, qvel)

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        batch = x.shape[:-1]
        x2, u2 = x.reshape(-1, x.shape[-1]), u.reshape(-1, u.shape[-1])
        index = tuple(
            k for k, (n, _, _) in enumerate(self.param_elements) if self.params[n].requires_grad
        )
        if torch.is_grad_enabled() and (x.requires_grad or u.requires_grad or index):
            params = [self.params[self.param_elements[k][0]] for k in index]
            flat = _Step.apply(self, index, x2, u2, *params)
        else:  # nothing to differentiate: no autograd node
            self.write_params()
            flat = _simulate(self, x2, u2)[0]
        return flat.reshape(*batch, x.shape[-1])

    def jacobians(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """``(dx'/dx [B, nx, nx], dx'/du [B, nx, nu])`` by central finite differences."""
        self._check_state(x)
        self._check_action(u, x.shape[:-1])
        x2, u2 = x.reshape(-1, x.shape[-1]), u.reshape(-1, u.shape[-1])
        self.write_params()
        jx, ju = self.sim.jacobians(
            x2.detach().to("cpu", torch.float64).numpy(),
            u2.detach().to("cpu", torch.float64).numpy(),
            self.fd_eps,
        )
        return (
            torch.from_numpy(jx).to(device=self.device, dtype=self.dtype),
            torch.from_numpy(ju).to(device=self.device, dtype=self.dtype),
        )

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)

    def _observe(self, x: Tensor) -> Tensor:
        return x[..., : self.model.nq + self.model.nv]


class MjcfEnv(MujocoEnv):
    """A user's MuJoCo model with a torch reward: ``make("mjcf:<path.xml>", reward=...)``.

    Args:
        model: path of an MJCF file, or a compiled ``mujoco.MjModel``.
        reward: ``r(x, u, x_next) -> [...]`` in torch (default: zero); read the sensors the
            model defines with ``env.sensor(x, name)``.
        terminated: ``d(x) -> bool [...]`` (default: never).
        observe: ``o(x) -> [..., obs_dim]`` (default: ``[qpos, qvel]``).
        **kwargs: ``MujocoEnv``'s options (``frame_skip``, ``reset_noise_scale``, ...).
    """

    def __init__(
        self,
        model: Any,
        *,
        reward: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        terminated: Callable[[Tensor], Tensor] | None = None,
        observe: Callable[[Tensor], Tensor] | None = None,
        **kwargs: Any,
    ) -> None:
        for arg, fn in (("reward", reward), ("terminated", terminated), ("observe", observe)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{arg}: expected a callable, got {type(fn).__name__}")
        self._reward_fn, self._terminated_fn, self._observe_fn = reward, terminated, observe
        super().__init__(model, **kwargs)

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        if self._reward_fn is None:
            return super()._reward(x, u, x_next)
        return self._reward_fn(x, u, x_next)

    def _observe(self, x: Tensor) -> Tensor:
        return super()._observe(x) if self._observe_fn is None else self._observe_fn(x)

    def _terminated(self, x: Tensor) -> Tensor:
        if self._terminated_fn is None:
            return super()._terminated(x)
        return self._terminated_fn(x)


def make_mjcf(path: str, **kwargs: Any) -> MjcfEnv:
    """``make("mjcf:<path.xml>", reward=..., ...)``: a user's MJCF model as an env; keyword
    arguments named like parameters (``"body_mass:torso"``) set them."""
    params = {k: kwargs.pop(k) for k in list(kwargs) if ":" in k}
    return MjcfEnv(path, params=params or None, name=f"mjcf:{path}", **kwargs)
