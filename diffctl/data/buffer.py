"""``ReplayBuffer``: a device-resident ring buffer of transitions for off-policy agents."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffctl.envs import as_device

from ._io import atomic_write, check_path
from .trajectory import Trajectory

__all__ = ["ReplayBuffer"]

_FORMAT = "diffctl.ReplayBuffer/1"


class ReplayBuffer:
    """Fixed-capacity ring buffer of ``(obs, action, reward, next_obs, terminated)`` transitions,
    with optional true ``states`` / ``next_states``, stored as preallocated tensors on ``device``.

    Only ``terminated`` is kept (not ``truncated``): an off-policy target bootstraps at a
    truncation, so ``next_obs`` must be the observation reached before any auto-reset
    (``info["final_obs"]``, as ``rollout`` records it).

    Args:
        capacity: maximum number of transitions; older ones are overwritten first.
        obs_dim: observation size.
        act_dim: action size (ignored for ``discrete=True``: actions are int64 ``[N]``).
        device: where the storage lives (CPU by default).
        discrete: store int64 action indices.
        state_dim: also store ``states`` / ``next_states`` of this size.
        dtype: floating dtype of the storage.
        check_finite: reject NaN/inf in ``add`` (a host sync per call, off by default).

    Shape/dtype/device checks in ``add`` never synchronise with the host; the write position and
    size are Python ints derived from shapes. The floating fields are column blocks of one
    ``[capacity, width]`` tensor (``storage`` holds views of it; ``sample`` returns views of one
    gathered block): a step's write is one ``cat`` into its rows, a draw one gather.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        act_dim: int,
        device: str | torch.device | None = None,
        discrete: bool = False,
        *,
        state_dim: int | None = None,
        dtype: torch.dtype = torch.float32,
        check_finite: bool = False,
    ) -> None:
        for name, v in (("capacity", capacity), ("obs_dim", obs_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if isinstance(act_dim, bool) or not isinstance(act_dim, int) or act_dim < 0:
            raise ValueError(f"act_dim: expected a non-negative int, got {act_dim!r}")
        if not discrete and act_dim < 1:
            raise ValueError("act_dim: a continuous-action buffer needs act_dim >= 1")
        if state_dim is not None and (
            isinstance(state_dim, bool) or not isinstance(state_dim, int) or state_dim < 1
        ):
            raise ValueError(f"state_dim: expected a positive int or None, got {state_dim!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        self.device = as_device(device)
        self.capacity = capacity
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.discrete = bool(discrete)
        self.state_dim = state_dim
        self.dtype = dtype
        self.check_finite = bool(check_finite)
        self._ptr = 0
        self._size = 0
        C, dev = capacity, self.device
        # the floating fields are column blocks of one [C, width] tensor: a write is one cat
        # into a row range and a draw one gather (the storage dict holds views of it)
        widths = {"obs": obs_dim}
        if not self.discrete:
            widths["actions"] = act_dim
        widths.update(rewards=1, next_obs=obs_dim)
        if state_dim is not None:
            widths.update(states=state_dim, next_states=state_dim)
        self._rows = torch.zeros(C, sum(widths.values()), device=dev, dtype=dtype)
        self._terminated = torch.zeros(C, dtype=torch.bool, device=dev)
        self._actions = torch.zeros(C, dtype=torch.int64, device=dev) if self.discrete else None
        self._columns: dict[str, tuple[int, int]] = {}
        start = 0
        for k, w in widths.items():
            self._columns[k] = (start, w)
            start += w
        # (key, column range or index) of each field in storage order; None: its own tensor
        self._layout: list[tuple[str, slice | int | None]] = []
        for k in ("obs", "actions", "rewards", "next_obs", "terminated", "states", "next_states"):
            if k in self._columns:
                start, w = self._columns[k]
                self._layout.append((k, start if k == "rewards" else slice(start, start + w)))
            elif k in ("actions", "terminated"):
                self._layout.append((k, None))
        self.storage: dict[str, Tensor] = self._views(self._rows, self._terminated, self._actions)
        self._row_shapes = {k: tuple(v.shape[1:]) for k, v in self.storage.items()}

    def _views(self, rows: Tensor, terminated: Tensor, actions: Tensor | None) -> dict[str, Tensor]:
        """The fields as views of ``rows`` (``[M, width]``) in the storage's key order."""
        return {
            k: rows[:, cols] if cols is not None else terminated if k == "terminated" else actions
            for k, cols in self._layout
        }

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        return self._size

    @property
    def full(self) -> bool:
        return self._size == self.capacity

    # ------------------------------------------------------------------ adding
    def _check(self, name: str, x: object, key: str, n: int | None) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.device != self.device:
            raise ValueError(f"{name}: tensor is on {x.device}, the buffer is on {self.device}")
        target = self.storage[key]
        if x.dtype == target.dtype:
            pass
        elif target.dtype == torch.bool:
            if x.dtype != torch.bool:
                raise TypeError(f"{name}: expected a bool tensor, got {x.dtype}")
        elif target.dtype == torch.int64:
            if x.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"{name}: expected int64 action indices, got {x.dtype}")
        elif not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating dtype, got {x.dtype}")
        row = self._row_shapes[key]
        if n is None:  # the first argument fixes the batch size
            if x.dim() == len(row):  # unbatched: a batch of one
                x = x.unsqueeze(0)
            n = x.shape[0]
        elif x.dim() == len(row) and n == 1:
            x = x.unsqueeze(0)
        if tuple(x.shape) != (n, *row):
            raise ValueError(f"{name}: expected shape {(n, *row)}, got {tuple(x.shape)}")
        if self.check_finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: contains NaN or inf")
        return x if x.dtype == target.dtype else x.to(target.dtype)

    def add(
        self,
        obs: Tensor,
        action: Tensor,
        reward: Tensor,
        next_obs: Tensor,
        terminated: Tensor,
        *,
        state: Tensor | None = None,
        next_state: Tensor | None = None,
        check: bool = True,
    ) -> None:
        """Add a batch of ``N`` transitions: ``obs [N, obs_dim]``, ``action [N, act_dim]`` (int64
        ``[N]`` if discrete), ``reward [N]``, ``next_obs [N, obs_dim]``, ``terminated [N]`` bool
        (and ``state`` / ``next_state [N, state_dim]`` for a buffer built with ``state_dim``).
        Unbatched arguments are a batch of one. If ``N > capacity`` only the last ``capacity``
        are kept.

        ``check=False`` skips the checks of the arguments (and the unbatched form), for a caller
        that adds batches like one that passed them, every step (the off-policy loop)."""
        if not check:
            self._write(obs, action, reward, next_obs, terminated, state, next_state)
            return
        obs = self._check("obs", obs, "obs", None)
        n = obs.shape[0]
        action = self._check("action", action, "actions", n)
        reward = self._check("reward", reward, "rewards", n)
        next_obs = self._check("next_obs", next_obs, "next_obs", n)
        terminated = self._check("terminated", terminated, "terminated", n)
        if self.state_dim is not None:
            if state is None or next_state is None:
                raise ValueError("state: this buffer stores states; pass state and next_state")
            state = self._check("state", state, "states", n)
            next_state = self._check("next_state", next_state, "next_states", n)
        elif state is not None or next_state is not None:
            raise ValueError("state: this buffer was built without state_dim")
        if n:
            self._write(obs, action, reward, next_obs, terminated, state, next_state)

    def _write(
        self,
        obs: Tensor,
        action: Tensor,
        reward: Tensor,
        next_obs: Tensor,
        terminated: Tensor,
        state: Tensor | None = None,
        next_state: Tensor | None = None,
    ) -> None:
        """Write a checked batch (``add``): the rows are one ``cat`` into their range."""
        n = obs.shape[0]
        floats = [obs, reward.unsqueeze(1), next_obs]
        if not self.discrete:
            floats.insert(1, action)
        if self.state_dim is not None:
            floats += [state, next_state]
        if n > self.capacity:  # only the last ``capacity`` are kept
            floats = [x[n - self.capacity :] for x in floats]
            terminated, action = terminated[n - self.capacity :], action[n - self.capacity :]
            n = self.capacity
        ptr, first = self._ptr, min(n, self.capacity - self._ptr)
        with torch.no_grad():
            if first == n:  # no wrap: the rows go straight into their range
                torch.cat(floats, 1, out=self._rows[ptr : ptr + n])
                self._terminated[ptr : ptr + n] = terminated
                if self._actions is not None:
                    self._actions[ptr : ptr + n] = action
            else:
                rows = torch.cat(floats, 1)
                for start, stop, lo in ((ptr, self.capacity, 0), (0, n - first, first)):
                    hi = lo + stop - start
                    self._rows[start:stop] = rows[lo:hi]
                    self._terminated[start:stop] = terminated[lo:hi]
                    if self._actions is not None:
                        self._actions[start:stop] = action[lo:hi]
        self._ptr = (ptr + n) % self.capacity
        self._size = min(self._size + n, self.capacity)

    def add_trajectory(self, trajectory: Trajectory) -> None:
        """Add every transition of a ``Trajectory`` (time-major order)."""
        if not isinstance(trajectory, Trajectory):
            raise TypeError(f"trajectory: expected a Trajectory, got {type(trajectory).__name__}")
        flat = trajectory.flatten()
        states = {}
        if self.state_dim is not None:
            if trajectory.states is None or trajectory.next_states is None:
                raise ValueError("trajectory: has no states/next_states for this buffer")
            states = {"state": flat["states"], "next_state": flat["next_states"]}
        self.add(
            flat["obs"],
            flat["actions"],
            flat["rewards"],
            flat["next_obs"],
            flat["terminated"],
            **states,
        )

    # ------------------------------------------------------------------ sampling
    def sample(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``batch_size`` transitions drawn uniformly with replacement from the stored ones.

        Returns a dict with keys ``obs, actions, rewards, next_obs, terminated`` (and ``states``,
        ``next_states``), each ``[batch_size, ...]`` on the buffer's device.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if self._size == 0:
            raise ValueError("batch_size: cannot sample from an empty ReplayBuffer")
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generator: expected a torch.Generator, got {type(generator)}")
            if generator.device.type != self.device.type:
                raise ValueError(
                    f"generator: is on {generator.device}, the buffer is on {self.device}"
                )
        idx = torch.randint(0, self._size, (batch_size,), generator=generator, device=self.device)
        actions = None if self._actions is None else self._actions.index_select(0, idx)
        return self._views(
            self._rows.index_select(0, idx), self._terminated.index_select(0, idx), actions
        )

    def data(self) -> dict[str, Tensor]:
        """The stored transitions, oldest first (views/copies ``[len, ...]``)."""
        if self.full:
            return {k: torch.roll(v, -self._ptr, 0) for k, v in self.storage.items()}
        return {k: v[: self._size] for k, v in self.storage.items()}

    def state_dict(self) -> dict[str, Any]:
        """``{"storage": {name: tensor [capacity, ...]}, "ptr": int, "size": int}`` (clones), for
        checkpoints that restore the exact ring (``save``/``load`` store only the data)."""
        return {
            "storage": {k: v.clone() for k, v in self.storage.items()},
            "ptr": self._ptr,
            "size": self._size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output (onto this buffer's device), checking its keys,
        shapes and dtypes against this buffer's configuration."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state: expected a mapping, got {type(state).__name__}")
        for key in ("storage", "ptr", "size"):
            if key not in state:
                raise ValueError(f"state: missing key {key!r}")
        ptr, size, storage = state["ptr"], state["size"], state["storage"]
        if not (isinstance(size, int) and 0 <= size <= self.capacity):
            raise ValueError(
                f"state['size']: expected an int in [0, {self.capacity}], got {size!r}"
            )
        if not (isinstance(ptr, int) and 0 <= ptr < self.capacity):
            raise ValueError(f"state['ptr']: expected an int in [0, {self.capacity}), got {ptr!r}")
        if not isinstance(storage, Mapping) or set(storage) != set(self.storage):
            got = sorted(storage) if isinstance(storage, Mapping) else type(storage).__name__
            raise ValueError(f"state['storage']: expected keys {sorted(self.storage)}, got {got}")
        for k, target in self.storage.items():
            x = storage[k]
            if not isinstance(x, Tensor) or x.shape != target.shape or x.dtype != target.dtype:
                desc = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(
                    f"state['storage'][{k!r}]: expected {target.dtype} {tuple(target.shape)}, "
                    f"got {desc}"
                )
        for k, target in self.storage.items():
            target.copy_(storage[k].detach())
        self._ptr, self._size = ptr, size

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the stored transitions (oldest first) and the configuration to ``path``
        atomically (``torch.save`` format). Returns the path."""
        payload: dict[str, Any] = {
            "format": _FORMAT,
            "capacity": self.capacity,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "discrete": self.discrete,
            "state_dim": self.state_dim,
            "dtype": str(self.dtype).removeprefix("torch."),
            "data": {k: v.detach().cpu() for k, v in self.data().items()},
        }
        return atomic_write(path, lambda f: torch.save(payload, f))

    @classmethod
    def load(
        cls, path: str | os.PathLike, device: str | torch.device | None = None
    ) -> ReplayBuffer:
        """Read a buffer written by ``save`` (onto ``device``, CPU by default), validating its
        configuration, keys, shapes and dtypes; errors name the file and the field."""
        p = check_path(path)
        if not p.is_file():
            raise FileNotFoundError(f"path: no such replay buffer file: {str(p)!r}")
        try:
            payload = torch.load(io.BytesIO(p.read_bytes()), map_location="cpu", weights_only=True)
        except Exception as e:  # truncated/corrupt archives raise many types
            raise ValueError(
                f"{p}: not a readable replay buffer file (truncated or corrupt?): "
                f"{type(e).__name__}: {e}"
            ) from e
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{p}: not a diffctl replay buffer (format tag missing or wrong)")
        keys = ("capacity", "obs_dim", "act_dim", "discrete", "state_dim", "dtype", "data")
        for key in keys:
            if key not in payload:
                raise ValueError(f"{p}: missing field {key!r}")
        dtype = getattr(torch, str(payload["dtype"]), None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"{p}: field 'dtype' is not a floating dtype: {payload['dtype']!r}")
        try:
            buf = cls(
                payload["capacity"],
                payload["obs_dim"],
                payload["act_dim"],
                device,
                payload["discrete"],
                state_dim=payload["state_dim"],
                dtype=dtype,
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"{p}: invalid configuration: {e}") from e
        data = payload["data"]
        if not isinstance(data, dict):
            raise ValueError(f"{p}: field 'data' is not a dict of tensors")
        n = None
        for key, target in buf.storage.items():
            if key not in data:
                raise ValueError(f"{p}: missing field 'data.{key}'")
            x = data[key]
            if not isinstance(x, Tensor) or x.dtype != target.dtype:
                got = x.dtype if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"{p}: field 'data.{key}' should be {target.dtype}, got {got}")
            n = x.shape[0] if (n is None and x.dim() > 0) else n
            if x.dim() == 0 or tuple(x.shape) != (n, *target.shape[1:]) or n > buf.capacity:
                raise ValueError(
                    f"{p}: field 'data.{key}' has shape {tuple(x.shape)}, expected "
                    f"[{n} <= {buf.capacity}, {', '.join(map(str, target.shape[1:]))}]"
                )
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                bad = int((~torch.isfinite(x.reshape(n, -1))).any(1).sum())
                raise ValueError(f"{p}: field 'data.{key}' has {bad} rows with NaN or inf")
        if n:
            d = {k: v.to(buf.device) for k, v in data.items() if k in buf.storage}
            states = (
                {"state": d["states"], "next_state": d["next_states"]}
                if buf.state_dim is not None
                else {}
            )
            buf.add(d["obs"], d["actions"], d["rewards"], d["next_obs"], d["terminated"], **states)
        return buf

    def __repr__(self) -> str:
        return (
            f"ReplayBuffer(len={self._size}, capacity={self.capacity}, obs_dim={self.obs_dim},"
            f" act_dim={self.act_dim}, discrete={self.discrete}, device={self.device})"
        )
