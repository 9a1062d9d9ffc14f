"""Tabular Q-learning (Watkins 1989) from a fixed list of transitions.

With ``lr = 1`` each update substitutes the right-hand side of the Bellman optimality equation
``Q(x, u) = r + gamma max_u' Q(x', u')`` into the left-hand side ("successive substitution" of
the lecture notes); repeated sweeps converge to the fixed point on the visited pairs because
the tabular Bellman operator is a gamma-contraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["QLearningResult", "q_learning"]


@dataclass
class QLearningResult:
    """Final table ``Q [S, A]``; ``tables`` holds the table after each sweep ``[sweeps, S, A]``;
    ``history`` one dict per sweep (``sweep``, ``max_change``)."""

    Q: Tensor
    tables: Tensor
    converged: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def _transition_arrays(
    transitions: Sequence[Sequence[Any]], num_states: int, num_actions: int
) -> tuple[list[int], list[int], list[float], list[int], list[bool]]:
    if len(transitions) == 0:
        raise ValueError("transitions: empty list; need at least one (s, a, r, s') tuple")
    s_l, a_l, r_l, s2_l, d_l = [], [], [], [], []
    for i, tr in enumerate(transitions):
        if len(tr) not in (4, 5):
            raise ValueError(
                f"transitions[{i}]: expected (s, a, r, s_next) or (s, a, r, s_next, done), "
                f"got {len(tr)} items"
            )
        s, a, r, s2 = (int(tr[0]), int(tr[1]), float(tr[2]), int(tr[3]))
        d = bool(tr[4]) if len(tr) == 5 else False
        if not (0 <= s < num_states and 0 <= s2 < num_states):
            raise ValueError(f"transitions[{i}]: state index outside [0, {num_states})")
        if not 0 <= a < num_actions:
            raise ValueError(f"transitions[{i}]: action index outside [0, {num_actions})")
        s_l.append(s)
        a_l.append(a)
        r_l.append(r)
        s2_l.append(s2)
        d_l.append(d)
    return s_l, a_l, r_l, s2_l, d_l


def q_learning(
    transitions: Sequence[Sequence[Any]],
    num_states: int,
    num_actions: int,
    gamma: float,
    *,
    lr: float = 1.0,
    sweeps: int = 100,
    tol: float = 0.0,
    Q0: Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> QLearningResult:
    """Sweep the transitions in order, ``sweeps`` times, applying
    ``Q(s,a) <- Q(s,a) + lr * (r + gamma * (1 - done) * max_a' Q(s',a') - Q(s,a))``.

    Args:
        transitions: list of ``(s, a, r, s_next)`` or ``(s, a, r, s_next, done)``.
        num_states, num_actions: table size.
        gamma: discount in ``(0, 1]``.
        lr: step size in ``(0, 1]``; 1 is plain successive substitution.
        sweeps: maximum number of passes over the list.
        tol: stop early once a sweep changes no entry by more than ``tol`` (0: run all sweeps).
        Q0: initial table ``[S, A]`` (default zeros).

    The updates within a sweep are sequential (Gauss-Seidel): a later transition sees the
    entries updated earlier in the same sweep.
    """
    for name, v in (("num_states", num_states), ("num_actions", num_actions), ("sweeps", sweeps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if not 0.0 < float(gamma) <= 1.0:
        raise ValueError(f"gamma: expected a value in (0, 1], got {gamma}")
    if not 0.0 < float(lr) <= 1.0:
        raise ValueError(f"lr: expected a value in (0, 1], got {lr}")
    s_l, a_l, r_l, s2_l, d_l = _transition_arrays(transitions, num_states, num_actions)
    if Q0 is None:
        Q = torch.zeros(num_states, num_actions, dtype=dtype)
    else:
        if tuple(Q0.shape) != (num_states, num_actions):
            raise ValueError(
                f"Q0: expected shape {(num_states, num_actions)}, got {tuple(Q0.shape)}"
            )
        Q = Q0.detach().clone().to(dtype)
    # a Python-float table: the updates are inherently sequential and scalar, so a nested list
    # avoids one tensor dispatch per transition
    table = Q.tolist()
    tables = []
    history: list[dict[str, Any]] = []
    converged = False
    for sweep in range(sweeps):
        max_change = 0.0
        for s, a, r, s2, d in zip(s_l, a_l, r_l, s2_l, d_l):
            target = r + (0.0 if d else gamma * max(table[s2]))
            change = lr * (target - table[s][a])
            table[s][a] += change
            max_change = max(max_change, abs(change))
        tables.append(torch.tensor(table, dtype=dtype))
        history.append({"sweep": sweep + 1, "max_change": max_change})
        if tol > 0 and max_change <= tol:
            converged = True
            break
    Q = tables[-1]
    return QLearningResult(Q=Q, tables=torch.stack(tables), converged=converged, history=history)
