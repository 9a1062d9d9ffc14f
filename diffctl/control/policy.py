"""``MPCPolicy``: receding-horizon control with any planner, batched over the envs of a VecEnv."""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import torch
from torch import Tensor

from .base import Planner, PlanResult

__all__ = ["MPCPolicy"]


class MPCPolicy:
    """Receding-horizon controller: plan from the current true states, apply the first action.

    Args:
        planner: any ``Planner`` (``horizon``, ``plan(x0, warm_start)``), e.g. ``MPC``.
        horizon: planning horizon; ``None`` keeps the planner's. A different value makes a copy
            of a planner whose ``config`` dataclass has a ``horizon`` field.
        warm_start: start each solve from the previous plan shifted by one step (last action
            repeated); rows of envs that just reset start from zeros again.
        differentiable: plan with autograd enabled (default: under ``torch.no_grad``).

    The policy takes states, not observations (``needs_state = True``): ``act(state [N, nx])
    -> [N, nu]``; ``act(state, reset=mask)`` drops the warm start of the envs in ``mask``.
    ``step(venv)`` does one closed-loop step of a ``VecEnv`` (planning from ``venv.state`` and
    resetting the warm start of envs at step 0). ``history`` holds one dict per call
    (``solve_time`` seconds, ``converged`` fraction, mean ``iterations``); ``last_plan`` the last
    ``PlanResult``.
    """

    needs_state = True

    def __init__(
        self,
        planner: Planner,
        horizon: int | None = None,
        warm_start: bool = True,
        *,
        differentiable: bool = False,
    ) -> None:
        if not (hasattr(planner, "plan") and hasattr(planner, "horizon")):
            raise TypeError(
                f"planner: expected a Planner (horizon, plan), got {type(planner).__name__}"
            )
        if horizon is not None:
            if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
                raise ValueError(f"horizon: expected a positive int, got {horizon!r}")
            if horizon != planner.horizon:
                cfg = getattr(planner, "config", None)
                if not (dataclasses.is_dataclass(cfg) and hasattr(cfg, "horizon")):
                    raise ValueError(
                        f"horizon: {horizon} differs from the planner's {planner.horizon} and "
                        "the planner has no config with a horizon field to change"
                    )
                planner = copy.copy(planner)
                planner.config = dataclasses.replace(cfg, horizon=horizon)
        self.planner = planner
        self.warm_start = bool(warm_start)
        self.differentiable = bool(differentiable)
        self._prev: Tensor | None = None
        self.last_plan: PlanResult | None = None
        self.history: list[dict[str, Any]] = []

    @property
    def horizon(self) -> int:
        return self.planner.horizon

    def reset(self, mask: Tensor | None = None) -> None:
        """Forget the warm start of every env (``mask=None``) or of those in ``mask [N]``."""
        if mask is None or self._prev is None:
            self._prev = None
            return
        self._prev = torch.where(mask.view(1, -1, 1), torch.zeros_like(self._prev), self._prev)

    def act(self, state: Tensor, reset: Tensor | None = None) -> Tensor:
        """First planned action ``[N, nu]`` for states ``[N, nx]``."""
        if not isinstance(state, Tensor) or state.dim() != 2:
            raise ValueError(
                f"state: expected a tensor of shape [N, nx], got {getattr(state, 'shape', state)}"
            )
        if self._prev is not None and self._prev.shape[1] != state.shape[0]:
            self._prev = None  # a different batch: start afresh
        if reset is not None:
            self.reset(reset)
        warm = self._prev if self.warm_start else None
        t0 = time.perf_counter()
        with torch.set_grad_enabled(self.differentiable and torch.is_grad_enabled()):
            plan = self.planner.plan(state, warm_start=warm)
        conv, iters = torch.stack(
            [plan.converged.float().mean(), plan.iterations.float().mean()]
        ).tolist()  # one sync per control step (also makes the timing honest on a GPU)
        self.history.append(
            {
                "step": len(self.history),
                "solve_time": time.perf_counter() - t0,
                "converged": conv,
                "iterations": iters,
            }
        )
        self.last_plan = plan
        if self.warm_start:
            a = plan.actions.detach()
            self._prev = torch.cat([a[1:], a[-1:]], 0)  # shift by one step
        return plan.actions[0]

    __call__ = act

    def step(self, venv: Any) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        """One closed-loop step of ``venv`` (a ``VecEnv``): plan from ``venv.state``."""
        reset = venv.elapsed_steps == 0
        u = self.act(venv.state, reset=reset)
        return venv.step(u)

    def solve_time_per_step(self) -> float:
        """Mean wall time of a solve over ``history`` (seconds)."""
        if not self.history:
            return float("nan")
        return sum(h["solve_time"] for h in self.history) / len(self.history)
