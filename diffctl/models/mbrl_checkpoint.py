"""Checkpoints of the model-based loop (``diffctl.models.mbrl``), so that a long run resumes.

One file, written atomically after every episode, holds everything the rest of the run depends
on: the loop's settings, every real episode so far, the per-episode history, the state of the
generator that draws start states and random actions, and the last fitted model (a
``model_payload``, for ``refit="continue"`` and for the result). Every other random number of
the loop is seeded by the iteration number, so a resumed run equals an uninterrupted one bit for
bit. The file is a ``torch.save``d dict of plain values and tensors (loadable with
``weights_only=True``) with a ``content_digest`` checksum, like a model checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from typing import Any

import torch

from diffctl import __version__
from diffctl.data import Trajectory, atomic_write, content_digest

from .base import DynamicsModel
from .checkpoint import model_from_payload, model_payload

__all__ = ["LoopState", "save_loop_state", "load_loop_state", "FORMAT"]

FORMAT = "diffctl-mbrl"
FORMAT_VERSION = 1
_TRAJECTORY_FIELDS = [f.name for f in fields(Trajectory) if f.name != "extras"]


@dataclass
class LoopState:
    """Where a run of ``mbrl`` stands after an episode.

    Attributes:
        config: ``dataclasses.asdict`` of the run's ``MBRLConfig`` (JSON values).
        env: the env's registered name.
        iteration: the last finished iteration (0: only random episodes so far).
        episodes: the real episodes, one ``Trajectory`` of batch size 1 each.
        history: one dict per episode (``MBRLResult.history``).
        generator: state of the loop's generator (start states, random actions).
        model: the last fitted model (None before the first fit).
    """

    config: dict[str, Any]
    env: str
    iteration: int
    episodes: list[Trajectory]
    history: list[dict[str, Any]]
    generator: torch.Tensor
    model: DynamicsModel | None


def save_loop_state(path: str | os.PathLike, state: LoopState) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, then rename)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(state.config, sort_keys=True),
        "env": state.env,
        "iteration": state.iteration,
        "episodes": [
            {k: getattr(tr, k).cpu() for k in _TRAJECTORY_FIELDS if getattr(tr, k) is not None}
            for tr in state.episodes
        ],
        "history": json.dumps(state.history),
        "generator": state.generator.cpu(),
        "model": None if state.model is None else model_payload(state.model),
        "diffctl_version": __version__,
    }
    payload["checksum"] = content_digest(payload)
    atomic_write(path, lambda f: torch.save(payload, f))


def load_loop_state(
    path: str | os.PathLike, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> LoopState:
    """Read a file of ``save_loop_state``, its episodes and model moved to ``device`` (floating
    tensors to ``dtype`` when given). Errors name the file and what is wrong with it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such mbrl checkpoint {path!r}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ValueError(f"{path}: not a readable diffctl mbrl checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a diffctl mbrl checkpoint (format {found!r})")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: mbrl checkpoint version {ckpt.get('format_version')!r}; this diffctl "
            f"reads {FORMAT_VERSION}"
        )
    content = {k: v for k, v in ckpt.items() if k != "checksum"}
    if content_digest(content) != ckpt.get("checksum"):
        raise ValueError(
            f"{path}: checksum mismatch: the file's content does not match the checksum "
            "saved with it (corrupt file)"
        )

    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, dtype if dtype is not None and t.is_floating_point() else None)

    model = ckpt["model"]
    if model is not None:
        model = model_from_payload(model, path, map_location=None)
        model = model.to(device, dtype) if dtype is not None else model.to(device)
    return LoopState(
        config=json.loads(ckpt["config"]),
        env=ckpt["env"],
        iteration=int(ckpt["iteration"]),
        episodes=[Trajectory(**{k: move(v) for k, v in ep.items()}) for ep in ckpt["episodes"]],
        history=json.loads(ckpt["history"]),
        generator=ckpt["generator"],
        model=model,
    )
