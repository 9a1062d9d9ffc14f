"""Core environment protocol: ``EnvSpec`` and ``Env``.

An ``Env`` is pure and batched: it holds no episode state, only its physical parameters
(``env.params``, a dict of tensors that may require grad). Every method takes tensors with any
number of leading batch dimensions (``[..., nx]``), so an unbatched call is a batch of one and
``torch.func.vmap`` / ``jacrev`` work on it directly.

Subclasses implement the underscored methods (``_dynamics``, ``_reward``, ``_observe``,
``_terminated``, ``_initial_state``); the public methods validate their inputs first and name the
argument when something is wrong; ``dynamics``, ``reward`` and ``step`` also refuse NaN/inf and
out-of-range discrete actions, which synchronises with the host (skipped under ``torch.compile``
and ``vmap``, where values are not concrete). Hot loops (``VecEnv(validate=False)``, planners)
call the underscored methods to skip the checks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = ["EnvSpec", "Env", "as_device", "any_true"]


def any_true(flags: Tensor) -> bool:
    """Whether any entry of a bool tensor is true (a host synchronisation).

    False where the values are not concrete: while ``torch.compile`` traces, and inside
    ``torch.func.vmap`` (whose batched tensors refuse ``bool``), so a validated public method
    still compiles and vmaps; the check then happens wherever the values are concrete.
    """
    if torch.compiler.is_compiling():
        return False
    try:
        return bool(flags.any())
    except RuntimeError:  # a vmap-batched tensor: no data-dependent control flow
        return False


def as_device(device: str | torch.device | None) -> torch.device:
    """Normalise a device argument (``None`` means CPU).

    An accelerator without an index (``"cuda"``) resolves to the current one (``cuda:0``), the
    device its tensors report, so ``tensor.device == as_device("cuda")`` holds.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: cannot interpret {device!r} as a torch device") from e
    if dev.type in ("cpu", "meta") or dev.index is not None:
        return dev
    return torch.empty(0, device=dev).device


@dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment.

    Attributes:
        name: registry name.
        state_dim: ``nx``, size of the (full, Markov) state vector.
        obs_dim: size of the observation returned by ``observe``.
        act_dim: ``nu`` for continuous actions; 0 for discrete envs.
        action_low, action_high: per-component bounds (empty for discrete envs).
        dt: integration step in seconds.
        max_steps: episode time limit (truncation) used by ``VecEnv``.
        discrete: whether actions are int64 indices ``[B]``.
        num_actions: number of discrete choices (0 for continuous envs).
    """

    name: str
    state_dim: int
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    dt: float
    max_steps: int
    discrete: bool = False
    num_actions: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.action_low) != self.act_dim or len(self.action_high) != self.act_dim:
            raise ValueError(
                f"action_low/action_high: expected {self.act_dim} entries, got "
                f"{len(self.action_low)}/{len(self.action_high)}"
            )
        if any(lo > hi for lo, hi in zip(self.action_low, self.action_high)):
            raise ValueError("action_low: must be <= action_high componentwise")
        if self.discrete and self.num_actions < 2:
            raise ValueError("num_actions: a discrete env needs at least 2 actions")

    def action_bounds(
        self, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """``(low, high)`` as tensors of shape ``[act_dim]``."""
        return (
            torch.tensor(self.action_low, device=device, dtype=dtype),
            torch.tensor(self.action_high, device=device, dtype=dtype),
        )


class Env:
    """Base class of every diffctl environment (see module docstring).

    Subclasses set ``default_params`` (name -> float or nested list) and build ``self.spec`` in
    ``__init__`` (after calling ``super().__init__``).
    """

    default_params: ClassVar[dict[str, Any]] = {}
    #: Whether ``reward(x, u, x_next)`` reads ``x_next``. Planners on a learned model use it:
    #: a stage cost that ignores ``x_next`` need not differentiate through the model.
    reward_uses_next_state: ClassVar[bool] = True
    #: How many uniform numbers one start state needs. An env that sets it implements
    #: ``_initial_state_from_uniform`` (and gets ``_initial_state`` from it); ``VecEnv`` then
    #: draws auto-reset start states inside its fused step with a counter-based RNG, and its
    #: eager step draws them (and their observations) for a block of steps ahead.
    reset_noise_dim: ClassVar[int] = 0
    #: Whether the env's step runs in an engine on the host (MuJoCo's C engine), which
    #: synchronises with it on every step anyway. ``VecEnv``'s eager step then draws hashed
    #: auto-reset start states for the finished copies only, after the transition.
    host_engine: ClassVar[bool] = False
    spec: EnvSpec

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        self.device = as_device(device)
        self.dtype = dtype
        self.params: dict[str, Tensor] = {
            k: torch.as_tensor(v, device=self.device, dtype=dtype)
            for k, v in self.default_params.items()
        }
        if params:
            self._set_params(params)

    # ------------------------------------------------------------------ parameters
    def _set_params(self, params: Mapping[str, Any]) -> None:
        for name, value in params.items():
            if name not in self.params:
                raise ValueError(
                    f"{name}: unknown parameter of {type(self).__name__}; "
                    f"known: {sorted(self.params)}"
                )
            ref = self.params[name]
            try:
                # numbers and lists go straight to the env's dtype (no float32 detour)
                t = value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=self.dtype)
            except (TypeError, ValueError, RuntimeError) as e:
                raise TypeError(f"{name}: expected a real number or tensor, got {value!r}") from e
            if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
                raise TypeError(f"{name}: expected a real number or tensor, got dtype {t.dtype}")
            if t.shape != ref.shape:
                raise ValueError(f"{name}: expected shape {tuple(ref.shape)}, got {tuple(t.shape)}")
            if isinstance(value, Tensor) and value.device != self.device:
                raise ValueError(
                    f"{name}: tensor is on {value.device}, the env is on {self.device}"
                )
            if isinstance(value, Tensor) and value.dtype == self.dtype:
                t = value  # keep the caller's tensor (and its autograd graph)
            else:
                t = t.to(device=self.device, dtype=self.dtype)
            if not torch.isfinite(t.detach()).all():
                raise ValueError(f"{name}: parameter contains NaN or inf")
            self.params[name] = t

    def replace(self, **params: Any) -> Env:
        """A copy of this env with some parameters replaced (tensors kept, so grads flow)."""
        new = copy.copy(self)
        new.params = dict(self.params)
        new._set_params(params)
        return new

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Env:
        """A copy of this env with its parameters moved to ``device`` / ``dtype``."""
        new = copy.copy(self)
        new.device = as_device(device) if device is not None else self.device
        new.dtype = dtype if dtype is not None else self.dtype
        new.params = {k: v.to(device=new.device, dtype=new.dtype) for k, v in self.params.items()}
        return new

    # ------------------------------------------------------------------ validation
    def _check_state(self, x: Tensor, arg: str = "x") -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{arg}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{arg}: expected a floating dtype, got {x.dtype}")
        if x.dim() == 0 or x.shape[-1] != self.spec.state_dim:
            raise ValueError(
                f"{arg}: expected shape [..., {self.spec.state_dim}] for {self.spec.name}, "
                f"got {tuple(x.shape)}"
            )
        if x.device != self.device:
            raise ValueError(f"{arg}: tensor is on {x.device}, the env is on {self.device}")

    def _check_action(self, u: Tensor, batch_shape: torch.Size, arg: str = "u") -> None:
        if not isinstance(u, Tensor):
            raise TypeError(f"{arg}: expected a torch.Tensor, got {type(u).__name__}")
        if u.device != self.device:
            raise ValueError(f"{arg}: tensor is on {u.device}, the env is on {self.device}")
        if self.spec.discrete:
            if u.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"{arg}: expected int64 action indices, got {u.dtype}")
            if u.shape != batch_shape:
                raise ValueError(
                    f"{arg}: expected shape {tuple(batch_shape)} of action indices, "
                    f"got {tuple(u.shape)}"
                )
        else:
            if not u.is_floating_point():
                raise TypeError(f"{arg}: expected a floating dtype, got {u.dtype}")
            want = (*batch_shape, self.spec.act_dim)
            if tuple(u.shape) != want:
                raise ValueError(f"{arg}: expected shape {want}, got {tuple(u.shape)}")

    def _check_values(self, x: Tensor, u: Tensor | None = None, arg: str = "x") -> None:
        """Finiteness of ``x`` (and ``u``) and the range of discrete ``u``: a host
        synchronisation, so only the public methods call it (hot loops call ``_dynamics``)."""
        if any_true(~torch.isfinite(x)):
            raise ValueError(f"{arg}: state contains NaN or inf")
        if u is None:
            return
        if self.spec.discrete:
            n = self.spec.num_actions
            out = (u < 0) | (u >= n)
            if any_true(out):
                raise ValueError(f"u: expected action indices in [0, {n}), got {int(u[out][0])}")
        elif any_true(~torch.isfinite(u)):
            raise ValueError("u: action contains NaN or inf")

    # ------------------------------------------------------------------ public API
    def initial_state(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Sample ``n`` start states, ``[n, nx]``, on the env's device."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive int, got {n!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got {type(generator)}")
        if generator is not None and generator.device.type != self.device.type:
            raise ValueError(f"generator: is on {generator.device}, the env is on {self.device}")
        return self._initial_state(n, generator)

    def dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        """Next state ``x' = f(x, u)``: ``[..., nx], [..., nu] -> [..., nx]``."""
        self._check_state(x)
        self._check_action(u, x.shape[:-1])
        self._check_values(x, u)
        return self._dynamics(x, u)

    def reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        """Reward ``r(x, u, x')``: ``[...]``."""
        self._check_state(x)
        self._check_action(u, x.shape[:-1])
        self._check_state(x_next, "x_next")
        if x_next.shape != x.shape:
            raise ValueError(f"x_next: expected shape {tuple(x.shape)}, got {tuple(x_next.shape)}")
        self._check_values(x, u)
        self._check_values(x_next, arg="x_next")
        return self._reward(x, u, x_next)

    def observe(self, x: Tensor) -> Tensor:
        """Observation ``[..., obs_dim]`` of a state."""
        self._check_state(x)
        return self._observe(x)

    def terminated(self, x: Tensor) -> Tensor:
        """Boolean ``[...]``: whether the state ends the episode (not a time limit)."""
        self._check_state(x)
        return self._terminated(x)

    def step(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Functional step: ``(x_next, obs_next, reward, terminated)`` (inputs validated as
        ``dynamics`` validates them: shapes, dtypes, device, NaN, discrete action range)."""
        self._check_state(x)
        self._check_action(u, x.shape[:-1])
        self._check_values(x, u)
        x1, r, term, obs = self._transition(x, u)
        return x1, obs, r, term

    def __call__(self, x: Tensor, u: Tensor) -> Tensor:
        return self.dynamics(x, u)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.spec.name!r}, device={self.device})"

    # ------------------------------------------------------------------ to implement
    def _initial_state(self, n: int, generator: torch.Generator | None) -> Tensor:
        if self.reset_noise_dim == 0:
            raise NotImplementedError
        u = torch.rand(
            n, self.reset_noise_dim, generator=generator, device=self.device, dtype=self.dtype
        )
        return self._initial_state_from_uniform(u)

    def _initial_state_from_uniform(self, u: Tensor) -> Tensor:
        """Start states ``[n, nx]`` from uniform numbers ``u [n, reset_noise_dim]`` in [0, 1)."""
        raise NotImplementedError

    def _dynamics(self, x: Tensor, u: Tensor) -> Tensor:
        raise NotImplementedError

    def _reward(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        raise NotImplementedError

    def _observe(self, x: Tensor) -> Tensor:
        return x

    def _terminated(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[:-1], dtype=torch.bool, device=x.device)

    def _transition(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(x_next [..., nx], reward [...], terminated [...], observation of x_next
        [..., obs_dim])`` of one step, as ``step`` and ``VecEnv`` take them. An env whose engine
        computes the four in one call (Brax) overrides it; the results are the same."""
        x1 = self._dynamics(x, u)
        return x1, self._reward(x, u, x1), self._terminated(x1), self._observe(x1)

    def _reset(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``(start states [n, nx], their observations [n, obs_dim])``, as ``VecEnv`` takes
        them; an env whose engine returns both from one call (Brax) overrides it."""
        x0 = self._initial_state(n, generator)
        return x0, self._observe(x0)

    # ------------------------------------------------------------------ helpers
    def _uniform(
        self,
        n: int,
        low: Tensor | float,
        high: Tensor | float,
        dim: int,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Uniform samples ``[n, dim]`` in ``[low, high)`` on the env's device and dtype."""
        r = torch.rand(n, dim, generator=generator, device=self.device, dtype=self.dtype)
        return low + (high - low) * r


def angle_normalize(x: Tensor) -> Tensor:
    """Wrap an angle to ``[-pi, pi)`` (gymnasium's ``angle_normalize``)."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi
