"""``VecEnv``: a stateful, auto-resetting runner over a pure ``Env`` on any device.

Everything (states, step counters, episode statistics) stays on the device; nothing in
``step`` synchronises with the host unless ``validate=True`` (which checks action finiteness).
Episode statistics are read out explicitly with ``episode_statistics()``.

``fused=True`` compiles the plain step (``_step_core``: dynamics, reward, termination, time
limit, auto-reset, statistics and hashed start states) with ``torch.compile(fullgraph=True,
dynamic=False)``; the eager path is the reference it is tested against, and both return the
same shapes, strides and values (to rounding). Gradients flow through the compiled step too.
TorchInductor keeps its compiled kernels on disk (its FX graph and AOTAutograd caches, on by
default, in ``$TORCHINDUCTOR_CACHE_DIR``, else ``/tmp/torchinductor_<user>``), so a later
process skips code generation and the C++ compiler; TorchDynamo still traces the step once per
runner, and again when the action's dtype or shape or the grad or inference mode changes (a
parameter changed in place or replaced needs no new trace).

When ``VecEnv`` compiles: only when asked (``fused=True``); the default is eager. Measured on
CPU (cart-pole, one torch thread, a 2-core machine shared with other jobs, so the figures are
under load): a step costs 240/270/770/8,100 us eager and 120/75/370/4,200 us compiled at
1/64/4,096/65,536 envs, but the first step of every runner compiles for 6-13 s (a cold disk
cache; 4-6 s warm). The saving repays that after about 1,000 steps at 65,536 envs and 10,000
to 30,000 steps at 4,096 envs and below: longer than most tests, evaluations and short
training runs, which would pay the compile and gain nothing. Envs backed by another engine
(Brax, MuJoCo) cannot be compiled at all. A long run asks for ``fused=True``. (On CPU the
compiled kernel stays scalar: the envs' ``torch.stack(..., dim=-1)`` makes every store strided,
which TorchInductor's C++ code does not vectorise.)

Start states of envs that declare ``reset_noise_dim`` are drawn with ``hash_uniform``, a
counter-based generator (seed, step counter, position) evaluated inside the step itself: the
fused step then needs no separate RNG call, and a seed gives the same episodes on every device.
The eager step draws the same numbers for a block of steps at once (with the start states'
observations), so a step at a few envs pays no per-step RNG or start-state ops; for an env
whose engine runs on the host (``Env.host_engine``: MuJoCo), where a start state costs a call
into the engine, it draws them after the transition for the finished copies only.
Other envs draw start states from the runner's ``torch.Generator``.

An env that never terminates (it keeps ``Env._terminated``) restarts all its copies together at
the time limit, so every copy has taken the same number of steps. The eager step then keeps that
count as a Python int and runs only the transition (``Env._transition``) and the return sum on
the steps between resets; the bookkeeping of ``_step_core`` (flags, auto-reset selections,
statistics) and the drawing of hashed start states run once per episode, on the step that hits
the limit. The results are the same numbers as ``_step_core``'s (tested).
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .base import Env, EnvSpec, as_device

__all__ = ["VecEnv", "hash_uniform"]

_GRAIN_SIZE = 32768  # at::internal::GRAIN_SIZE: fewer elements than this run on one thread
_START_BLOCK = 4096  # the eager step draws the start states of this many env-steps at once

# Rows of VecEnv's per-env accumulator of finished episodes.
_SUM, _SUM_SQ, _COUNT, _LAST_RET, _LAST_LEN = range(5)


def _seed_key(seed: int) -> int:
    return (seed * 0x9E3779B1) & 0x7FFFFFFF


def _hash_uniform(
    key: int | Tensor, counter: Tensor, shape: tuple[int, int], dtype: torch.dtype, steps: int = 1
) -> Tensor:
    # ``steps`` > 1: the numbers of counters counter, ..., counter + steps - 1, stacked in rows
    n = shape[0] * shape[1]
    pos = torch.arange(steps * n, device=counter.device, dtype=torch.int32)
    h = pos.view(steps * shape[0], shape[1]) + counter * n + key
    for _ in range(2):
        h = (h ^ ((h >> 16) & 0xFFFF)) * 0x45D9F3B  # logical shift of an int32 by masking
    h = h ^ ((h >> 16) & 0xFFFF)
    return ((h >> 8) & 0xFFFFFF).to(dtype) * (1.0 / (1 << 24))


def hash_uniform(seed: int, counter: Tensor, shape: tuple[int, int], dtype: torch.dtype) -> Tensor:
    """Uniform numbers in [0, 1) of ``shape`` from (seed, counter, position), without state.

    Two xor-shift/multiply rounds of the ``0x45d9f3b`` integer mixer on the element's index
    ``position + counter * numel + key(seed)`` in wrapping int32 arithmetic (vectorised on any
    CPU or GPU); the top 24 bits become the float. ``counter`` is an int32 scalar tensor, so
    the function traces into a compiled step.
    """
    return _hash_uniform(_seed_key(seed), counter, shape, dtype)


def _step_core(
    env: Env,
    x: Tensor,
    t: Tensor,
    u: Tensor,
    x0: Tensor,
    obs0: Tensor | None,
    ep_ret: Tensor,
    acc: Tensor,
    max_steps: int,
) -> tuple[Tensor, ...]:
    """One batched step with auto-reset to ``x0`` (observed as ``obs0``, computed from ``x0``
    when ``None``). Pure: returns every updated tensor.

    ``acc`` is ``[5, N]``, per env: sum and sum of squares of the returns of its finished
    episodes, their count, and the return and length of the most recent one. ``t`` counts the
    steps of the current episodes (so it is also their length).
    """
    x1, r, term, final_obs = env._transition(x, u)
    obs0 = env._observe(x0) if obs0 is None else obs0
    return _finish(x1, r, term, final_obs, t, x0, obs0, ep_ret, acc, max_steps)


def _finish(
    x1: Tensor,
    r: Tensor,
    term: Tensor,
    final_obs: Tensor,
    t: Tensor,
    x0: Tensor,
    obs0: Tensor,
    ep_ret: Tensor,
    acc: Tensor,
    max_steps: int,
) -> tuple[Tensor, ...]:
    """``_step_core`` after the transition (``x1, r, term, final_obs``): the time limit, the
    auto-reset to ``x0`` (observed as ``obs0``; only the finished rows are read) and the
    statistics."""
    t1 = t + 1
    trunc = (t1 >= max_steps) & ~term
    done = term | trunc
    ret = ep_ret + r
    finished = (acc[_SUM] + ret, acc[_SUM_SQ] + ret * ret, acc[_COUNT] + 1, ret, t1.to(ret.dtype))
    # observations are per row: observe(where(done, x0, x1)) = where(done, obs0, obs1)
    acc = torch.where(done, torch.stack(finished), acc)
    x_new = torch.where(done[:, None], x0, x1)
    obs = torch.where(done[:, None], obs0, final_obs)
    t_new = t1.masked_fill(done, 0)
    ret_new = ret.masked_fill(done, 0.0)
    return obs, r, term, trunc, done, final_obs, x1, x_new, t_new, ret_new, acc


def _compile_step(
    env: Env, max_steps: int, hashed: bool, x_rows: int
) -> Callable[..., tuple[Tensor, ...]]:
    """``torch.compile`` of the plain step: ``_step_core`` (and, for ``hashed`` start states,
    ``hash_uniform`` and ``env._initial_state_from_uniform``) as one graph.

    Arguments ``x [N, nx], t [N], u, x0 [N, nx] | None, counter [], key [], ep_ret [N],
    acc [5, N]``; returns ``_step_core``'s results and the next counter. The env's parameters
    are read inside, so changing or replacing one takes effect."""

    def step(
        x: Tensor, t: Tensor, u: Tensor, x0: Tensor | None, counter: Tensor, key: Tensor,
        ep_ret: Tensor, acc: Tensor,
    ) -> tuple[Tensor, ...]:  # fmt: skip
        if hashed:  # counter-based start states (see hash_uniform), inside the kernel
            shape = (x.shape[0], env.reset_noise_dim)
            x0 = env._initial_state_from_uniform(_hash_uniform(key, counter, shape, x.dtype))
        return (*_step_core(env, x, t, u, x0, None, ep_ret, acc, max_steps), counter + 1)

    # torch.compile allows 8 compiles per code object, and every runner's step is compiled
    # anew (its env, N, grad mode): a copy of the code per runner gives each its own 8
    own = types.FunctionType(step.__code__.replace(), globals(), "step", None, step.__closure__)
    # Like eager ops (at::internal::GRAIN_SIZE), the CPU kernel runs on one thread below 32,768
    # envs: there an OpenMP fork/join costs more than it saves, and waiting for a descheduled
    # thread on a busy machine costs milliseconds (the bench at 4,096 envs, 2 threads, loaded
    # machine: 0.14-0.8 M steps/s with both threads, 11 M on one)
    options = {"cpp.threads": 1 if x_rows < _GRAIN_SIZE else -1}
    return torch.compile(own, fullgraph=True, dynamic=False, options=options)


class VecEnv:
    """Batched stateful runner with auto-reset and on-device episode statistics.

    Args:
        env: a pure ``Env``.
        num_envs: number of parallel copies ``N``.
        device: where to run (defaults to the env's device); the env is moved there.
        seed: seed of the runner's ``torch.Generator`` (start states).
        validate: check every action's shape, dtype, device and finiteness (host sync).
        fused: run the step compiled by ``torch.compile`` (2-4x faster per step on CPU; the
            first step compiles, 4-13 s: worth it for long runs, see the module docstring).
        max_steps: time limit; defaults to ``env.spec.max_steps``.

    ``step(u)`` returns ``obs [N, obs_dim], reward [N], terminated [N], truncated [N], info``
    where ``info`` holds ``final_obs`` / ``final_state`` (the observation and state reached by
    the step, before any reset) and ``done`` (``terminated | truncated``). Returned tensors are
    never written to afterwards.
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
        self.fused = bool(fused)
        self.max_steps = int(max_steps if max_steps is not None else env.spec.max_steps)
        if self.max_steps < 1:
            raise ValueError(f"max_steps: expected a positive int, got {max_steps!r}")
        self.generator = torch.Generator(device=self.device)
        self._hashed_resets = self.env.reset_noise_dim > 0
        self._counter = torch.zeros((), dtype=torch.int32, device=self.device)
        self._set_seed(seed)
        self._compiled: Callable[..., tuple[Tensor, ...]] | None = None
        self._state: Tensor | None = None
        dtype = self.env.dtype
        self._t = torch.zeros(num_envs, dtype=torch.int32, device=self.device)
        self._ep_ret = torch.zeros(num_envs, dtype=dtype, device=self.device)
        self._acc = torch.zeros(5, num_envs, dtype=dtype, device=self.device)
        self._acc[_LAST_RET:] = float("nan")
        # the eager step of an env that never terminates counts the (equal) steps of its
        # episodes here, on the host; None: ``_t`` holds them (see the module docstring)
        self._lockstep = not self.fused and type(self.env)._terminated is Env._terminated
        self._host_t: int | None = None
        self._falses: list[tuple[Tensor, Tensor, Tensor]] = []  # see _lockstep_step

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
        if self._host_t is not None:
            return torch.full((self.num_envs,), self._host_t, dtype=torch.int64, device=self.device)
        return self._t.to(torch.int64)

    # ------------------------------------------------------------------ API
    def reset(self, seed: int | None = None) -> Tensor:
        """Start new episodes in every env; returns ``obs [N, obs_dim]``."""
        if seed is not None:
            if not isinstance(seed, int):
                raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
            self._set_seed(seed)
            self._counter = torch.zeros_like(self._counter)
        x0, obs0 = self.env._reset(self.num_envs, self.generator)
        self._put_state(x0)
        return obs0

    def set_state(self, x: Tensor) -> Tensor:
        """Put every env in state ``x [N, nx]`` at step 0; returns the observation."""
        self.env._check_state(x)
        if x.shape != (self.num_envs, self.spec.state_dim):
            raise ValueError(
                f"x: expected shape {(self.num_envs, self.spec.state_dim)}, got {tuple(x.shape)}"
            )
        self._put_state(x.to(self.env.dtype).clone())
        return self.env._observe(self._state)

    def step(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        """Advance every env one step (auto-resetting finished ones)."""
        if self._state is None:
            raise RuntimeError("VecEnv: call reset() before step()")
        if self.validate:
            self._validate_action(u)
        n, generator = self.num_envs, self.generator
        if self.fused:
            x0 = None if self._hashed_resets else self.env._initial_state(n, generator)
            return self._fused_step(u, x0)
        if self._hashed_resets and self._host_t is not None:  # starts drawn at time limits only
            return self._lockstep_step(u, None, None)
        if self._hashed_resets and self.env.host_engine:  # starts of the finished copies only
            return self._host_step(u)
        if self._hashed_resets:
            x0, obs0, self._counter = self._next_start()
        else:
            x0, obs0 = self.env._reset(n, generator)
            self._counter = self._counter + 1
        if self._host_t is not None:
            return self._lockstep_step(u, x0, obs0)
        out = _step_core(
            self.env, self._state, self._t, u, x0, obs0, self._ep_ret, self._acc, self.max_steps
        )
        (obs, r, term, trunc, done, final_obs, x1, self._state, self._t, self._ep_ret,
         self._acc) = out  # fmt: skip
        return obs, r, term, trunc, {"final_obs": final_obs, "final_state": x1, "done": done}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this runner exactly (states, counters, statistics,
        RNG), as tensors on the CPU."""
        if self._state is None:
            raise RuntimeError("VecEnv: call reset() before state_dict()")
        t = self.elapsed_steps.cpu()
        return {
            "seed": self.seed,
            "state": self._state.detach().cpu().clone(memory_format=torch.contiguous_format),
            "t": t,
            "ep_ret": self._ep_ret.cpu().clone(),
            "ep_len": t.clone(),
            "stats": self._acc[:_LAST_RET].sum(1).cpu(),
            "last": self._acc[_LAST_RET:].cpu().clone(),
            "counter": self._synced_counter().cpu().clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a ``state_dict`` (shapes checked against this runner)."""
        missing = {"seed", "state", "t", "ep_ret", "ep_len", "stats", "last", "counter",
                   "generator"} - set(state)  # fmt: skip
        if missing:
            raise ValueError(f"state: missing keys {sorted(missing)}")
        n = self.num_envs
        shapes = {"t": (n,), "ep_ret": (n,), "ep_len": (n,), "stats": (3,), "last": (2, n),
                  "counter": ()}  # fmt: skip
        for name, shape in shapes.items():
            if tuple(state[name].shape) != shape:
                raise ValueError(
                    f"state: {name} has shape {tuple(state[name].shape)}, expected {shape}"
                )
        self.set_state(state["state"].to(self.device, self.env.dtype))
        dev, dtype = self.device, self.env.dtype
        self._t = state["t"].to(device=dev, dtype=torch.int32)
        t = state["t"].tolist()
        self._host_t = t[0] if self._lockstep and min(t) == max(t) else None
        self._ep_ret = state["ep_ret"].to(device=dev, dtype=dtype)
        self._acc = torch.zeros_like(self._acc)
        self._acc[:_LAST_RET, 0] = state["stats"].to(device=dev, dtype=dtype)
        self._acc[_LAST_RET:] = state["last"].to(device=dev, dtype=dtype)
        self._counter = state["counter"].to(device=dev, dtype=torch.int32)
        self._set_seed(int(state["seed"]))
        self.generator.set_state(state["generator"])

    def episode_statistics(self, clear: bool = True) -> dict[str, Any]:
        """Statistics of the episodes finished since the last clear (one host sync).

        Returns ``count``, ``mean_return``, ``std_return`` (NaN when no episode finished) and
        ``last_returns`` / ``last_lengths`` (``[N]`` tensors, NaN for envs yet to finish one).
        """
        s, s2, n = self._acc[:_LAST_RET].sum(1, dtype=torch.float64).tolist()
        mean = s / n if n > 0 else float("nan")
        var = max(s2 / n - mean * mean, 0.0) if n > 0 else float("nan")
        out = {
            "count": int(n),
            "mean_return": mean,
            "std_return": var**0.5,
            "last_returns": self._acc[_LAST_RET].clone(),
            "last_lengths": self._acc[_LAST_LEN].clone(),
        }
        if clear:
            self._acc[:_LAST_RET] = 0.0
        return out

    def close(self) -> None:
        """Release the state (kept for API symmetry with gymnasium)."""
        self._state = None

    # ------------------------------------------------------------------ helpers
    def _set_seed(self, seed: int) -> None:
        self.seed = seed
        self.generator.manual_seed(seed)
        self._key = torch.tensor(_seed_key(seed), dtype=torch.int32, device=self.device)
        self._starts: list[tuple[Tensor, Tensor, Tensor]] = []  # drawn from the old key
        self._skipped = 0  # steps taken since ``_counter`` was last advanced (lockstep step)

    def _synced_counter(self) -> Tensor:
        """``_counter`` advanced by the steps the lockstep step took without drawing their
        start states (whose ``_starts`` are then out of date)."""
        if self._skipped:
            self._counter = self._counter + self._skipped
            self._skipped, self._starts = 0, []
        return self._counter

    def _next_start(self, block: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """The eager step's auto-reset start state, its observation and the next counter.

        The ``hash_uniform`` numbers of the next ``_START_BLOCK // N`` steps are drawn at once
        (the same numbers as step by step), so a step costs no RNG or start-state ops;
        ``block=False`` (the lockstep step, at a time limit) draws this step's only.
        """
        self._synced_counter()
        if not self._starts:
            n = self.num_envs
            steps = max(1, _START_BLOCK // n) if block else 1
            shape = (n, self.env.reset_noise_dim)
            u = _hash_uniform(self._key, self._counter, shape, self.env.dtype, steps)
            x0 = self.env._initial_state_from_uniform(u)  # [steps * n, nx]
            ahead = torch.arange(1, steps + 1, dtype=torch.int32, device=self.device)
            block = zip(
                x0.split(n), self.env._observe(x0).split(n), (self._counter + ahead).unbind()
            )
            self._starts = list(block)[::-1]
        return self._starts.pop()

    def _put_state(self, x: Tensor) -> None:
        self._state = x
        self._t = torch.zeros_like(self._t)
        self._host_t = 0 if self._lockstep else None
        self._ep_ret = torch.zeros_like(self._ep_ret)

    def _host_step(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        """The eager step of an env whose engine runs on the host (``Env.host_engine``) and so
        synchronises on every step anyway: the start states are drawn after the transition,
        for the finished copies only, from the same ``hash_uniform`` numbers as the other
        paths (the same episodes), where ``_next_start`` draws them for every copy."""
        env, n = self.env, self.num_envs
        counter = self._synced_counter()
        x1, r, term, final_obs = env._transition(self._state, u)
        rows = (term | (self._t + 1 >= self.max_steps)).nonzero()[:, 0]
        x0, obs0 = x1, final_obs  # read by _finish on the finished rows only
        if len(rows):
            uniform = _hash_uniform(self._key, counter, (n, env.reset_noise_dim), env.dtype)
            start = env._initial_state_from_uniform(uniform[rows])
            x0 = x1.index_copy(0, rows, start)
            obs0 = final_obs.index_copy(0, rows, env._observe(start))
        self._counter = counter + 1
        out = _finish(x1, r, term, final_obs, self._t, x0, obs0, self._ep_ret, self._acc,
                      self.max_steps)  # fmt: skip
        (obs, r, term, trunc, done, final_obs, x1, self._state, self._t, self._ep_ret,
         self._acc) = out  # fmt: skip
        return obs, r, term, trunc, {"final_obs": final_obs, "final_state": x1, "done": done}

    def _lockstep_step(
        self, u: Tensor, x0: Tensor | None, obs0: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        """The eager step of an env that never terminates, all of whose copies have taken
        ``_host_t`` steps: ``_step_core``'s results, its bookkeeping only at the time limit.
        ``x0 = None``: the env's start states are hashed, and drawn at the time limit only
        (the steps before only count towards ``_counter``); the other steps return all-false
        flags made for a block of steps at once."""
        x, env, n = self._state, self.env, self.num_envs
        x1, r, _, final_obs = env._transition(x, u)
        ret = self._ep_ret + r
        t1 = self._host_t + 1
        if t1 < self.max_steps:
            if not self._falses:  # the all-false flags of a block of steps, made at once
                steps = max(1, _START_BLOCK // n)
                rows = torch.zeros(3 * steps, n, dtype=torch.bool, device=self.device).unbind(0)
                self._falses = list(zip(rows[0::3], rows[1::3], rows[2::3]))
            term, trunc, done = self._falses.pop()
            self._state, self._ep_ret, self._host_t = x1, ret, t1
            if x0 is None:  # (a hashed start state is drawn at the time limit only)
                self._skipped += 1
            info = {"final_obs": final_obs, "final_state": x1, "done": done}
            return final_obs, r, term, trunc, info
        # the time limit: every copy truncates and restarts from x0 (_step_core with done true)
        if x0 is None:
            x0, obs0, self._counter = self._next_start(block=False)
        acc = self._acc
        length = torch.full_like(ret, t1)
        self._acc = torch.stack(
            (acc[_SUM] + ret, acc[_SUM_SQ] + ret * ret, acc[_COUNT] + 1, ret, length)
        )
        self._state, self._ep_ret, self._host_t = x0, torch.zeros_like(ret), 0
        term = torch.zeros(n, dtype=torch.bool, device=self.device)
        yes = torch.ones(2, n, dtype=torch.bool, device=self.device).unbind(0)
        info = {"final_obs": final_obs, "final_state": x1, "done": yes[1]}
        return obs0, r, term, yes[0], info

    def _fused_step(
        self, u: Tensor, x0: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        args = (self._state, self._t, u, x0, self._counter, self._key, self._ep_ret, self._acc)
        if self._compiled is not None:
            out = self._compiled(*args)
        else:  # the first step compiles (seconds; less with the inductor cache): say so
            print(
                f"VecEnv: compiling the step of {self.spec.name} for {self.num_envs} envs "
                "with torch.compile...",
                file=sys.stderr,
                flush=True,
            )
            t0 = time.perf_counter()
            self._compiled = _compile_step(self.env, self.max_steps, x0 is None, self.num_envs)
            out = self._compiled(*args)
            print(f"VecEnv: compiled in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        (obs, r, term, trunc, done, final_obs, x1, self._state, self._t, self._ep_ret, self._acc,
         self._counter) = out  # fmt: skip
        return obs, r, term, trunc, {"final_obs": final_obs, "final_state": x1, "done": done}

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
            f"fused={self.fused})"
        )
