"""``rollout``: run a policy in a pure ``Env`` (functionally, differentiably) or a ``VecEnv``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from diffctl.envs import Env, VecEnv

from .trajectory import Trajectory

__all__ = ["rollout", "Policy"]

#: ``policy(obs [B, obs_dim]) -> action`` (``[B, act_dim]`` or int64 ``[B]``), or
#: ``policy(state [B, nx])`` when the policy has ``needs_state = True``. A policy may also return
#: ``(action, extras)`` with ``extras`` a dict of ``[B, ...]`` tensors (log-probs, values, ...),
#: which the trajectory keeps in ``Trajectory.extras`` as ``[T, B, ...]``.
Policy = Callable[[Tensor], Any]


def rollout(
    env_or_vecenv: Env | Any,
    policy: Policy,
    horizon: int,
    *,
    num_envs: int | None = None,
    x0: Tensor | None = None,
    generator: torch.Generator | None = None,
    keep_graph: bool = False,
    reset: bool = False,
) -> Trajectory:
    """Run ``policy`` for ``horizon`` steps in a batch of environments.

    Two kinds of environment are accepted:

    - a pure ``Env``: starts from ``x0 [N, nx]`` or ``env.initial_state(num_envs, generator)``
      and steps ``x_{t+1} = env.dynamics(x_t, u_t)`` functionally. There is no auto-reset and
      no time limit: ``terminated[t]`` is ``env.terminated(x_{t+1})`` at every step (rows after a
      termination keep stepping from the terminal state), ``truncated`` is all False. States are
      always recorded. With ``keep_graph=True`` nothing is detached, so gradients flow from the
      rewards to the actions, the policy's weights, ``x0`` and ``env.params`` (backprop through
      time).
    - a ``VecEnv`` or any runner with its API (``reset() -> obs``, ``step(u) -> obs, reward,
      terminated, truncated, info`` with auto-reset, ``num_envs``): it is stepped ``horizon``
      times, continuing from where it stands (its first use, or ``reset=True``, resets it;
      ``x0`` puts it in that state via ``set_state``). ``next_obs`` is ``info["final_obs"]``
      (the observation before the auto-reset) when the runner gives one; states are recorded when
      the runner exposes ``.state`` (and ``next_states`` from ``info["final_state"]``). A runner
      that is not a ``VecEnv`` (nor holds a diffctl ``Env`` as ``.env`` next to ``.state``)
      continues from its ``last_obs`` attribute when it has one, and is reset otherwise.

    A policy with attribute ``needs_state = True`` (e.g. an MPC planner) receives the true state
    instead of the observation. Nothing in the loop synchronises with the host.

    Args:
        env_or_vecenv: an ``Env`` or a ``VecEnv``-like runner.
        policy: see ``Policy``.
        horizon: number of steps ``T >= 1``.
        num_envs: batch size ``N`` (pure ``Env`` without ``x0``; checked against the runner's).
        x0: start states ``[N, nx]``.
        generator: seeds the start states of a pure ``Env`` (a runner has its own).
        keep_graph: keep the autograd graph (else the rollout runs under ``torch.no_grad()``).
        reset: reset a runner before stepping.

    Returns:
        A ``Trajectory`` with ``T = horizon``, ``B = N``.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon: expected a positive int, got {horizon!r}")
    if not callable(policy):
        raise TypeError(f"policy: expected a callable, got {type(policy).__name__}")
    if num_envs is not None and (
        isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1
    ):
        raise ValueError(f"num_envs: expected a positive int, got {num_envs!r}")
    if not isinstance(keep_graph, bool):
        raise TypeError(f"keep_graph: expected a bool, got {type(keep_graph).__name__}")
    needs_state = bool(getattr(policy, "needs_state", False))
    ctx = contextlib.nullcontext() if keep_graph else torch.no_grad()
    with ctx:
        if isinstance(env_or_vecenv, Env):
            if reset:
                raise ValueError("reset: only applies to a VecEnv-like runner, not a pure Env")
            return _rollout_env(
                env_or_vecenv, policy, horizon, num_envs, x0, generator, needs_state
            )
        if all(hasattr(env_or_vecenv, a) for a in ("reset", "step", "num_envs")):
            if generator is not None:
                raise ValueError(
                    "generator: a VecEnv-like runner draws start states from its own generator "
                    "(seed it with VecEnv(seed=...) or reset(seed=...))"
                )
            return _rollout_runner(env_or_vecenv, policy, horizon, num_envs, x0, needs_state, reset)
    raise TypeError(
        "env_or_vecenv: expected a diffctl Env or a VecEnv-like runner (reset, step, num_envs), "
        f"got {type(env_or_vecenv).__name__}"
    )


def _call_policy(policy: Policy, inp: Tensor) -> tuple[Tensor, Mapping[str, Tensor]]:
    out = policy(inp)
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], Mapping):
            raise TypeError("policy: expected to return an action or (action, dict of extras)")
        action, extras = out
    else:
        action, extras = out, {}
    if not isinstance(action, Tensor):
        raise TypeError(
            f"policy: expected to return a torch.Tensor action, got {type(action).__name__}"
        )
    return action, extras


def _stack_extras(per_step: list[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    keys = set(per_step[0])
    for t, e in enumerate(per_step):
        if set(e) != keys:
            raise ValueError(
                f"policy: extras keys changed at step {t}: {sorted(e)} vs {sorted(keys)}"
            )
    return {k: torch.stack([e[k] for e in per_step]) for k in sorted(keys)}


def _rollout_env(
    env: Env,
    policy: Policy,
    horizon: int,
    num_envs: int | None,
    x0: Tensor | None,
    generator: torch.Generator | None,
    needs_state: bool,
) -> Trajectory:
    if x0 is None:
        if num_envs is None:
            raise ValueError("num_envs: required with a pure Env when x0 is not given")
        x = env.initial_state(num_envs, generator)
    else:
        env._check_state(x0, "x0")
        if x0.dim() != 2:
            raise ValueError(f"x0: expected shape [N, {env.spec.state_dim}], got {tuple(x0.shape)}")
        if num_envs is not None and x0.shape[0] != num_envs:
            raise ValueError(f"num_envs: is {num_envs} but x0 holds {x0.shape[0]} states")
        x = x0
    o = env.observe(x)
    cols: dict[str, list[Tensor]] = {k: [] for k in ("s", "o", "u", "r", "s1", "o1", "d")}
    extras = []
    for _ in range(horizon):
        u, ex = _call_policy(policy, x if needs_state else o)
        x1, o1, r, term = env.step(x, u)  # validates u's shape, dtype and device
        for k, v in zip(cols, (x, o, u, r, x1, o1, term)):
            cols[k].append(v)
        extras.append(ex)
        x, o = x1, o1
    st = {k: torch.stack(v) for k, v in cols.items()}
    return Trajectory(
        obs=st["o"],
        actions=st["u"],
        rewards=st["r"],
        next_obs=st["o1"],
        terminated=st["d"],
        truncated=torch.zeros_like(st["d"]),
        states=st["s"],
        next_states=st["s1"],
        extras=_stack_extras(extras),
    )


def _holds_env(runner: Any) -> bool:
    return isinstance(runner, VecEnv) or isinstance(getattr(runner, "env", None), Env)


def _current_obs(runner: Any) -> Tensor:
    """Observation the runner stands at, resetting it if it was never reset."""
    if _holds_env(runner):
        try:
            state = runner.state
        except RuntimeError:  # VecEnv before its first reset()
            return runner.reset()
        return runner.reset() if state is None else runner.env._observe(state)
    last = getattr(runner, "last_obs", None)
    return runner.reset() if last is None else last


def _rollout_runner(
    runner: Any,
    policy: Policy,
    horizon: int,
    num_envs: int | None,
    x0: Tensor | None,
    needs_state: bool,
    reset: bool,
) -> Trajectory:
    if num_envs is not None and num_envs != runner.num_envs:
        raise ValueError(f"num_envs: is {num_envs} but the runner has {runner.num_envs} envs")
    if x0 is not None:
        if not hasattr(runner, "set_state"):
            raise ValueError(f"x0: {type(runner).__name__} has no set_state() to start from x0")
        obs = runner.set_state(x0)
    elif reset:
        obs = runner.reset()
    else:
        obs = _current_obs(runner)
    # our VecEnv never writes into tensors it returned; other runners (numpy-backed adapters)
    # may reuse buffers, so their outputs are copied as soon as they are received
    copy = (lambda x: x) if isinstance(runner, VecEnv) else (lambda x: x.clone())
    obs = copy(obs)
    has_state = hasattr(type(runner), "state") or hasattr(runner, "state")
    if needs_state and not has_state:
        raise ValueError(f"policy: needs_state=True but {type(runner).__name__} exposes no .state")
    cols: dict[str, list[Tensor]] = {k: [] for k in ("o", "u", "r", "o1", "term", "trunc")}
    states: list[Tensor] = []
    next_states: list[Tensor] = []
    extras = []
    for _ in range(horizon):
        s = copy(runner.state) if has_state else None
        u, ex = _call_policy(policy, s if needs_state else obs)
        obs1, r, term, trunc, info = runner.step(u)
        info = info if isinstance(info, Mapping) else {}
        final_obs = copy(info["final_obs"]) if "final_obs" in info else None
        obs1 = copy(obs1)
        for k, v in zip(
            cols,
            (obs, u, copy(r), obs1 if final_obs is None else final_obs, copy(term), copy(trunc)),
        ):
            cols[k].append(v)
        if s is not None:
            states.append(s)
            if "final_state" in info:
                next_states.append(copy(info["final_state"]))
        extras.append(ex)
        obs = obs1
    st = {k: torch.stack(v) for k, v in cols.items()}
    return Trajectory(
        obs=st["o"],
        actions=st["u"],
        rewards=st["r"],
        next_obs=st["o1"],
        terminated=st["term"],
        truncated=st["trunc"],
        states=torch.stack(states) if states else None,
        next_states=torch.stack(next_states) if len(next_states) == horizon else None,
        extras=_stack_extras(extras),
    )
