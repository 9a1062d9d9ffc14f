"""Gridworld and objectworld generators (the standard IRL test beds) with feature maps.

States are grid cells numbered row-major, ``s = row * size + col``. Moves that would leave the
grid keep the agent in place. With slip probability ``slip`` the executed move is drawn
uniformly from all actions instead of the intended one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .core import FiniteMDP

__all__ = ["MOVES", "grid_transitions", "gridworld", "objectworld", "grid_features"]

# (d_row, d_col) of the actions: up, right, down, left, stay
MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (0, 1), (1, 0), (0, -1), (0, 0))


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size: expected an int >= 2, got {size!r}")


def grid_transitions(
    size: int, slip: float, num_actions: int = 4, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Transition tensor ``P [S, A, S]`` of a ``size x size`` grid with ``num_actions`` of
    ``MOVES`` (4: the compass moves, 5: plus stay) and uniform slip."""
    _check_size(size)
    if not 0.0 <= slip <= 1.0:
        raise ValueError(f"slip: expected a probability in [0, 1], got {slip!r}")
    if num_actions not in (4, 5):
        raise ValueError(f"num_actions: expected 4 or 5, got {num_actions!r}")
    S = size * size
    rows = torch.arange(S) // size
    cols = torch.arange(S) % size
    move = torch.zeros(S, num_actions, S, dtype=dtype)  # deterministic effect of each move
    for a, (dr, dc) in enumerate(MOVES[:num_actions]):
        r2 = (rows + dr).clamp(0, size - 1)
        c2 = (cols + dc).clamp(0, size - 1)
        move[torch.arange(S), a, r2 * size + c2] = 1.0
    uniform = move.mean(dim=1, keepdim=True)  # slip: a uniformly random move
    return (1.0 - slip) * move + slip * uniform


def grid_features(size: int, kind: str = "onehot", dtype: torch.dtype = torch.float64) -> Tensor:
    """State features ``[S, F]`` of a grid: ``"onehot"`` (``F = S``) or ``"coords"``
    (normalised row and column plus a constant, ``F = 3``)."""
    _check_size(size)
    S = size * size
    if kind == "onehot":
        return torch.eye(S, dtype=dtype)
    if kind == "coords":
        idx = torch.arange(S)
        r = (idx // size).to(dtype) / (size - 1)
        c = (idx % size).to(dtype) / (size - 1)
        return torch.stack([r, c, torch.ones(S, dtype=dtype)], dim=-1)
    raise ValueError(f"kind: expected 'onehot' or 'coords', got {kind!r}")


def gridworld(
    size: int = 8,
    *,
    slip: float = 0.2,
    gamma: float = 0.9,
    reward_map: Tensor | None = None,
    num_actions: int = 4,
    features: str = "onehot",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> FiniteMDP:
    """A ``size x size`` gridworld with a state reward.

    Args:
        reward_map: reward of each cell ``[size, size]`` (received in that cell, for every
            action); default +1 in the bottom-right corner, 0 elsewhere.
        slip: probability that the executed move is uniformly random.
        features: ``"onehot"`` or ``"coords"`` (see ``grid_features``).

    Returns a ``FiniteMDP`` with ``R [S, A]``, a uniform start distribution and ``features``.
    """
    _check_size(size)
    P = grid_transitions(size, slip, num_actions, dtype)
    if reward_map is None:
        reward_map = torch.zeros(size, size, dtype=dtype)
        reward_map[-1, -1] = 1.0
    reward_map = torch.as_tensor(reward_map, dtype=dtype)
    if tuple(reward_map.shape) != (size, size):
        raise ValueError(
            f"reward_map: expected shape ({size}, {size}), got {tuple(reward_map.shape)}"
        )
    r_s = reward_map.reshape(-1)
    R = r_s[:, None].expand(-1, num_actions).clone()
    mdp = FiniteMDP(P, R, gamma, features=grid_features(size, features, dtype))
    return mdp.to(device) if device is not None else mdp


def objectworld(
    size: int = 10,
    *,
    num_objects: int = 15,
    num_colours: int = 2,
    slip: float = 0.3,
    gamma: float = 0.9,
    discrete_features: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> FiniteMDP:
    """Objectworld (Levine, Popovic and Koltun 2011): objects with an inner and an outer colour
    on a grid; 5 actions (4 moves and stay).

    Features: for every colour the Euclidean distance to the nearest object whose inner colour
    is it and to the nearest whose outer colour is it (``2 * num_colours`` continuous features),
    or with ``discrete_features`` the indicators ``distance <= d`` for ``d = 1..size``.
    True reward: +1 within distance 3 of outer colour 0 and distance 2 of outer colour 1;
    -1 within distance 3 of outer colour 0 only; 0 elsewhere.
    """
    _check_size(size)
    if num_colours < 2:
        raise ValueError(f"num_colours: expected >= 2, got {num_colours!r}")
    if num_objects < 1 or num_objects > size * size:
        raise ValueError(f"num_objects: expected 1..{size * size}, got {num_objects!r}")
    g = torch.Generator().manual_seed(seed)
    S = size * size
    cells = torch.randperm(S, generator=g)[:num_objects]
    inner = torch.randint(num_colours, (num_objects,), generator=g)
    outer = torch.randint(num_colours, (num_objects,), generator=g)
    idx = torch.arange(S)
    pos = torch.stack([idx // size, idx % size], -1).to(dtype)
    dist = torch.cdist(pos, pos[cells])  # [S, num_objects]
    big = torch.tensor(float(2 * size), dtype=dtype)
    feats = []
    for colour_of in (outer, inner):
        for c in range(num_colours):
            mask = colour_of == c
            d = dist[:, mask].min(-1).values if mask.any() else big.expand(S)
            feats.append(d)
    continuous = torch.stack(feats, -1)  # [S, 2C]; outer colours first
    d_outer0, d_outer1 = continuous[:, 0], continuous[:, 1]
    near0 = d_outer0 <= 3
    r_s = torch.where(near0 & (d_outer1 <= 2), 1.0, torch.where(near0, -1.0, 0.0)).to(dtype)
    if discrete_features:
        thresholds = torch.arange(1, size + 1, dtype=dtype)
        features = (continuous[:, :, None] <= thresholds).reshape(S, -1).to(dtype)
    else:
        features = continuous
    P = grid_transitions(size, slip, 5, dtype)
    R = r_s[:, None].expand(-1, 5).clone()
    mdp = FiniteMDP(P, R, gamma, features=features)
    return mdp.to(device) if device is not None else mdp
