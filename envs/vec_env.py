"""``VecEnv``: a stateful, auto-resetting runner over a pure ``Env`` on any device.

Everything (states, step counters, episode statistics) stays on the device; nothing in
``step`` synchronises with the host unless ``validate=True`` (which checks action finiteness).
Episode statistics are read out explicitly with ``episode_statistics()``.

``fused=True`` runs the per-step maths (dynamics, reward, termination, time limit, auto-reset
and statistics) as one ``torch.compile``d function; the eager path is the reference it is
tested against.

Start states of envs that declare ``reset_noise_dim`` are drawn with ``hash_uniform``, a
counter-based generator (seed, step counter, position) evaluated inside the step itself: the
fused step then needs no separate RNG call, and a seed gives the same episodes on every device.
Other envs draw start states from the runner's ``torch.Generator``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Env, EnvSpec, as_device

__all__ = ["VecEnv", "hash_uniform"]


def hash_uniform(seed: int, counter: Tensor, shape: tuple[int, int], dtype: torch.dtype) -> Tensor:
    """Uniform numbers in [0, 1) of ``shape`` from (seed, counter, position), without state.

    Two xor-shift/multiply rounds of the ``0x45d9f3b`` integer mixer on the element's index
    ``position + counter * numel + key(seed)`` in wrapping int32 arithmetic (vectorised on any
    CPU or GPU); the top 24 bits become the float. ``counter`` is an int32 scalar tensor, so
    the function traces into ``torch.compile``.
    """
    n = shape[0] * shape[1]
    pos = torch.arange(n, device=counter.device, dtype=torch.int32).view(shape)
    h = pos + counter * n + ((seed * 0x9E3779B1) & 0x7FFFFFFF)
    for _ in range(2):
        h = (h ^ ((h >> 16) & 0xFFFF)) * 0x45D9F3B  # logical shift of an int32 by masking
    h = h ^ ((h >> 16) & 0xFFFF)
    return ((h >> 8) & 0xFFFFFF).to(dtype) * (1.0 / (1 << 24))


def _step_core(
    env: Env,
    x: Tensor,
    t: Tensor,
    u: Tensor,
    x0: Tensor | None,
    counter: Tensor,
    ep_ret: Tensor,
    ep_len: Tensor,
    stats: Tensor,
    last: Tensor,
    max_steps: int,
    seed: int,
) -> tuple[Tensor, ...]:
    """One batched step with auto-reset. Pure: returns every updated tensor.

    ``stats`` is ``[3]``: (sum of returns, sum of squared returns, count) of finished episodes;
    ``last`` is ``[2, N]``: return and length of each env's most recent finished episode.
    """
    if x0 is None:  # counter-based start states (see hash_uniform)
        shape = (x.shape[0], env.reset_noise_dim)
        x0 = env._initial_state_from_uniform(hash_uniform(seed, counter, shape, x.dtype))
    x1 = env._dynamics(x, u)
    r = env._reward(x, u, x1)
    term = env._terminated(x1)
    t1 = t + 1
    trunc = (t1 >= max_steps) & ~term
    done = term | trunc
    ret = ep_ret + r
    length = ep_len + 1
    donef = done.to(ret.dtype)
    stats = stats + torch.stack([(ret * donef).sum(), (ret * ret * donef).sum(), donef.sum()])
    last = torch.where(done, torch.stack([ret, length.to(ret.dtype)]), last)
    final_obs = env._observe(x1)
    x_new = torch.where(done[:, None], x0, x1)
    obs = torch.where(done[:, None], env._observe(x0), final_obs)
    zero = torch.zeros_like(t1)
    t_new = torch.where(done, zero, t1)
    ret_new = torch.where(done, torch.zeros_like(ret), ret)
    len_new = torch.where(done, zero, length)
    return (
        obs,
        r,
        term,
        trunc,
        final_obs,
        x1,
        x_new,
        t_new,
        ret_new,
        len_new,
        stats,
        last,
        counter + 1,
    )


class VecEnv:
    """Batched stateful runner with auto-reset and on-device episode statistics.

    Args:
        env: a pure ``Env``.
        num_envs: number of parallel copies ``N``.
        device: where to run (defaults to the env's device); the env is moved there.
        seed: seed of the runner's ``torch.Generator`` (start states).
        validate: check every action's shape, dtype, device and finiteness (host sync).
        fused: compile the step with ``torch.compile`` (the fast path for large ``N``).
        max_steps: time limit; defaults to ``env.spec.max_steps``.

    ``step(u)`` returns ``obs [N, obs_dim], reward [N], terminated [N], truncated [N], info``
    where ``info`` holds ``final_obs`` / ``final_state`` (the observation and state reached by
    the step, before any reset) and ``done`` (``terminated | truncated``).
    """

    def __init__(
        self,
        env: Env,
        num_envs: int,
        device: str | torch.device | None = None,
        seed: int = 0,
        *,
        validate: bool = True,
        fused: bool = False,
        max_steps: int | None = None,
    ) -> None:
        if not isinstance(env, Env):
            raise TypeError(f"env: expected a diffctl Env, got {type(env).__name__}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs: expected a positive int, got {num_envs!r}")
        if not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
        self.device = as_device(device) if device is not None else env.device
        self.env = env if env.device == self.device else env.to(self.device)
        self.spec: EnvSpec = env.spec
        self.num_envs = num_envs
        self.validate = validate
        self.max_steps = int(max_steps if max_steps is not None else env.spec.max_steps)
        if self.max_steps < 1:
            raise ValueError(f"max_steps: expected a positive int, got {max_steps!r}")
        self.seed = seed
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._hashed_resets = self.env.reset_noise_dim > 0
        self._counter = torch.zeros((), dtype=torch.int32, device=self.device)
        self._core = (
            torch.compile(_step_core, dynamic=False, fullgraph=True) if fused else _step_core
        )
        self._state: Tensor | None = None
        dtype = self.env.dtype
        self._t = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._ep_ret = torch.zeros(num_envs, dtype=dtype, device=self.device)
        self._ep_len = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._stats = torch.zeros(3, dtype=dtype, device=self.device)
        self._last = torch.full((2, num_envs), float("nan"), dtype=dtype, device=self.device)

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> Tensor:
        """Current states ``[N, nx]`` (after any auto-reset)."""
        if self._state is None:
            raise RuntimeError("VecEnv: call reset() before reading the state")
        return self._state

    @property
    def elapsed_steps(self) -> Tensor:
        """Steps taken in the current episode of each env, ``[N]`` int64."""
        return self._t

    # ------------------------------------------------------------------ API
    def reset(self, seed: int | None = None) -> Tensor:
        """Start new episodes in every env; returns ``obs [N, obs_dim]``."""
        if seed is not None:
            if not isinstance(seed, int):
                raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
            self.seed = seed
            self.generator.manual_seed(seed)
            self._counter = torch.zeros_like(self._counter)
        self._state = self.env._initial_state(self.num_envs, self.generator)
        self._t.zero_()
        self._ep_ret.zero_()
        self._ep_len.zero_()
        return self.env._observe(self._state)

    def set_state(self, x: Tensor) -> Tensor:
        """Put every env in state ``x [N, nx]`` at step 0; returns the observation."""
        self.env._check_state(x)
        if x.shape != (self.num_envs, self.spec.state_dim):
            raise ValueError(
                f"x: expected shape {(self.num_envs, self.spec.state_dim)}, got {tuple(x.shape)}"
            )
        self._state = x.to(self.env.dtype).clone()
        self._t.zero_()
        self._ep_ret.zero_()
        self._ep_len.zero_()
        return self.env._observe(self._state)

    def step(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        """Advance every env one step (auto-resetting finished ones)."""
        if self._state is None:
            raise RuntimeError("VecEnv: call reset() before step()")
        if self.validate:
            self._validate_action(u)
        x0 = None if self._hashed_resets else self.env._initial_state(self.num_envs, self.generator)
        out = self._core(
            self.env, self._state, self._t, u, x0, self._counter, self._ep_ret, self._ep_len,
            self._stats, self._last, self.max_steps, self.seed,
        )  # fmt: skip
        (obs, r, term, trunc, final_obs, x1, self._state, self._t, self._ep_ret, self._ep_len,
         self._stats, self._last, self._counter) = out  # fmt: skip
        info = {"final_obs": final_obs, "final_state": x1, "done": term | trunc}
        return obs, r, term, trunc, info

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this runner exactly (states, counters, statistics,
        RNG), as tensors on the CPU."""
        if self._state is None:
            raise RuntimeError("VecEnv: call reset() before state_dict()")
        return {
            "seed": self.seed,
            "state": self._state.detach().cpu().clone(),
            "t": self._t.cpu().clone(),
            "ep_ret": self._ep_ret.cpu().clone(),
            "ep_len": self._ep_len.cpu().clone(),
            "stats": self._stats.cpu().clone(),
            "last": self._last.cpu().clone(),
            "counter": self._counter.cpu().clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a ``state_dict`` (shapes checked against this runner)."""
        missing = {"seed", "state", "t", "ep_ret", "ep_len", "stats", "last", "counter",
                   "generator"} - set(state)  # fmt: skip
        if missing:
            raise ValueError(f"state: missing keys {sorted(missing)}")
        self.set_state(state["state"].to(self.device, self.env.dtype))
        for name in ("t", "ep_ret", "ep_len", "stats", "last", "counter"):
            ref = getattr(self, f"_{name}")
            if state[name].shape != ref.shape:
                raise ValueError(
                    f"state: {name} has shape {tuple(state[name].shape)}, "
                    f"expected {tuple(ref.shape)}"
                )
            setattr(self, f"_{name}", state[name].to(device=self.device, dtype=ref.dtype))
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator"])

    def episode_statistics(self, clear: bool = True) -> dict[str, Any]:
        """Statistics of the episodes finished since the last clear (one host sync).

        Returns ``count``, ``mean_return``, ``std_return`` (NaN when no episode finished) and
        ``last_returns`` / ``last_lengths`` (``[N]`` tensors, NaN for envs yet to finish one).
        """
        s, s2, n = self._stats.tolist()
        mean = s / n if n > 0 else float("nan")
        var = max(s2 / n - mean * mean, 0.0) if n > 0 else float("nan")
        out = {
            "count": int(n),
            "mean_return": mean,
            "std_return": var**0.5,
            "last_returns": self._last[0].clone(),
            "last_lengths": self._last[1].clone(),
        }
        if clear:
            self._stats = torch.zeros_like(self._stats)
        return out

    def close(self) -> None:
        """Release the state (kept for API symmetry with gymnasium)."""
        self._state = None

    # ------------------------------------------------------------------ helpers
    def _validate_action(self, u: Tensor) -> None:
        self.env._check_action(u, torch.Size([self.num_envs]), "u")
        if not self.spec.discrete:
            if not bool(torch.isfinite(u).all()):
                raise ValueError("u: action contains NaN or inf")
        elif bool(((u < 0) | (u >= self.spec.num_actions)).any()):
            raise ValueError(f"u: action index outside [0, {self.spec.num_actions})")

    def __repr__(self) -> str:
        return (
            f"VecEnv({self.spec.name!r}, num_envs={self.num_envs}, device={self.device}, "
            f"fused={self._core is not _step_core})"
        )
