"""gymnasium adapters, both ways (needs ``gymnasium``, in the ``[dev]`` extra).

- ``to_gymnasium(env)``: a diffctl ``Env`` as a single ``gymnasium.Env`` (float32 observations,
  spaces from ``env.spec``, truncation at ``spec.max_steps``), passing
  ``gymnasium.utils.env_checker.check_env``.
- ``to_gymnasium_vector(env, num_envs)``: a ``gymnasium.vector.VectorEnv`` backed by our batched
  ``VecEnv`` (same-step auto-reset, as ``AutoresetMode.SAME_STEP``).
- ``from_gymnasium("Pendulum-v1", num_envs=...)``: any gymnasium env behind the ``VecEnv`` API
  (torch tensors on the CPU, same-step auto-reset with ``info["final_obs"]``, episode
  statistics), so agents and data tools run on it. It is not differentiable.

The module is named ``gym_adapters`` so that it never shadows the ``gymnasium`` package.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_space
from torch import Tensor

from .base import Env, EnvSpec
from .vec_env import VecEnv

__all__ = [
    "GymnasiumEnv",
    "GymnasiumVectorEnv",
    "GymnasiumVecEnv",
    "from_gymnasium",
    "to_gymnasium",
    "to_gymnasium_vector",
]


def _spaces(spec: EnvSpec) -> tuple[spaces.Box, spaces.Space]:
    obs = spaces.Box(-np.inf, np.inf, shape=(spec.obs_dim,), dtype=np.float32)
    if spec.discrete:
        return obs, spaces.Discrete(spec.num_actions)
    low = np.asarray(spec.action_low, dtype=np.float32)
    high = np.asarray(spec.action_high, dtype=np.float32)
    return obs, spaces.Box(low, high, shape=(spec.act_dim,), dtype=np.float32)


def _check_env(env: Any) -> None:
    if not isinstance(env, Env):
        raise TypeError(f"env: expected a diffctl Env, got {type(env).__name__}")


def _check_seed(seed: Any) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")


class GymnasiumEnv(gymnasium.Env):
    """A diffctl ``Env`` as a ``gymnasium.Env`` (see ``to_gymnasium``)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, env: Env, seed: int | None = None) -> None:
        _check_env(env)
        _check_seed(seed)
        self.env = env
        self.observation_space, self.action_space = _spaces(env.spec)
        self.render_mode = None
        self.max_episode_steps = env.spec.max_steps
        self._first_seed = seed
        self._generator = torch.Generator(device=env.device)
        self._x: Tensor | None = None
        self._t = 0

    @property
    def state(self) -> np.ndarray | None:
        """Current true state ``[nx]`` (float64), or ``None`` before ``reset``."""
        return None if self._x is None else self._x.detach().cpu().double().numpy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``options={"state": x}`` starts from the state ``x [nx]``."""
        if seed is None and self._first_seed is not None:
            seed = self._first_seed
        self._first_seed = None
        super().reset(seed=seed)
        self._generator.manual_seed(int(self.np_random.integers(2**62)))
        if options and "state" in options:
            x = torch.as_tensor(
                np.asarray(options["state"]), dtype=self.env.dtype, device=self.env.device
            )
            self.env._check_state(x, "options['state']")
            if x.shape != (self.env.spec.state_dim,):
                raise ValueError(
                    f"options['state']: expected shape ({self.env.spec.state_dim},), "
                    f"got {tuple(x.shape)}"
                )
            self._x = x.clone()
        else:
            self._x = self.env.initial_state(1, self._generator)[0]
        self._t = 0
        return self._obs(self._x), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._x is None:
            raise RuntimeError("GymnasiumEnv: call reset() before step()")
        spec = self.env.spec
        if spec.discrete:
            a = np.asarray(action)
            if a.shape != () or not np.issubdtype(a.dtype, np.integer):
                raise TypeError(f"action: expected an int index, got {action!r}")
            if not 0 <= int(action) < spec.num_actions:
                raise ValueError(
                    f"action: expected an index in [0, {spec.num_actions}), got {action!r}"
                )
            u = torch.tensor(int(action), device=self.env.device)
        else:
            a = np.asarray(action)
            if a.shape != (spec.act_dim,) or not np.issubdtype(a.dtype, np.number):
                raise ValueError(f"action: expected {spec.act_dim} numbers, got {action!r}")
            if not np.all(np.isfinite(a)):
                raise ValueError("action: contains NaN or inf")
            u = torch.as_tensor(a.astype(np.float64), dtype=self.env.dtype, device=self.env.device)
        with torch.no_grad():
            x1, obs, r, term = self.env.step(self._x, u)
        self._x = x1
        self._t += 1
        terminated = bool(term)
        truncated = (not terminated) and self._t >= self.max_episode_steps
        return obs.cpu().numpy().astype(np.float32), float(r), terminated, truncated, {}

    def _obs(self, x: Tensor) -> np.ndarray:
        return self.env._observe(x).detach().cpu().numpy().astype(np.float32)


def to_gymnasium(env: Env, seed: int | None = None) -> GymnasiumEnv:
    """Wrap a diffctl ``Env`` as a single ``gymnasium.Env``.

    Spaces come from ``env.spec`` (observations float32 ``Box(-inf, inf)``; continuous actions
    a float32 ``Box`` with the spec's bounds; discrete actions ``Discrete(num_actions)``). The
    episode is truncated at ``env.spec.max_steps`` (so do not add a ``TimeLimit``). ``seed``
    seeds the first ``reset()`` that is not given one. ``reset(options={"state": x})`` starts
    from a given state, and ``.state`` reads the current one.
    """
    return GymnasiumEnv(env, seed=seed)


class GymnasiumVectorEnv(gymnasium.vector.VectorEnv):
    """A ``gymnasium.vector.VectorEnv`` backed by our ``VecEnv`` (see ``to_gymnasium_vector``)."""

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        env: Env,
        num_envs: int,
        seed: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        _check_env(env)
        _check_seed(seed)
        self.venv = VecEnv(env, num_envs, device=device, seed=0 if seed is None else seed)
        self._first_seed = seed
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(env.spec)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self.autoreset_mode = AutoresetMode.SAME_STEP

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._first_seed is not None:
            seed = self._first_seed
        self._first_seed = None
        super().reset(seed=seed)
        return self.venv.reset(seed=seed).cpu().numpy().astype(np.float32), {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        spec, dev = self.venv.spec, self.venv.device
        a = np.asarray(actions)
        if spec.discrete:
            u = torch.as_tensor(a.astype(np.int64), device=dev)
        else:
            u = torch.as_tensor(a.astype(np.float64), dtype=self.venv.env.dtype, device=dev)
        with torch.no_grad():
            obs, r, term, trunc, info = self.venv.step(u)
        done = info["done"].cpu().numpy()
        final = info["final_obs"].cpu().numpy().astype(np.float32)
        infos: dict[str, Any] = {}
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = final[i]
            infos = {
                "final_obs": final_obs,
                "_final_obs": done.copy(),
                "final_info": {},
                "_final_info": done.copy(),
            }
        return (
            obs.cpu().numpy().astype(np.float32),
            r.cpu().numpy().astype(np.float64),
            term.cpu().numpy(),
            trunc.cpu().numpy(),
            infos,
        )


def to_gymnasium_vector(
    env: Env,
    num_envs: int,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> GymnasiumVectorEnv:
    """Wrap a diffctl ``Env`` as a ``gymnasium.vector.VectorEnv`` of ``num_envs`` copies,
    stepped as one batch by our ``VecEnv`` (on ``device``, default the env's).

    Auto-reset happens in the same step (``metadata["autoreset_mode"] ==
    AutoresetMode.SAME_STEP``): the returned observation of a finished env is the first of its
    next episode and ``infos["final_obs"][i]`` (with mask ``infos["_final_obs"]``) the last one.
    Rewards are float64 arrays and observations float32, as gymnasium's ``SyncVectorEnv``.
    gymnasium's vector observation wrappers accept only ``NEXT_STEP`` / ``DISABLED`` envs, so
    they refuse this one (as they refuse a same-step ``SyncVectorEnv``); episode-statistics
    wrappers work.
    """
    return GymnasiumVectorEnv(env, num_envs, seed=seed, device=device)


class GymnasiumVecEnv:
    """Any gymnasium env behind the ``VecEnv`` API (see ``from_gymnasium``).

    Attributes:
        vector_env: the underlying ``gymnasium.vector.SyncVectorEnv`` (same-step auto-reset).
        spec: ``EnvSpec`` built from the spaces (``state_dim == obs_dim``; ``dt`` from the
            unwrapped env's ``dt`` or ``tau`` attribute, else NaN; ``max_steps`` from the
            gymnasium spec's ``max_episode_steps``, else 0 meaning no known limit).
        num_envs, max_steps (``spec.max_steps``), device (always CPU), last_obs (the latest
        observation, ``None`` before ``reset``), elapsed_steps (``[N]``).
    """

    def __init__(
        self,
        factory: Callable[[], gymnasium.Env],
        num_envs: int,
        seed: int,
        name: str,
        validate: bool = True,
    ) -> None:
        self.vector_env = SyncVectorEnv(
            [factory] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP
        )
        self.num_envs = num_envs
        self.device = torch.device("cpu")
        self.seed = seed
        self.validate = validate
        self.spec = _spec_from_spaces(self.vector_env, name)
        self.max_steps = self.spec.max_steps
        self._obs_shape = self.vector_env.single_observation_space.shape
        self._act_dtype = (
            np.int64 if self.spec.discrete else self.vector_env.single_action_space.dtype
        )
        self._needs_seed = True
        self.last_obs: Tensor | None = None
        self._ep_ret = np.zeros(num_envs)
        self._ep_len = np.zeros(num_envs, dtype=np.int64)
        self._stats = np.zeros(3)  # sum of returns, sum of squares, count
        self._last = np.full((2, num_envs), np.nan)

    @property
    def elapsed_steps(self) -> Tensor:
        """Steps taken in the current episode of each env, ``[N]`` int64."""
        return torch.from_numpy(self._ep_len.copy())

    def reset(self, seed: int | None = None) -> Tensor:
        """Start new episodes in every env (env ``i`` seeded ``seed + i`` on the first reset or
        when ``seed`` is given); returns ``obs [N, obs_dim]`` float32."""
        _check_seed(seed)
        if seed is None and self._needs_seed:
            seed = self.seed
        self._needs_seed = False
        obs, _ = self.vector_env.reset(seed=seed)
        self._ep_ret[:] = 0.0
        self._ep_len[:] = 0
        self.last_obs = self._to_obs(obs)
        return self.last_obs

    def step(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        """Step every env with actions ``u`` (``[N, act_dim]`` float, or ``[N]`` int64 for a
        discrete env); finished envs reset in the same step.

        Returns ``obs [N, obs_dim]``, ``reward [N]`` (float32), ``terminated [N]``,
        ``truncated [N]`` and ``info`` with ``final_obs`` (the observation each step reached,
        before any reset) and ``done``.
        """
        if self.last_obs is None:
            raise RuntimeError("GymnasiumVecEnv: call reset() before step()")
        if self.validate:
            self._validate_action(u)
        a = u.detach().cpu().numpy().astype(self._act_dtype)
        obs, rew, term, trunc, infos = self.vector_env.step(a)
        final = np.array(obs, dtype=np.float32).reshape(self.num_envs, -1)
        if "final_obs" in infos:
            for i in np.flatnonzero(infos["_final_obs"]):
                final[i] = np.asarray(infos["final_obs"][i], dtype=np.float32).reshape(-1)
        done = np.logical_or(term, trunc)
        self._ep_ret += rew
        self._ep_len += 1
        if done.any():
            ret = self._ep_ret[done]
            self._stats += (ret.sum(), (ret**2).sum(), float(done.sum()))
            self._last[0, done] = ret
            self._last[1, done] = self._ep_len[done]
            self._ep_ret[done] = 0.0
            self._ep_len[done] = 0
        self.last_obs = self._to_obs(obs)
        info = {"final_obs": torch.from_numpy(final), "done": torch.from_numpy(done.copy())}
        return (
            self.last_obs,
            torch.as_tensor(rew, dtype=torch.float32),
            torch.as_tensor(term, dtype=torch.bool),
            torch.as_tensor(trunc, dtype=torch.bool),
            info,
        )

    def episode_statistics(self, clear: bool = True) -> dict[str, Any]:
        """Statistics of the episodes finished since the last clear, as ``VecEnv``'s:
        ``count``, ``mean_return``, ``std_return`` (NaN when none finished), ``last_returns`` /
        ``last_lengths`` (``[N]`` float32 tensors, NaN for envs yet to finish one)."""
        s, s2, n = (float(v) for v in self._stats)
        mean = s / n if n > 0 else math.nan
        var = max(s2 / n - mean * mean, 0.0) if n > 0 else math.nan
        out = {
            "count": int(n),
            "mean_return": mean,
            "std_return": var**0.5,
            "last_returns": torch.tensor(self._last[0], dtype=torch.float32),
            "last_lengths": torch.tensor(self._last[1], dtype=torch.float32),
        }
        if clear:
            self._stats[:] = 0.0
        return out

    def close(self) -> None:
        """Close the gymnasium envs."""
        self.vector_env.close()
        self.last_obs = None

    def _to_obs(self, obs: np.ndarray) -> Tensor:
        return torch.from_numpy(np.array(obs, dtype=np.float32).reshape(self.num_envs, -1))

    def _validate_action(self, u: Tensor) -> None:
        if not isinstance(u, Tensor):
            raise TypeError(f"u: expected a torch.Tensor, got {type(u).__name__}")
        if u.device.type != "cpu":
            raise ValueError(f"u: tensor is on {u.device}, the gymnasium runner is on cpu")
        if self.spec.discrete:
            if u.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"u: expected int64 action indices, got {u.dtype}")
            if u.shape != (self.num_envs,):
                raise ValueError(f"u: expected shape ({self.num_envs},), got {tuple(u.shape)}")
            if bool(((u < 0) | (u >= self.spec.num_actions)).any()):
                raise ValueError(f"u: action index outside [0, {self.spec.num_actions})")
        else:
            if not u.is_floating_point():
                raise TypeError(f"u: expected a floating dtype, got {u.dtype}")
            want = (self.num_envs, self.spec.act_dim)
            if tuple(u.shape) != want:
                raise ValueError(f"u: expected shape {want}, got {tuple(u.shape)}")
            if not bool(torch.isfinite(u).all()):
                raise ValueError("u: action contains NaN or inf")

    def __repr__(self) -> str:
        return f"GymnasiumVecEnv({self.spec.name!r}, num_envs={self.num_envs})"


def _spec_from_spaces(venv: SyncVectorEnv, name: str) -> EnvSpec:
    obs_space, act_space = venv.single_observation_space, venv.single_action_space
    if not isinstance(obs_space, spaces.Box):
        raise ValueError(f"env: only Box observation spaces are supported, {name} has {obs_space}")
    obs_dim = int(np.prod(obs_space.shape))
    if isinstance(act_space, spaces.Discrete):
        if int(act_space.start) != 0:
            raise ValueError(f"env: Discrete action spaces must start at 0, {name} has {act_space}")
        discrete, num_actions, act_dim, low, high = True, int(act_space.n), 0, (), ()
    elif isinstance(act_space, spaces.Box) and len(act_space.shape) == 1:
        discrete, num_actions, act_dim = False, 0, int(act_space.shape[0])
        low = tuple(float(v) for v in act_space.low)
        high = tuple(float(v) for v in act_space.high)
    else:
        raise ValueError(
            f"env: only Discrete or 1-D Box action spaces are supported, {name} has {act_space}"
        )
    sub = venv.envs[0]
    unwrapped = sub.unwrapped
    dt = float(getattr(unwrapped, "dt", getattr(unwrapped, "tau", math.nan)))
    max_steps = sub.spec.max_episode_steps if sub.spec is not None else None
    return EnvSpec(
        name=name,
        state_dim=obs_dim,
        obs_dim=obs_dim,
        act_dim=act_dim,
        action_low=low,
        action_high=high,
        dt=dt,
        max_steps=int(max_steps or 0),
        discrete=discrete,
        num_actions=num_actions,
        extra={"gymnasium": True, "differentiable": False},
    )


def from_gymnasium(
    env: str | Callable[[], gymnasium.Env],
    num_envs: int = 1,
    seed: int = 0,
    *,
    validate: bool = True,
    **make_kwargs: Any,
) -> GymnasiumVecEnv:
    """Run any gymnasium env through the ``VecEnv`` API.

    Args:
        env: a registered gymnasium id (``"Pendulum-v1"``, built with ``gymnasium.make(env,
            **make_kwargs)``) or a zero-argument factory returning a ``gymnasium.Env``.
        num_envs: number of copies, stepped by a ``SyncVectorEnv`` with same-step auto-reset.
        seed: seeds the first ``reset()`` (env ``i`` gets ``seed + i``).
        validate: check every action's type, shape, dtype, device, range and finiteness.

    Returns a ``GymnasiumVecEnv`` (CPU tensors; not differentiable).
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs: expected a positive int, got {num_envs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if isinstance(env, str):
        env_id = env
        try:
            gymnasium.spec(env_id)
        except gymnasium.error.Error as e:
            raise ValueError(f"env: unknown gymnasium id {env_id!r} ({e})") from e

        def factory() -> gymnasium.Env:
            return gymnasium.make(env_id, **make_kwargs)

        name = env_id
    elif callable(env):
        if make_kwargs:
            raise TypeError(
                f"make_kwargs: {sorted(make_kwargs)} only apply to a gymnasium id, not a factory"
            )
        probe = env()
        if not isinstance(probe, gymnasium.Env):
            raise TypeError(
                f"env: the factory must return a gymnasium.Env, got {type(probe).__name__}"
            )
        probe_spec = getattr(probe, "spec", None)
        name = probe_spec.id if probe_spec is not None else type(probe.unwrapped).__name__
        probe.close()
        factory = env
    else:
        raise TypeError(
            f"env: expected a gymnasium id or a factory returning a gymnasium.Env, "
            f"got {type(env).__name__}"
        )
    return GymnasiumVecEnv(factory, num_envs, seed, name, validate=validate)
