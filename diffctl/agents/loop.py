"""The training skeleton every agent shares: resume, one history record per iteration, the
callback and checkpoints.

An algorithm's ``train`` names the stateful parts of its run once (optimisers, generators,
normalisers, the replay buffer, the env runner: anything with ``state_dict`` /
``load_state_dict``, or a ``torch.Generator``) and passes its loop variables (observations,
counters) by name; ``TrainLoop`` saves and restores both the same way for every agent::

    loop = TrainLoop(agent, runner, {"optimizer": opt, "generator": gen, "runner": runner}, ...)
    state = loop.resume(resume, {"obs": obs, "iteration": 0})  # the saved values, or these
    obs, iteration = state["obs"], state["iteration"]
    while iteration < num_iterations:
        iteration += 1
        ...  # rollout, update
        if not loop.log(steps, iteration, losses, state={"obs": obs, "iteration": iteration},
                        last=iteration == num_iterations):
            break
    return loop.result()

A checkpoint is the agent file (``save_checkpoint``) with ``train_state = {"parts": {name:
state}, "state": {name: value}, "history": [...], "wall_time": s}``; resuming from it on the
CPU continues the uninterrupted run bit for bit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .agent import Agent, TrainResult
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["Callback", "TrainLoop"]

#: ``callback(record) -> bool | None``: called once per iteration with the history record;
#: returning ``False`` stops training after that iteration (the checkpoint is written first).
Callback = Callable[[dict[str, Any]], "bool | None"]


def _state_of(part: Any) -> Any:
    """What a checkpoint keeps of ``part``: a generator's state, ``state_dict()``, or ``None``
    (``None``, or a runner without state, such as a gymnasium adapter, which restarts from
    its reset)."""
    if isinstance(part, torch.Generator):
        return part.get_state()
    state_dict = getattr(part, "state_dict", None)
    return state_dict() if callable(state_dict) else None


def _restore(part: Any, state: Any) -> None:
    if state is None:
        return
    if isinstance(part, torch.Generator):
        part.set_state(state)
    else:
        part.load_state_dict(state)


class TrainLoop:
    """Resume, history, callback and checkpoints of one training run.

    Args:
        agent: the agent being trained (saved in every checkpoint).
        episodes: where ``log`` takes the episode statistics from (``episode_statistics(
            clear=True) -> {"mean_return", "count"}``): the env runner, or the algorithm's own
            counter; ``None`` for a loop that keeps its own history and calls ``save`` itself.
        parts: the run's stateful objects by name (``None`` entries allowed).
        checkpoint: file written every ``checkpoint_every`` iterations (0: only at the end),
            at the end, and when the callback stops the run.
        callback: ``callback(record)`` once per iteration; ``False`` stops the run.
    """

    def __init__(
        self,
        agent: Agent,
        episodes: Any,
        parts: Mapping[str, Any],
        *,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
        callback: Callback | None = None,
    ) -> None:
        if checkpoint_every < 0:
            raise ValueError(f"checkpoint_every: expected >= 0, got {checkpoint_every}")
        self.agent, self.episodes, self.parts = agent, episodes, dict(parts)
        self.checkpoint, self.checkpoint_every, self.callback = (
            checkpoint,
            checkpoint_every,
            callback,
        )
        self.history: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()

    @property
    def wall_time(self) -> float:
        """Seconds of training, those before a resume included."""
        return time.perf_counter() - self.t0

    def resume(self, path: str | os.PathLike | None, initial: Mapping[str, Any]) -> dict[str, Any]:
        """Restore the agent, the parts, the history and the clock from the checkpoint at
        ``path`` and return its loop variables (tensors moved to the agent's device); with
        ``path=None``, return ``initial`` as it is."""
        if path is None:
            return dict(initial)
        saved, ts = load_checkpoint(path, map_location=self.agent.device)
        where = os.fspath(path)
        if ts is None:
            raise ValueError(f"resume: {where!r} holds no training state")
        missing = [k for k in (*self.parts, *initial) if k not in {**ts["parts"], **ts["state"]}]
        if missing:
            raise ValueError(
                f"resume: {where!r} holds no {', '.join(map(repr, missing))} state "
                f"(written by another {saved.algo} configuration)"
            )
        self.agent.load_state_dict(saved.state_dict())
        for name, part in self.parts.items():
            _restore(part, ts["parts"][name])
        dev = self.agent.device
        state = {
            k: v.to(dev) if isinstance(v, Tensor) else v
            for k, v in ts["state"].items()
            if k in initial
        }
        self.history = list(ts["history"])
        self.t0 = time.perf_counter() - ts["wall_time"]
        return state

    def log(
        self,
        step: int,
        iteration: int,
        losses: Mapping[str, Tensor | float],
        *,
        state: Mapping[str, Any],
        last: bool,
    ) -> bool:
        """Append the history record of ``iteration`` (one host sync for the episode
        statistics and the losses), call the callback, checkpoint with the loop variables
        ``state`` when due; return whether training goes on."""
        stats = self.episodes.episode_statistics(clear=True)
        # tensors in one stack (a single device-to-host copy), Python numbers as they are
        names = [k for k, v in losses.items() if isinstance(v, Tensor)]
        values = (
            torch.stack([losses[k].detach().float().reshape(()) for k in names]).tolist()
            if names
            else []
        )
        numbers = {k: float(v) for k, v in losses.items() if not isinstance(v, Tensor)}
        record: dict[str, Any] = {
            "step": int(step),
            "iteration": int(iteration),
            "wall_time": self.wall_time,
            "mean_return": float(stats["mean_return"]),
            "episodes": int(stats["count"]),
            **dict(zip(names, values)),
            **numbers,
        }
        self.history.append(record)
        go_on = self.callback is None or self.callback(record) is not False
        periodic = self.checkpoint_every > 0 and iteration % self.checkpoint_every == 0
        if periodic or last or not go_on:
            self.save(state)
        return go_on

    def save(self, state: Mapping[str, Any]) -> None:
        """Write the checkpoint (when the loop has one): the agent, the parts, the loop
        variables ``state``, the history and the clock; ``resume`` reads it back."""
        if self.checkpoint is None:
            return
        train_state = {
            "parts": {name: _state_of(part) for name, part in self.parts.items()},
            "state": dict(state),
            "history": self.history,
            "wall_time": self.wall_time,
        }
        save_checkpoint(self.checkpoint, self.agent, train_state)

    def result(self) -> TrainResult:
        """The trained agent and the history."""
        return TrainResult(self.agent, self.history)
