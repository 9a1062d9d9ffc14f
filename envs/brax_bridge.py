"""Brax systems as differentiable diffctl environments (needs the ``[brax]`` extra).

``make("brax:<name>")`` wraps a Brax ``PipelineEnv`` (``ant``, ``humanoid``, ``reacher``,
``inverted_pendulum``, ...) as a pure, batched :class:`~diffctl.envs.base.Env`:

* **State** ``x = [q, qd]`` (joint positions then velocities, Brax's generalized coordinates;
  ``spec.extra["layout"]`` gives the slices). Envs whose Brax observation reads the last action
  (``humanoid``, ``humanoidstandup``: the actuator forces are part of the observation) carry that
  action as well, ``x = [q, qd, u_prev]``, so that ``observe(x)`` equals Brax's observation.
* **Backend**: each env's own default, which is ``"generalized"`` for all the Brax envs above
  (differentiable, contact by constraint forces). ``backend=`` and the Brax constructor's other
  keyword arguments pass through ``make``. The pipeline state is rebuilt from ``[q, qd]`` by
  ``pipeline_init`` on every step (see "Parity" below).
* **Reward, observation, termination** come from the env's own ``step``: ``dynamics(x, u)`` runs
  ``env.step`` on the rebuilt pipeline state, so the next state, observation, reward and done
  flag of one call are Brax's own. ``reward(x, u, x_next)`` for arbitrary ``x_next`` (a learned
  model's prediction, say) *replays* ``env.step`` with the physics step replaced by the pipeline
  state rebuilt from ``x_next``: every Brax reward here is a function of the pipeline states
  before and after the step and of the action, so the replay returns Brax's reward exactly.
  ``observe``/``terminated`` replay the same way. ``Env.step`` and ``VecEnv`` take the next
  state, reward, done flag and observation of one ``env.step`` call together
  (``Env._transition``), and the start states with their observations from one ``env.reset``
  call (``Env._reset``): one JAX call per step, and one per auto-reset draw.
* **Actions** lie in ``[-1, 1]`` per component (Brax's convention: its envs rescale or clip to
  the actuator ranges, and its PPO squashes actions with tanh). Brax clips to the actuator
  range, so the gradient w.r.t. an action component outside it is zero.
* **Time**: ``spec.dt = env.dt`` (``opt.timestep * n_frames``), ``spec.max_steps = 1000``.

Parity: ``tests/envs/test_brax_bridge.py`` checks 100 closed-loop ``inverted_pendulum`` steps
against Brax's own jitted ``env.step`` to 1e-4. The generalized pipeline carries a warm-started
approximate inverse mass matrix from step to step, which a ``[q, qd]`` state cannot hold; for a
contact-rich system such as the humanoid, Brax's own rollout with the pipeline state rebuilt
from ``[q, qd]`` every step separates from its chained rollout within two steps (joint
velocities differ by up to ~10, rewards by ~1e-3). There the bridge is the Markov system
"Brax's step from the state rebuilt from ``[q, qd]``", not a bit-for-bit replica of a chained
Brax rollout.

Tensors cross between torch and JAX by DLPack without host copies (CPU and CUDA, same device).
Gradients cross with a ``torch.autograd.Function`` whose backward is ``jax.vjp`` of the same
batched function (the forward is recomputed inside the backward, so no JAX residuals are held
between the two); the backward is itself such a function, so higher derivatives work too.
``torch.func.vmap``/``grad``/``jacrev`` work (a vmapped call folds into the row batch);
``torch.autograd.grad(..., is_grads_batched=True)`` does not (torch's legacy batching bypasses
custom vmap rules): use ``torch.func.jacrev`` or ``BraxEnv.jacobians`` (``jax.jacfwd``).

The jitted functions are compiled once per (env, batch size, dtype) and shared by every ``make``
of the same env and options; the first call at a new batch size announces that it is compiling
(on stderr with ``verbose=True``, and always on the ``diffctl.envs.brax_bridge`` logger).

``float64`` needs JAX's 64-bit mode, a process-wide JAX flag: pass ``enable_x64=True`` to
``make`` (it sets ``jax_enable_x64``) or set ``JAX_ENABLE_X64=1`` before importing JAX. The
bridge never flips the flag on its own. Float32 envs keep working with the flag on: Brax then
computes in float64 (its default float type) and the outputs are cast to float32.

Named tasks: ``humanoid-balance``, the Brax humanoid with reward ``-(roll^2 + pitch^2)`` of the
torso after the step (lecture notes, "humanoid robot control"), Brax humanoid's termination
(torso height outside ``[1, 2]``) and observation.

The Brax physical parameters are not exposed in ``env.params`` (it is empty).
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .base import Env, EnvSpec

__all__ = [
    "BraxEnv",
    "make_brax",
    "available_brax_envs",
    "check_versions",
    "TESTED_VERSIONS",
    "INSTALL_HINT",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'diffctl[brax]'"
# Versions the bridge is tested with, as [lowest, first excluded); the [brax] extra pins the same.
TESTED_VERSIONS: dict[str, tuple[str, str]] = {
    "jax": ("0.10.2", "0.11"),
    "jaxlib": ("0.10.2", "0.11"),
    "brax": ("0.14.2", "0.15"),
}
# Setting this environment variable to 1 turns the version mismatch error into a warning.
ALLOW_UNTESTED_ENV = "DIFFCTL_BRAX_ALLOW_UNTESTED"
# Brax registry entries that are not physical systems.
_NOT_SYSTEMS = frozenset({"fast"})
MAX_STEPS = 1000


# ---------------------------------------------------------------------- versions and imports
def _parse(version: str) -> tuple[int, ...]:
    nums = re.match(r"^\d+(\.\d+)*", version.strip())
    if nums is None:
        raise ValueError(f"version: cannot parse {version!r}")
    return tuple(int(p) for p in nums.group(0).split("."))


def _installed_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in TESTED_VERSIONS:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def check_versions(versions: Mapping[str, str | None]) -> None:
    """Raise ``ImportError`` when jax/jaxlib/brax are missing or outside ``TESTED_VERSIONS``.

    ``versions`` maps package name to its installed version (``None`` if absent). With the
    environment variable ``DIFFCTL_BRAX_ALLOW_UNTESTED=1`` a version mismatch only warns.
    """
    missing = [pkg for pkg in TESTED_VERSIONS if versions.get(pkg) is None]
    if missing:
        raise ImportError(
            f"the Brax bridge needs {', '.join(missing)}, which is not installed: {INSTALL_HINT}"
        )
    bad = []
    for pkg, (low, high) in TESTED_VERSIONS.items():
        v = _parse(str(versions[pkg]))
        if not (_parse(low) <= v < _parse(high)):
            bad.append(f"{pkg} {versions[pkg]} (tested: >={low},<{high})")
    if bad:
        msg = (
            "the Brax bridge is tested with other versions than the installed "
            f"{'; '.join(bad)}. Reinstall the pinned versions with {INSTALL_HINT}, or set "
            f"{ALLOW_UNTESTED_ENV}=1 to try anyway."
        )
        if os.environ.get(ALLOW_UNTESTED_ENV) == "1":
            logger.warning(msg)
        else:
            raise ImportError(msg)


@dataclass(frozen=True)
class _Modules:
    jax: Any
    jnp: Any
    dlpack: Any
    brax_envs: Any
    brax_state: Any


_MODULES: _Modules | None = None


def _modules() -> _Modules:
    """Import jax and brax once, after checking their versions."""
    global _MODULES
    if _MODULES is None:
        check_versions(_installed_versions())
        try:
            jax = importlib.import_module("jax")
            jnp = importlib.import_module("jax.numpy")
            dlpack = importlib.import_module("jax.dlpack")
            brax_envs = importlib.import_module("brax.envs")
        except ImportError as e:  # a broken or inconsistent install
            raise ImportError(
                f"the Brax bridge could not import jax/brax ({e}); reinstall with {INSTALL_HINT}"
            ) from e
        _MODULES = _Modules(jax, jnp, dlpack, brax_envs, brax_envs.State)
    return _MODULES


# ---------------------------------------------------------------------- named tasks
def _roll_pitch(jnp: Any, quat: Any) -> tuple[Any, Any]:
    """Roll and pitch (ZYX Euler angles) of a unit quaternion ``[w, x, y, z]``."""
    w, x, y, z = quat[0], quat[1], quat[2], quat[3]
    roll = jnp.arctan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = jnp.arcsin(jnp.clip(2.0 * (w * y - z * x), -1.0, 1.0))
    return roll, pitch


def _humanoid_balance(mods: _Modules, **kwargs: Any) -> Any:
    """Brax humanoid whose reward is ``-(roll^2 + pitch^2)`` of the torso after the step."""
    base_cls = mods.brax_envs._envs["humanoid"]

    class HumanoidBalance(base_cls):  # type: ignore[misc, valid-type]
        def step(self, state: Any, action: Any) -> Any:
            out = super().step(state, action)
            # torso orientation: the free joint's quaternion, q[3:7] = [w, x, y, z]
            roll, pitch = _roll_pitch(mods.jnp, out.pipeline_state.q[3:7])
            return out.replace(reward=-(roll**2 + pitch**2))

    return HumanoidBalance(**kwargs)


_TASKS: dict[str, Callable[..., Any]] = {"humanoid-balance": _humanoid_balance}


def available_brax_envs() -> list[str]:
    """Names accepted by ``make("brax:<name>")``: Brax's systems plus diffctl's named tasks."""
    mods = _modules()
    names = [n for n in mods.brax_envs._envs if n not in _NOT_SYSTEMS]
    return sorted([*names, *_TASKS])


# ---------------------------------------------------------------------- torch <-> JAX
def _to_jax(mods: _Modules, t: Tensor) -> Any:
    """Zero-copy view of a torch tensor as a JAX array (DLPack)."""
    return mods.dlpack.from_dlpack(t.detach().contiguous())


def _to_torch(a: Any) -> Tensor:
    """Zero-copy view of a JAX array as a torch tensor (DLPack)."""
    return torch.utils.dlpack.from_dlpack(a)


class _Op:
    """A jitted JAX function of ``n_in`` batched arrays returning a tuple of arrays.

    Called on torch tensors (``forward``); ``grad(n_out)`` is the ``_Op`` of its vector-Jacobian
    product, ``(*inputs, *cotangents) -> input cotangents`` (by ``jax.vjp``, forward recomputed),
    itself differentiable the same way, so torch can take derivatives of any order. The first
    call at each input shape announces that it compiles.
    """

    def __init__(
        self, core: _Core, name: str, fn: Callable[..., Any], n_in: int, nondiff: tuple[int, ...]
    ) -> None:
        self.core = core
        self.name = name
        self.n_in = n_in
        self.nondiff = nondiff
        self._fn = fn
        self._jitted = core.mods.jax.jit(fn)
        self._grad: _Op | None = None
        self._seen: set[tuple[tuple[int, ...], ...]] = set()

    def grad(self, n_out: int) -> _Op:
        if self._grad is None:
            jax, fn, n_in = self.core.mods.jax, self._fn, self.n_in

            def vjp(*args: Any) -> tuple[Any, ...]:
                _, pullback = jax.vjp(fn, *args[:n_in])
                return tuple(pullback(tuple(args[n_in:])))

            name = f"{self.name} gradient"
            self._grad = _Op(self.core, name, vjp, n_in=n_in + n_out, nondiff=())
        return self._grad

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        shapes = tuple(tuple(t.shape) for t in inputs)
        if shapes not in self._seen:
            self._seen.add(shapes)
            self.core.announce(self.name, inputs[0])
        mods = self.core.mods
        outs = self._jitted(*(_to_jax(mods, t) for t in inputs))
        return tuple(_to_torch(o) for o in outs)


class _JaxFunction(torch.autograd.Function):
    """Autograd through an ``_Op``: forward by the jitted function, backward by ``jax.vjp``.

    Supports ``torch.func.vmap`` (and so ``is_grads_batched``): every input and output of an
    ``_Op`` is a batch of independent rows, so a vmapped call flattens the vmapped dimension
    into the row batch.
    """

    @staticmethod
    def forward(op: _Op, *inputs: Tensor) -> tuple[Tensor, ...]:
        return op.forward(*inputs)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        op, *tensors = inputs
        ctx.op = op
        ctx.save_for_backward(*tensors)
        ctx.out_meta = [(o.shape, o.dtype) for o in output]
        ctx.mark_non_differentiable(*(output[i] for i in op.nondiff))

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        inputs = ctx.saved_tensors
        device = inputs[0].device
        cts = tuple(
            g if g is not None else torch.zeros(s, dtype=d, device=device)
            for g, (s, d) in zip(grads, ctx.out_meta)
        )
        gin = _JaxFunction.apply(ctx.op.grad(len(cts)), *inputs, *cts)
        return (None, *(g if need else None for g, need in zip(gin, ctx.needs_input_grad[1:])))

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[int | None, ...], op: _Op, *inputs: Tensor
    ) -> tuple[tuple[Tensor, ...], tuple[int, ...]]:
        V = info.batch_size
        flat = []
        for t, d in zip(inputs, in_dims[1:]):
            t = t.movedim(d, 0) if d is not None else t.expand(V, *t.shape)
            flat.append(t.reshape(V * t.shape[1], *t.shape[2:]))
        outs = _JaxFunction.apply(op, *flat)
        outs = tuple(o.reshape(V, -1, *o.shape[1:]) for o in outs)
        return outs, (0,) * len(outs)


# ---------------------------------------------------------------------- compiled core
class _Core:
    """One Brax env at one dtype and device with its jitted functions (shared, cached)."""

    def __init__(
        self, name: str, brax_env: Any, dtype: torch.dtype, device: torch.device, verbose: bool
    ) -> None:
        mods = _modules()
        self.mods = mods
        jax, jnp = mods.jax, mods.jnp
        self.name = name
        self.verbose = verbose
        jdt = jnp.float64 if dtype == torch.float64 else jnp.float32
        self.jdtype = jdt

        self.env = brax_env
        self._by_dtype: dict[Any, Any] = {}
        self.nq, self.nqd = brax_env.sys.q_size(), brax_env.sys.qd_size()
        self.nu = brax_env.action_size
        # humanoid-style envs observe the (rescaled) last action: keep it in the state
        self.obs_reads_action = len(inspect.signature(brax_env._get_obs).parameters) >= 2
        self.nx = self.nq + self.nqd + (self.nu if self.obs_reads_action else 0)
        template = jax.eval_shape(brax_env.reset, jax.random.PRNGKey(0))
        self.obs_dim = int(template.obs.shape[-1])
        self.dt = float(brax_env.dt)
        State = mods.brax_state
        nq, nqd = self.nq, self.nqd

        def env_for_trace() -> tuple[Any, Any]:
            # Brax computes in JAX's default float type (float64 under jax_enable_x64, even for a
            # float32 env): its system constants are cast to that type, outputs to the env's.
            cdt = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
            if cdt not in self._by_dtype:

                def cast(a: Any) -> Any:
                    floating = jnp.issubdtype(getattr(a, "dtype", int), jnp.floating)
                    return a.astype(cdt) if floating else a

                env = copy.copy(brax_env)
                env.sys = jax.tree.map(cast, brax_env.sys)
                self._by_dtype[cdt] = env
            return self._by_dtype[cdt], cdt

        def env_state(ps: Any, cdt: Any) -> Any:
            return State(
                pipeline_state=ps,
                obs=jnp.zeros(template.obs.shape, cdt),
                reward=jnp.zeros((), cdt),
                done=jnp.zeros((), cdt),
                metrics=jax.tree.map(lambda s: jnp.zeros(s.shape, cdt), template.metrics),
                info=jax.tree.map(lambda s: jnp.zeros(s.shape, cdt), template.info),
            )

        def pipeline(env: Any, x: Any) -> Any:
            return env.pipeline_init(x[:nq], x[nq : nq + nqd])

        def pack(ps: Any, u: Any) -> Any:
            parts = [ps.q, ps.qd] + ([u] if self.obs_reads_action else [])
            return jnp.concatenate(parts).astype(jdt)

        def out(v: Any) -> Any:
            return jnp.asarray(v).astype(jdt)

        def transition(x: Any, u: Any) -> tuple[Any, ...]:
            env, cdt = env_for_trace()
            x, u = x.astype(cdt), u.astype(cdt)
            s1 = env.step(env_state(pipeline(env, x), cdt), u)
            return pack(s1.pipeline_state, u), out(s1.obs), out(s1.reward), out(s1.done)

        def replay(x: Any, u: Any, x_next: Any) -> tuple[Any, ...]:
            env, cdt = env_for_trace()
            x, u, x_next = x.astype(cdt), u.astype(cdt), x_next.astype(cdt)
            # env.step with its physics step replaced by the pipeline state of x_next
            replayed = copy.copy(env)
            ps_next = pipeline(env, x_next)
            replayed.pipeline_step = lambda _state, _action: ps_next
            s1 = replayed.step(env_state(pipeline(env, x), cdt), u)
            return out(s1.obs), out(s1.reward), out(s1.done)

        def reset(bits: Any) -> tuple[Any, ...]:
            env, cdt = env_for_trace()
            s0 = env.reset(jax.lax.bitcast_convert_type(bits, jnp.uint32))
            return pack(s0.pipeline_state, jnp.zeros(self.nu, cdt)), out(s0.obs), out(s0.done)

        def jacobians(x: Any, u: Any) -> tuple[Any, Any]:
            return jax.jacfwd(lambda x, u: transition(x, u)[0], argnums=(0, 1))(x, u)

        vmap = jax.vmap
        self.transition = _Op(self, "dynamics", vmap(transition), 2, nondiff=(3,))
        self.replay = _Op(self, "reward/observation replay", vmap(replay), 3, nondiff=(2,))
        self.reset = _Op(self, "reset", vmap(reset), 1, nondiff=(0, 1, 2))
        self.jacobians = _Op(self, "dynamics Jacobians", vmap(jacobians), 2, nondiff=())

    def announce(self, what: str, first: Tensor) -> None:
        msg = (
            f"diffctl brax:{self.name}: compiling {what} for batch {first.shape[0]} "
            f"({str(self.jdtype.__name__)}, {first.device}); cached afterwards"
        )
        logger.info(msg)
        if self.verbose:
            print(msg, file=sys.stderr, flush=True)


_CORES: dict[tuple[Any, ...], _Core] = {}


def _jax_device_check(mods: _Modules, device: torch.device) -> None:
    platform = "gpu" if device.type == "cuda" else device.type
    if platform not in ("cpu", "gpu"):
        raise ValueError(f"device: the Brax bridge runs on cpu or cuda, got {device}")
    try:
        devices = mods.jax.devices(platform)
    except RuntimeError as e:
        raise ValueError(
            f"device: JAX has no {platform} backend for {device} ({e}); install a CUDA build "
            "of jaxlib, e.g. pip install 'jax[cuda12]'"
        ) from e
    index = device.index or 0
    if index >= len(devices):
        raise ValueError(f"device: JAX sees {len(devices)} {platform} device(s), got {device}")


def _core_for(
    name: str, dtype: torch.dtype, device: torch.device, verbose: bool, kwargs: dict[str, Any]
) -> _Core:
    mods = _modules()
    key = (name, dtype, device, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    core = _CORES.get(key)
    if core is None:
        known = available_brax_envs()
        if name not in known:
            raise ValueError(f"name: unknown Brax env {name!r}; available: {', '.join(known)}")
        _jax_device_check(mods, device)
        try:
            if name in _TASKS:
                brax_env = _TASKS[name](mods, **kwargs)
            else:
                brax_env = mods.brax_envs.get_environment(name, **kwargs)
        except TypeError as e:
            raise TypeError(f"brax:{name}: bad constructor option in {sorted(kwargs)}: {e}") from e
        if not hasattr(brax_env, "pipeline_init"):
            raise ValueError(f"name: Brax env {name!r} is not a PipelineEnv")
        core = _Core(name, brax_env, dtype, device, verbose)
        _CORES[key] = core
    core.verbose = verbose
    return core


# ---------------------------------------------------------------------- the Env
class BraxEnv(Env):
    """A Brax ``PipelineEnv`` as a diffctl ``Env`` (see the module docstring).

    Args:
        name: Brax env name (``available_brax_envs()``) or a named task (``humanoid-balance``).
        device: ``cpu`` or ``cuda[:k]`` (JAX must have that backend).
        dtype: ``torch.float32`` or ``torch.float64`` (needs JAX 64-bit mode).
        enable_x64: set JAX's process-wide ``jax_enable_x64`` flag (needed for float64).
        verbose: print a line on stderr when a function is compiled for a new batch size.
        max_steps: episode time limit for ``VecEnv`` (Brax's default episode length, 1000).
        **brax_kwargs: passed to the Brax env constructor (``backend=``, reward weights, ...).

    Shapes: ``x [..., nx]`` with ``nx = nq + nqd`` (``+ nu`` for envs that observe the last
    action), ``u [..., nu]``, ``observe -> [..., obs_dim]``, ``reward``/``terminated -> [...]``.
    """

    def __init__(
        self,
        name: str,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        enable_x64: bool = False,
        verbose: bool = True,
        max_steps: int = MAX_STEPS,
        **brax_kwargs: Any,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a Brax env name, got {name!r}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps: expected a positive int, got {max_steps!r}")
        super().__init__(None, device=device, dtype=dtype)
        mods = _modules()
        if dtype == torch.float64 and not mods.jax.config.jax_enable_x64:
            if not enable_x64:
                raise ValueError(
                    "dtype: float64 needs JAX's 64-bit mode; pass enable_x64=True (sets the "
                    "process-wide jax_enable_x64 flag) or set JAX_ENABLE_X64=1 before importing jax"
                )
            mods.jax.config.update("jax_enable_x64", True)
        self._name = name
        self._options = {
            "verbose": verbose,
            "max_steps": max_steps,
            "enable_x64": enable_x64,
            **brax_kwargs,
        }
        self._brax_kwargs = dict(brax_kwargs)
        self._core = _core_for(name, dtype, self.device, verbose, self._brax_kwargs)
        core = self._core
        nq, nqd = core.nq, core.nqd
        layout = {"q": (0, nq), "qd": (nq, nq + nqd)}
        if core.obs_reads_action:
            layout["u_prev"] = (nq + nqd, core.nx)
        self.spec = EnvSpec(
            name=f"brax:{name}",
            state_dim=core.nx,
            obs_dim=core.obs_dim,
            act_dim=core.nu,
            action_low=(-1.0,) * core.nu,
            action_high=(1.0,) * core.nu,
            dt=core.dt,
            max_steps=max_steps,
            extra={"backend": core.env.backend, "layout": layout},
        )

    @property
    def brax_env(self) -> Any:
        """The underlying Brax env (as Brax built it)."""
        return self._core.env

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Env:
        """The same Brax env on another device / dtype (compiled functions are per device)."""
        return BraxEnv(
            self._name,
            device=device if device is not None else self.device,
            dtype=dtype if dtype is not None else self.dtype,
            **self._options,
        )

    # ------------------------------------------------------------------ helpers
    def _flat(self, t: Tensor, n: int) -> Tensor:
        return t.to(self.dtype).reshape(-1, n)

    def _replay(self, x: Tensor, u: Tensor, x_next: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch = x.shape[:-1]
        nx, nu = self._core.nx, self._core.nu
        obs, r, done = _JaxFunction.apply(
            self._core.replay, self._flat(x, nx), self._flat(u, nu), self._flat(x_next, nx)
        )
        return obs.reshape(*batch, -1), r.reshape(batch), (done > 0.5).reshape(batch)

    def _self_replay(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Observation and done flag of the state ``x`` itself."""
        core = self._core
        if core.obs_reads_action:
            u = x[..., core.nx - core.nu :]
        else:
            u = torch.zeros((*x.shape[:-1], core.nu), device=x.device, dtype=self.dtype)
        obs, _, done = self._replay(x, u, x)
        return obs, done

    # ------------------------------------------------------------------ Env methods
    def jacobians(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """``A = df/dx [N, nx, nx]`` and ``B = df/du [N, nx, nu]`` at ``x [N, nx]``, ``u [N, nu]``.

        One vmapped forward-mode JAX call (planners such as ``MPC`` use it when present);
        differentiable w.r.t. ``x`` and ``u`` like ``dynamics``.
        """
        self._check_state(x)
        self._check_action(u, x.shape[:-1])
        if x.dim() != 2:
            raise ValueError(f"x: expected shape [N, {self.spec.state_dim}], got {tuple(x.shape)}")
        A, B = _JaxFunction.apply(self._core.jacobians, x.to(self.dtype), u.to(self.dtype))
        return A, B

    def _reset(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        # a JAX PRNG key per row (two 32-bit words) from the torch generator, then Brax's reset
        bits = torch.randint(
            -(2**31), 2**31, (n, 2), generator=generator, device=self.device, dtype=torch.int64
        ).to(torch.int32)
        x0, obs0, _ = self._core.reset.forward(bits)
        return x0, obs0

    def _initial_state(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self._reset(n, generator)[0]

    def _transition(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        core = self._core
        batch = x.shape[:-1]
        x1, obs, r, done = _JaxFunction.apply(
            core.transition, self._flat(x, core.nx), self._flat(u, core.nu)
        )
        x1, obs = x1.reshape(*batch, core.nx), obs.reshape(*batch, -1)
        return x1, r.reshape(batch), (done > 0.5).reshape(batch), obs

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        return self._transition(x, u)[0]

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        return self._replay(x, u, x_next)[1]

    def _observe(self, x: Tensor) -> Tensor:
        return self._self_replay(x)[0]

    def _terminated(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self._self_replay(x)[1]

    def __repr__(self) -> str:
        return (
            f"BraxEnv(name={self._name!r}, backend={self.spec.extra['backend']!r}, "
            f"device={self.device}, dtype={self.dtype})"
        )


def make_brax(name: str, **overrides: Any) -> BraxEnv:
    """Build ``brax:<name>`` (``make`` routes here); see :class:`BraxEnv` for the options."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected 'brax:<name>' with a Brax env name, got {name!r}")
    return BraxEnv(name, **overrides)
