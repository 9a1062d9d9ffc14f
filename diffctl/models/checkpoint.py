"""Model checkpoints: ``save_model`` (atomic, with metadata) and ``load_model`` (validated).

A checkpoint is a ``torch.save``d dict of plain values and tensors (loadable with
``weights_only=True``):

``format`` ("diffctl-model"), ``format_version``, ``kind`` (``linear|mlp|ensemble|greybox``),
``state_dim``, ``act_dim``, ``init_kwargs`` (architecture), ``normalizer`` (input/output
standardiser statistics, for reading; the same values are in the state dict), ``state_dict``,
``diffctl_version``, the caller's ``meta`` (JSON-like dict: env name, dataset, metrics, ...)
and (format version 2) ``checksum``: ``diffctl.data.content_digest`` of all the other fields,
so a file with flipped bytes is refused on loading.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from diffctl import __version__
from diffctl.data import atomic_write, content_digest

from .base import DynamicsModel, Standardizer
from .ensemble import EnsembleDynamics
from .greybox import GreyBoxModel
from .linear import LinearModel
from .mlp import MLPDynamics

__all__ = [
    "save_model",
    "load_model",
    "build_model",
    "model_payload",
    "model_from_payload",
    "MODEL_KINDS",
]

FORMAT = "diffctl-model"
FORMAT_VERSION = 2
MODEL_KINDS: dict[str, type[DynamicsModel]] = {
    "linear": LinearModel,
    "mlp": MLPDynamics,
    "ensemble": EnsembleDynamics,
    "greybox": GreyBoxModel,
}


def build_model(kind: str, **kwargs: Any) -> DynamicsModel:
    """Construct a model by kind name (``MODEL_KINDS``) from its ``init_kwargs``."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind: expected one of {sorted(MODEL_KINDS)}, got {kind!r}")
    if kind == "greybox":
        return GreyBoxModel.from_kwargs(**kwargs)
    return MODEL_KINDS[kind](**kwargs)


def _normalizer_stats(model: DynamicsModel) -> dict[str, dict[str, list[float]]]:
    return {
        name: {"mean": m.mean.tolist(), "std": m.std.tolist()}
        for name, m in model.named_modules()
        if isinstance(m, Standardizer)
    }


def model_payload(model: DynamicsModel, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict of ``model`` and ``meta`` (module docstring), checksum included:
    what ``save_model`` writes, and what larger checkpoints (the ``mbrl`` loop's) embed."""
    if not isinstance(model, DynamicsModel):
        raise TypeError(f"model: expected a DynamicsModel, got {type(model).__name__}")
    if model.kind not in MODEL_KINDS:
        raise ValueError(
            f"model: kind {model.kind!r} cannot be saved; known: {sorted(MODEL_KINDS)}"
        )
    if meta is not None and not isinstance(meta, Mapping):
        raise TypeError(f"meta: expected a mapping, got {type(meta).__name__}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "state_dim": model.state_dim,
        "act_dim": model.act_dim,
        "init_kwargs": model.init_kwargs(),
        "normalizer": _normalizer_stats(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "diffctl_version": __version__,
        "meta": dict(meta or {}),
    }
    payload["checksum"] = content_digest(payload)
    return payload


def save_model(
    path: str | os.PathLike, model: DynamicsModel, meta: Mapping[str, Any] | None = None
) -> None:
    """Write ``model`` and ``meta`` to ``path`` atomically (temporary file, then rename)."""
    payload = model_payload(model, meta)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path: folder {folder!r} does not exist")
    atomic_write(path, lambda f: torch.save(payload, f))


def _field(ckpt: Mapping[str, Any], name: str, types: type | tuple[type, ...], path: str) -> Any:
    if name not in ckpt:
        raise ValueError(f"{path}: checkpoint field {name!r} is missing")
    v = ckpt[name]
    if not isinstance(v, types) or isinstance(v, bool) and types is int:
        raise ValueError(
            f"{path}: checkpoint field {name!r} has type {type(v).__name__}, expected {types}"
        )
    return v


def load_model(
    path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> DynamicsModel:
    """Load a model saved by ``save_model``; its ``meta`` dict is attached as ``model.meta``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file and the
    field for a corrupt or inconsistent checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such model file {path!r}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ValueError(f"{path}: not a readable diffctl model checkpoint ({e})") from e
    return model_from_payload(ckpt, path, map_location)


def model_from_payload(
    ckpt: Any, path: str, map_location: str | torch.device | None = "cpu"
) -> DynamicsModel:
    """The model of a checkpoint dict (``model_payload``), validated field by field; errors
    name ``path`` (the file it came from) and the field."""
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(ckpt).__name__}")
    if ckpt.get("format") != FORMAT:
        raise ValueError(
            f"{path}: checkpoint field 'format' is {ckpt.get('format')!r}, expected {FORMAT!r}"
        )
    version = _field(ckpt, "format_version", int, path)
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint field 'format_version' is {version}; this diffctl "
            f"reads up to {FORMAT_VERSION}"
        )
    kind = _field(ckpt, "kind", str, path)
    if kind not in MODEL_KINDS:
        raise ValueError(
            f"{path}: checkpoint field 'kind' is {kind!r}, expected one of {sorted(MODEL_KINDS)}"
        )
    nx = _field(ckpt, "state_dim", int, path)
    nu = _field(ckpt, "act_dim", int, path)
    kwargs = _field(ckpt, "init_kwargs", dict, path)
    state = _field(ckpt, "state_dict", dict, path)
    meta = _field(ckpt, "meta", dict, path) if "meta" in ckpt else {}
    try:
        model = build_model(kind, **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{path}: checkpoint field 'init_kwargs' is invalid for {kind}: {e}"
        ) from e
    if (model.state_dim, model.act_dim) != (nx, nu):
        raise ValueError(
            f"{path}: checkpoint fields 'state_dim'/'act_dim' ({nx}, {nu}) disagree "
            f"with the model built from 'init_kwargs' ({model.state_dim}, "
            f"{model.act_dim})"
        )
    own = model.state_dict()
    if isinstance(model, EnsembleDynamics) and "elite_idx" not in state:  # saved before elites
        state = {**state, "elite_idx": own["elite_idx"]}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{path}: checkpoint field 'state_dict' is missing {missing} and has "
            f"unexpected {unexpected}"
        )
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or v.shape != own[k].shape:
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(
                f"{path}: checkpoint field 'state_dict.{k}' has shape {got}, "
                f"expected {tuple(own[k].shape)}"
            )
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ValueError(f"{path}: checkpoint field 'state_dict.{k}' contains NaN or inf")
    if version >= 2:
        checksum = _field(ckpt, "checksum", str, path)
        content = {k: v for k, v in ckpt.items() if k != "checksum"}
        if content_digest(content) != checksum:
            raise ValueError(
                f"{path}: checksum mismatch: the file's content does not match the checksum "
                "saved with it (corrupt file)"
            )
    model.load_state_dict(state)
    if map_location is not None:
        model.to(map_location)
    model.eval()
    model.meta = {**meta, "diffctl_version": ckpt.get("diffctl_version")}
    return model
