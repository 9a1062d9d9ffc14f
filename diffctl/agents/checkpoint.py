"""Agent files: ``save_checkpoint`` / ``load_checkpoint`` / ``load``.

An agent file holds the algorithm's name, the env's spec, the config, the networks' weights
and, for resuming, a ``train_state`` (``diffctl.agents.loop.TrainLoop``'s parts, loop variables
and history), with a checksum. Files are written atomically; a file of an earlier format is
refused with the version that wrote it.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from typing import Any

import torch

from diffctl.data import atomic_write, content_digest
from diffctl.envs import EnvSpec

from .agent import ALGORITHMS, Agent

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "load"]

CHECKPOINT_FORMAT = "diffctl.agents/2"
#: formats of earlier diffctl versions, which this one refuses with the reason
OLD_FORMATS = {
    "diffctl.agents/1": "diffctl before the agents were rewritten with autograd (other network "
    "and training-state layouts); retrain, or load it with that diffctl (git commit 9eb1716)",
}


def _config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"config: unknown fields {sorted(unknown)} for {cls.__name__}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _spec_to_dict(spec: EnvSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "extra"}


def save_checkpoint(
    path: str | os.PathLike, agent: Agent, train_state: dict[str, Any] | None = None
) -> None:
    """Write ``agent`` (and, for resuming, ``train_state``) to ``path`` atomically."""
    if not isinstance(agent, Agent):
        raise TypeError(f"agent: expected a diffctl Agent, got {type(agent).__name__}")
    path = os.fspath(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "algo": agent.algo,
        "spec": _spec_to_dict(agent.spec),
        "config": _config_to_dict(agent.config),
        "agent": agent.state_dict(),
        "train_state": train_state,
    }
    payload["checksum"] = content_digest(payload)  # checked on loading: flipped bytes refused
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device | None = None
) -> tuple[Agent, dict[str, Any] | None]:
    """Read a file written by ``save_checkpoint``: ``(agent, train_state or None)``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no agent file at {path!r}")
    try:
        payload = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"path: {path!r} is not a readable diffctl agent file ({e})") from e
    found = payload.get("format") if isinstance(payload, dict) else None
    if found in OLD_FORMATS:
        raise ValueError(
            f"path: {path!r} was written in agent file format {found}, by {OLD_FORMATS[found]}; "
            f"this diffctl reads {CHECKPOINT_FORMAT}"
        )
    if found != CHECKPOINT_FORMAT:
        raise ValueError(f"path: {path!r} is not a diffctl agent file ({CHECKPOINT_FORMAT})")
    for key in ("algo", "spec", "config", "agent", "train_state"):
        if key not in payload:
            raise ValueError(f"path: {path!r} lacks the {key!r} entry")
    if "checksum" in payload:  # files from before the checksum have none
        content = {k: v for k, v in payload.items() if k != "checksum"}
        if content_digest(content) != payload["checksum"]:
            raise ValueError(
                f"path: {path!r} fails its checksum: its content does not match the checksum "
                "saved with it (corrupt file)"
            )
    algo = payload["algo"]
    if algo not in ALGORITHMS:
        raise ValueError(f"path: unknown algorithm {algo!r} in {path!r}")
    module = importlib.import_module(f"diffctl.agents.{ALGORITHMS[algo]}")
    try:
        spec_d = dict(payload["spec"])
        spec_d["action_low"] = tuple(spec_d["action_low"])
        spec_d["action_high"] = tuple(spec_d["action_high"])
        spec = EnvSpec(**spec_d)
        config = _config_from_dict(module.CONFIG, payload["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"path: {path!r} holds an invalid spec or config ({e})") from e
    agent = module.make_agent(spec, config, seed=0)
    try:
        agent.load_state_dict(payload["agent"])
    except RuntimeError as e:
        raise ValueError(f"path: network weights in {path!r} do not fit the config ({e})") from e
    if map_location is not None:
        agent.to(map_location)
    return agent, payload["train_state"]


def load(path: str | os.PathLike, map_location: str | torch.device | None = None) -> Agent:
    """Load an agent saved with ``agent.save`` or a training checkpoint."""
    return load_checkpoint(path, map_location)[0]
