"""Shared planner types: ``PlanResult`` and the ``Planner`` protocol.

Every planner minimises a cost over a horizon ``T`` from a batch of start states and returns a
``PlanResult`` with time-major tensors. ``MPCPolicy`` and the CLI only rely on this protocol.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["PlanResult", "Planner", "timed"]


@dataclass
class PlanResult:
    """Outcome of one planner call.

    Attributes:
        actions: planned controls ``[T, B, nu]``.
        states: predicted states ``[T + 1, B, nx]`` (``states[0]`` is ``x0``).
        cost: total planned cost per example ``[B]``.
        converged: per-example convergence mask ``[B]`` (bool).
        iterations: iterations used per example ``[B]`` (int64).
        info: planner-specific extras (line-search steps, residuals, ...).
        solve_time: wall time of the solve in seconds (NaN where a planner does not time
            itself); one control step of ``MPCPolicy`` costs one solve.
    """

    actions: Tensor
    states: Tensor
    cost: Tensor
    converged: Tensor
    iterations: Tensor
    info: dict[str, Any] = field(default_factory=dict)
    solve_time: float = math.nan


@runtime_checkable
class Planner(Protocol):
    """Anything with ``horizon`` and ``plan(x0, warm_start=None) -> PlanResult``.

    ``warm_start`` is an action sequence ``[T, B, nu]`` (typically the previous plan shifted
    by one step) used as the initial guess.
    """

    horizon: int

    def plan(self, x0: Tensor, warm_start: Tensor | None = None) -> PlanResult: ...


def timed(plan: Callable[..., PlanResult]) -> Callable[..., PlanResult]:
    """Decorate a planner's ``plan`` so that its result carries ``solve_time`` (host wall time;
    a planner that times itself, e.g. to synchronise a GPU first, keeps its own number)."""

    @functools.wraps(plan)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> PlanResult:
        t0 = time.perf_counter()
        result = plan(self, *args, **kwargs)
        if math.isnan(result.solve_time):
            result.solve_time = time.perf_counter() - t0
        return result

    return wrapper
