"""``Trajectory``: a typed container of time-major rollout tensors."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Trajectory"]

# fields holding a tensor [T, B, ...] (optional ones may be None), in a fixed order
_REQUIRED = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")
_OPTIONAL = ("states", "next_states")


@dataclass(frozen=True)
class Trajectory:
    """Time-major batch of transitions, validated at construction.

    Attributes:
        obs: ``[T, B, obs_dim]`` floating, observation the action was taken from.
        actions: ``[T, B, act_dim]`` floating, or int64 ``[T, B]`` for discrete actions.
        rewards: ``[T, B]`` floating.
        next_obs: ``[T, B, obs_dim]``, observation reached by the step, *before* any auto-reset.
        terminated: bool ``[T, B]``: the step reached a terminal state.
        truncated: bool ``[T, B]``: the episode was cut by a time limit after this step.
        states, next_states: ``[T, B, nx]`` true states when known, else ``None``.
        extras: further per-step tensors ``[T, B, ...]`` (log-probs, values, ...), keyed by name.

    All tensors live on one device. Rows after an episode end continue with the next episode
    of that env (auto-reset), so ``obs[t + 1]`` differs from ``next_obs[t]`` exactly where
    ``terminated | truncated`` (for auto-resetting runners).
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    terminated: Tensor
    truncated: Tensor
    states: Tensor | None = None
    next_states: Tensor | None = None
    extras: Mapping[str, Tensor] = field(default_factory=dict)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        for name in (*_REQUIRED, *_OPTIONAL):
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if not isinstance(value, Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
        r = self.rewards
        if not r.is_floating_point():
            raise TypeError(f"rewards: expected a floating dtype, got {r.dtype}")
        if r.dim() != 2:
            raise ValueError(f"rewards: expected shape [T, B], got {tuple(r.shape)}")
        T, B = r.shape
        device = r.device
        for name in ("obs", "next_obs", "states", "next_states"):
            x = getattr(self, name)
            if x is None:
                continue
            if not x.is_floating_point():
                raise TypeError(f"{name}: expected a floating dtype, got {x.dtype}")
            if x.dim() != 3 or x.shape[:2] != (T, B):
                raise ValueError(
                    f"{name}: expected shape [{T}, {B}, dim] (T, B of rewards), "
                    f"got {tuple(x.shape)}"
                )
        if self.next_obs.shape != self.obs.shape:
            raise ValueError(
                f"next_obs: expected shape {tuple(self.obs.shape)} (as obs), "
                f"got {tuple(self.next_obs.shape)}"
            )
        if (
            self.states is not None
            and self.next_states is not None
            and self.next_states.shape != self.states.shape
        ):
            raise ValueError(
                f"next_states: expected shape {tuple(self.states.shape)} (as states), "
                f"got {tuple(self.next_states.shape)}"
            )
        a = self.actions
        if a.is_floating_point():
            if a.dim() != 3 or a.shape[:2] != (T, B):
                raise ValueError(
                    f"actions: expected shape [{T}, {B}, act_dim] (T, B of rewards), "
                    f"got {tuple(a.shape)}"
                )
        elif a.dtype in (torch.int64, torch.int32):
            if a.shape != (T, B):
                raise ValueError(
                    f"actions: expected discrete action indices of shape [{T}, {B}], "
                    f"got {tuple(a.shape)}"
                )
        else:
            raise TypeError(f"actions: expected a floating or int64 dtype, got {a.dtype}")
        for name in ("terminated", "truncated"):
            d = getattr(self, name)
            if d.dtype != torch.bool:
                raise TypeError(f"{name}: expected a bool tensor, got {d.dtype}")
            if d.shape != (T, B):
                raise ValueError(
                    f"{name}: expected shape [{T}, {B}] (as rewards), got {tuple(d.shape)}"
                )
        if not isinstance(self.extras, Mapping):
            raise TypeError(f"extras: expected a mapping, got {type(self.extras).__name__}")
        for key, x in self.extras.items():
            if not isinstance(key, str) or key in (*_REQUIRED, *_OPTIONAL):
                raise ValueError(f"extras[{key!r}]: keys must be strings other than field names")
            if not isinstance(x, Tensor):
                raise TypeError(f"extras[{key!r}]: expected a torch.Tensor, got {type(x).__name__}")
            if x.dim() < 2 or x.shape[:2] != (T, B):
                raise ValueError(
                    f"extras[{key!r}]: expected shape [{T}, {B}, ...] (T, B of rewards), "
                    f"got {tuple(x.shape)}"
                )
        for name, x in self._tensors():
            if x.device != device:
                raise ValueError(f"{name}: tensor is on {x.device}, rewards is on {device}")
        object.__setattr__(self, "extras", dict(self.extras))

    def _tensors(self) -> Iterator[tuple[str, Tensor]]:
        """``(name, tensor)`` of every present field (extras as ``extras[key]``)."""
        for name in (*_REQUIRED, *_OPTIONAL):
            x = getattr(self, name)
            if x is not None:
                yield name, x
        for key, x in self.extras.items():
            yield f"extras[{key!r}]", x

    def _map(self, fn) -> Trajectory:
        """Apply ``fn`` to every tensor (``[T, B, ...] -> [T', B', ...]``)."""
        kwargs = {
            name: (None if getattr(self, name) is None else fn(getattr(self, name)))
            for name in (*_REQUIRED, *_OPTIONAL)
        }
        return Trajectory(**kwargs, extras={k: fn(v) for k, v in self.extras.items()})

    # ------------------------------------------------------------------ properties
    @property
    def num_steps(self) -> int:
        """``T``."""
        return self.rewards.shape[0]

    @property
    def batch_size(self) -> int:
        """``B``."""
        return self.rewards.shape[1]

    @property
    def device(self) -> torch.device:
        return self.rewards.device

    @property
    def discrete(self) -> bool:
        """Whether the actions are integer indices."""
        return not self.actions.is_floating_point()

    @property
    def dones(self) -> Tensor:
        """``terminated | truncated``, bool ``[T, B]``."""
        return self.terminated | self.truncated

    def __len__(self) -> int:
        return self.num_steps

    # ------------------------------------------------------------------ transforms
    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Trajectory:
        """Copy on ``device``; ``dtype`` (if given) applies to floating tensors only."""

        def move(x: Tensor) -> Tensor:
            if dtype is not None and x.is_floating_point():
                return x.to(device=device, dtype=dtype)
            return x.to(device=device)

        return self._map(move)

    def detach(self) -> Trajectory:
        """Copy cut from the autograd graph (same storage)."""
        return self._map(Tensor.detach)

    def __getitem__(self, key: slice | tuple) -> Trajectory:
        """``traj[t0:t1]`` slices time; ``traj[t0:t1, idx]`` also selects envs (``idx``: a
        slice, a list/int64 tensor of indices or a bool mask ``[B]``)."""
        if isinstance(key, tuple):
            if len(key) != 2:
                raise TypeError(f"key: expected traj[time_slice, env_index], got {len(key)} parts")
            tkey, bkey = key
        else:
            tkey, bkey = key, slice(None)
        if not isinstance(tkey, slice):
            raise TypeError(
                f"key: time index must be a slice (use traj[t:t+1] for one step), got "
                f"{type(tkey).__name__}"
            )
        if isinstance(bkey, int) and not isinstance(bkey, bool):
            bkey = slice(bkey, bkey + 1 if bkey != -1 else None)
        if isinstance(bkey, (list, tuple)):
            bkey = torch.as_tensor(bkey, dtype=torch.int64, device=self.device)
        if not isinstance(bkey, (slice, Tensor)):
            raise TypeError(
                f"key: env index must be a slice, int, list or tensor, got {type(bkey).__name__}"
            )
        out = self._map(lambda x: x[tkey][:, bkey])
        if out.num_steps == 0:
            raise ValueError(
                f"key: time slice {tkey} of a trajectory with {self.num_steps} steps is empty"
            )
        return out

    def flatten(self) -> dict[str, Tensor]:
        """Transitions ``[T * B, ...]`` keyed by field name (time-major order: row ``t * B + b``).

        Keys: ``obs, actions, rewards, next_obs, terminated, truncated``, ``states`` /
        ``next_states`` when present, and every key of ``extras``.
        """
        n = self.num_steps * self.batch_size
        out = {
            name: x.reshape(n, *x.shape[2:])
            for name in (*_REQUIRED, *_OPTIONAL)
            if (x := getattr(self, name)) is not None
        }
        for key, x in self.extras.items():
            out[key] = x.reshape(n, *x.shape[2:])
        return out

    @staticmethod
    def cat(trajectories: Sequence[Trajectory], dim: int = 0) -> Trajectory:
        """Concatenate along time (``dim=0``) or envs (``dim=1``).

        Every trajectory must have the same optional fields and ``extras`` keys.
        """
        if dim not in (0, 1):
            raise ValueError(f"dim: expected 0 (time) or 1 (envs), got {dim!r}")
        trajs = list(trajectories)
        if not trajs:
            raise ValueError("trajectories: expected at least one Trajectory")
        for i, tr in enumerate(trajs):
            if not isinstance(tr, Trajectory):
                raise TypeError(
                    f"trajectories[{i}]: expected a Trajectory, got {type(tr).__name__}"
                )
        first = trajs[0]
        for i, tr in enumerate(trajs[1:], 1):
            for name in _OPTIONAL:
                if (getattr(tr, name) is None) != (getattr(first, name) is None):
                    raise ValueError(f"trajectories[{i}]: {name} present in some but not all")
            if set(tr.extras) != set(first.extras):
                raise ValueError(
                    f"trajectories[{i}]: extras keys {sorted(tr.extras)} differ from "
                    f"{sorted(first.extras)}"
                )
        kwargs = {}
        for name in (*_REQUIRED, *_OPTIONAL):
            if getattr(first, name) is None:
                kwargs[name] = None
                continue
            kwargs[name] = _cat([getattr(t, name) for t in trajs], dim, name)
        extras = {
            k: _cat([t.extras[k] for t in trajs], dim, f"extras[{k!r}]") for k in first.extras
        }
        return Trajectory(**kwargs, extras=extras)

    def replace(self, **changes: object) -> Trajectory:
        """Copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ summaries
    def episode_returns(self) -> tuple[Tensor, Tensor]:
        """Undiscounted returns and lengths of the episodes that end inside the trajectory.

        An episode is counted from the first row (or the row after the env's previous episode
        end) to a ``terminated | truncated`` row; an episode running at the start may have begun
        before this trajectory, so its return covers only the rows held here. Returns
        ``(returns [E], lengths [E])`` ordered by end time, then env (one host sync).
        """
        done = self.dones
        r = self.rewards
        cum = torch.cumsum(r, dim=0)  # [T, B]
        steps = torch.arange(1, self.num_steps + 1, device=self.device)[:, None].expand_as(r)
        # running totals at the previous episode end of the same env (0 before the first)
        prev_cum = torch.zeros_like(cum)
        prev_len = torch.zeros_like(steps)
        last_cum = torch.zeros_like(cum[0])
        last_len = torch.zeros_like(steps[0])
        for t in range(self.num_steps):
            prev_cum[t], prev_len[t] = last_cum, last_len
            last_cum = torch.where(done[t], cum[t], last_cum)
            last_len = torch.where(done[t], steps[t], last_len)
        returns = (cum - prev_cum)[done]
        lengths = (steps - prev_len)[done]
        return returns, lengths


def _cat(xs: list[Tensor], dim: int, name: str) -> Tensor:
    try:
        return torch.cat(xs, dim=dim)
    except RuntimeError as e:
        raise ValueError(f"{name}: cannot concatenate along dim {dim}: {e}") from e
