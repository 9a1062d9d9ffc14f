"""Turning logged trajectories into validated transitions split into episodes.

``transitions_from`` accepts a ``diffctl.data.Trajectory``, a mapping with the same keys (tensors
or arrays, time-major ``[T, B, ...]`` or flat ``[N, ...]``) or a path to a dataset file written by
``diffctl.data.save_dataset``. It picks the modelled state (``states``/``next_states`` when
present, else ``obs``/``next_obs``), checks keys, dimensions and finiteness, and cuts the log
into episodes wherever an episode ended (``terminated | truncated``) or the next row does not
start where the previous one ended.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffctl.configs.models import SOURCES

__all__ = ["TransitionData", "transitions_from", "split_episodes", "SOURCES"]


@dataclass(frozen=True)
class TransitionData:
    """Flat transitions grouped into contiguous episodes.

    Attributes:
        x, u, x_next: ``[N, nx]``, ``[N, nu]``, ``[N, nx]``; rows of one episode are consecutive
            and in time order (``x_next[i] == x[i + 1]`` inside an episode).
        episode: int64 ``[N]`` episode index of each row (0 .. num_episodes - 1).
        step: int64 ``[N]`` position of each row inside its episode.
        lengths: int64 ``[num_episodes]`` transitions per episode.
    """

    x: Tensor
    u: Tensor
    x_next: Tensor
    episode: Tensor
    step: Tensor
    lengths: Tensor

    @property
    def num_episodes(self) -> int:
        return int(self.lengths.shape[0])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def select(self, episodes: Tensor) -> TransitionData:
        """The given episodes (int64 indices), renumbered ``0 .. len(episodes) - 1``."""
        episodes = torch.as_tensor(episodes, dtype=torch.long, device=self.x.device)
        remap = torch.full((self.num_episodes,), -1, dtype=torch.long, device=self.x.device)
        remap[episodes] = torch.arange(len(episodes), device=self.x.device)
        new_ep = remap[self.episode]
        keep = new_ep >= 0
        order = torch.argsort(new_ep[keep] * (int(self.lengths.max()) + 1) + self.step[keep])
        idx = keep.nonzero().squeeze(1)[order]
        return TransitionData(
            self.x[idx],
            self.u[idx],
            self.x_next[idx],
            new_ep[idx],
            self.step[idx],
            self.lengths[episodes],
        )

    def window_starts(self, horizon: int) -> Tensor:
        """Rows ``i`` whose ``horizon`` consecutive transitions stay in one episode: ``[M]``."""
        room = self.lengths[self.episode] - self.step
        return (room >= horizon).nonzero().squeeze(1)


def _load_path(path: str | os.PathLike) -> Any:
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset: no such file {os.fspath(path)!r}")
    from diffctl.data import load_dataset

    traj, _meta = load_dataset(path)
    return traj


def _as_mapping(dataset: Any) -> Mapping[str, Any]:
    if isinstance(dataset, Mapping):
        return dataset
    if hasattr(dataset, "obs") and hasattr(dataset, "actions"):  # a Trajectory
        keys = ("obs", "actions", "next_obs", "terminated", "truncated", "states", "next_states")
        return {k: getattr(dataset, k, None) for k in keys}
    raise TypeError(
        "dataset: expected a Trajectory, a mapping of arrays or a path to a dataset file, got "
        f"{type(dataset).__name__}"
    )


def _tensor(name: str, v: Any, device: torch.device, dtype: torch.dtype | None) -> Tensor:
    if isinstance(v, np.ndarray):
        v = torch.from_numpy(v)
    if not isinstance(v, Tensor):
        raise TypeError(f"dataset[{name!r}]: expected an array or tensor, got {type(v).__name__}")
    return v.to(device=device, dtype=dtype) if dtype is not None else v.to(device)


def _where(bad: Tensor, limit: int = 5) -> str:
    """``"(t=3, env=0), ..."`` for the first ``limit`` True entries of ``bad [T, B]``."""
    pos = bad.nonzero().tolist()
    text = ", ".join(f"(t={t}, env={b})" for t, b in pos[:limit])
    return text + (", ..." if len(pos) > limit else "")


def transitions_from(
    dataset: Any,
    *,
    state_dim: int | None = None,
    act_dim: int | None = None,
    source: str = "auto",
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> TransitionData:
    """Validated transitions of ``dataset`` (see module docstring).

    Args:
        dataset: ``Trajectory``, mapping or path.
        state_dim, act_dim: expected dimensions (a model's), checked when given.
        source: ``"states"``, ``"obs"`` or ``"auto"`` (states when present).
        device, dtype: where and in which dtype to return the tensors.
    """
    if source not in SOURCES:
        raise ValueError(f"source: expected one of {SOURCES}, got {source!r}")
    if isinstance(dataset, str | os.PathLike):
        dataset = _load_path(dataset)
    data = _as_mapping(dataset)
    device = torch.device("cpu") if device is None else torch.device(device)
    has_states = data.get("states") is not None and data.get("next_states") is not None
    if source == "auto":
        source = "states" if has_states else "obs"
    x_key, xn_key = ("states", "next_states") if source == "states" else ("obs", "next_obs")
    missing = [k for k in (x_key, "actions", xn_key) if data.get(k) is None]
    if missing:
        present = sorted(k for k, v in data.items() if v is not None)
        raise ValueError(
            f"dataset: missing key(s) {missing} (source={source!r}); present: {present}"
        )
    actions = _tensor("actions", data["actions"], device, None)
    if not actions.is_floating_point():
        raise TypeError(
            f"dataset['actions']: expected continuous (floating) actions, got {actions.dtype}; "
            "dynamics models need continuous actions (one-hot encode discrete ones)"
        )
    x = _tensor(x_key, data[x_key], device, dtype)
    xn = _tensor(xn_key, data[xn_key], device, dtype)
    u = actions.to(dtype)
    if x.dim() == 2:  # flat [N, dim]: one trajectory
        x, xn, u = x[:, None], xn[:, None], u[:, None]
    if x.dim() != 3:
        raise ValueError(
            f"dataset[{x_key!r}]: expected shape [T, B, nx] or [N, nx], got {tuple(x.shape)}"
        )
    T, B, nx = x.shape
    if xn.shape != x.shape:
        raise ValueError(
            f"dataset[{xn_key!r}]: expected shape {tuple(x.shape)}, got {tuple(xn.shape)}"
        )
    if u.dim() != 3 or u.shape[:2] != (T, B):
        raise ValueError(
            f"dataset['actions']: expected shape [{T}, {B}, act_dim], got {tuple(actions.shape)}"
        )
    nu = u.shape[2]
    if state_dim is not None and nx != state_dim:
        raise ValueError(
            f"dataset[{x_key!r}]: state dimension {nx} does not match the model's "
            f"state_dim={state_dim}"
        )
    if act_dim is not None and nu != act_dim:
        raise ValueError(
            f"dataset['actions']: action dimension {nu} does not match the model's "
            f"act_dim={act_dim}"
        )
    if T == 0 or B == 0:
        raise ValueError("dataset: contains no transitions")
    for name, v in ((x_key, x), ("actions", u), (xn_key, xn)):
        bad = ~torch.isfinite(v).all(-1)
        if bad.any():
            raise ValueError(
                f"dataset[{name!r}]: {int(bad.sum())} of {T * B} rows contain NaN or inf, at "
                f"{_where(bad)} (drop or repair them before fitting)"
            )
    done = torch.zeros(T, B, dtype=torch.bool, device=device)
    for k in ("terminated", "truncated"):
        if data.get(k) is not None:
            d = _tensor(k, data[k], device, None).to(torch.bool)
            if d.shape != (T, B):
                d = d.reshape(T, B) if d.numel() == T * B else None
                if d is None:
                    raise ValueError(f"dataset[{k!r}]: expected shape [{T}, {B}]")
            done = done | d
    # an episode also ends where the next row does not continue from this one
    cont = torch.isclose(xn[:-1], x[1:], rtol=1e-5, atol=1e-6).all(-1)
    brk = done.clone()
    brk[:-1] |= ~cont
    brk[-1] = True
    # column-major flattening: env b's rows in time order, then env b + 1
    flat = lambda v: v.transpose(0, 1).reshape(T * B, *v.shape[2:])  # noqa: E731
    xf, uf, xnf, bf = flat(x), flat(u), flat(xn), flat(brk)
    start = torch.ones_like(bf)
    start[1:] = bf[:-1]
    episode = torch.cumsum(start.long(), 0) - 1
    lengths = torch.bincount(episode)
    first = torch.cumsum(lengths, 0) - lengths
    step = torch.arange(T * B, device=device) - first[episode]
    return TransitionData(xf, uf, xnf, episode, step, lengths)


def split_episodes(
    data: TransitionData, val_fraction: float, generator: torch.Generator | None = None
) -> tuple[TransitionData, TransitionData | None]:
    """Random split by whole episodes: ``(train, val)`` (``val`` is None when the fraction is 0)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction: expected a value in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return data, None
    n = data.num_episodes
    n_val = max(1, round(val_fraction * n))
    if n - n_val < 1:
        raise ValueError(
            f"dataset: too little data for a validation split: {n} trajectory(ies) found, need "
            f"at least 2 (val_fraction={val_fraction}); log more episodes or set val_fraction=0"
        )
    perm = torch.randperm(n, generator=generator).to(data.x.device)
    return data.select(perm[n_val:].sort().values), data.select(perm[:n_val].sort().values)
