"""Datasets of logged trajectories: ``save_dataset`` / ``load_dataset`` in ``.npz``.

File layout (format ``diffctl.dataset/1``): one array per ``Trajectory`` field (``obs``,
``actions``, ``rewards``, ``next_obs``, ``terminated``, ``truncated``, optional ``states`` /
``next_states``, ``extras.<name>``), time-major ``[T, B, ...]``, plus ``__meta__``: a JSON string
with the caller's metadata and ``format``, ``diffctl_version``, ``created`` (UTC, ISO 8601;
``SOURCE_DATE_EPOCH`` when set, so that the same data gives the same bytes) and
``checksum`` (``content_digest`` of the arrays; checked on loading, on top of the zip CRCs).
Pickled objects are never written or read.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._io import atomic_write, check_path, content_digest
from .trajectory import Trajectory

__all__ = ["save_dataset", "load_dataset", "spec_to_dict"]

FORMAT = "diffctl.dataset/1"
_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")
_OPTIONAL = ("states", "next_states")
_EXTRA = "extras."
_META = "__meta__"


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """An ``EnvSpec`` (or any dataclass) as a JSON-ready dict (tuples become lists)."""
    if not dataclasses.is_dataclass(spec) or isinstance(spec, type):
        raise TypeError(f"spec: expected a dataclass instance, got {type(spec).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(spec), default=_json_default))


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (torch.dtype, torch.device, Path)):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _non_finite_report(name: str, x: np.ndarray) -> str | None:
    """``None`` if finite, else how many ``[t, b]`` rows hold NaN/inf and where the first is."""
    bad = ~np.isfinite(x.reshape(x.shape[0], x.shape[1], -1)).all(-1)
    if not bad.any():
        return None
    t, b = np.argwhere(bad)[0]
    return (
        f"field {name!r}: {int(bad.sum())} of {bad.size} rows contain NaN or inf "
        f"(first at t={t}, env={b})"
    )


def save_dataset(
    path: str | os.PathLike, trajectory: Trajectory, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``trajectory`` and ``meta`` to ``path`` (``.npz``) atomically.

    Args:
        path: destination file (its directory must exist); written as given (no suffix added).
        trajectory: the data; moved to the CPU and detached.
        meta: JSON-serialisable metadata, e.g. ``{"env": "pendulum", "spec": spec, "policy":
            "random", "seed": 0}`` (an ``EnvSpec`` value is stored as a dict). ``format``,
            ``diffctl_version`` and ``created`` are added.

    Raises:
        TypeError: ``trajectory`` is not a ``Trajectory`` or ``meta`` is not serialisable.
        ValueError: a field holds NaN or inf (naming the field, the number of rows and the
            first one).
    """
    from diffctl import __version__

    p = check_path(path)
    if not isinstance(trajectory, Trajectory):
        raise TypeError(f"trajectory: expected a Trajectory, got {type(trajectory).__name__}")
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta: expected a mapping, got {type(meta).__name__}")
    arrays: dict[str, np.ndarray] = {}
    tr = trajectory.detach().to("cpu")
    for name in (*_FIELDS, *_OPTIONAL):
        x = getattr(tr, name)
        if x is not None:
            arrays[name] = x.numpy()
    for key, x in tr.extras.items():
        arrays[_EXTRA + key] = x.numpy()
    for name, a in arrays.items():
        if np.issubdtype(a.dtype, np.floating) and (msg := _non_finite_report(name, a)):
            raise ValueError(f"trajectory: {msg}")
    full_meta = dict(meta)
    for key in ("format", "diffctl_version", "created", "checksum"):
        full_meta.pop(key, None)
    full_meta.update(
        format=FORMAT,
        diffctl_version=__version__,
        created=_created(),
        checksum=content_digest(arrays),
    )
    try:
        meta_json = json.dumps(full_meta, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"meta: not JSON serialisable: {e}") from e
    arrays[_META] = np.array(meta_json)
    return atomic_write(p, lambda f: _savez(f, arrays))


def _created() -> str:
    """Now (UTC, ISO 8601), or ``SOURCE_DATE_EPOCH`` when set (reproducible builds' variable),
    so the same data saved twice can be the same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = (
        _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc)
        if epoch and epoch.isdigit()
        else _dt.datetime.now(_dt.timezone.utc)
    )
    return now.isoformat(timespec="seconds")


def _savez(f: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` with a fixed date on every member (numpy stamps the current time), so the
    file's bytes depend on its content only (the save time is ``created`` in the metadata)."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)


def load_dataset(
    path: str | os.PathLike, device: str | torch.device | None = None
) -> tuple[Trajectory, dict[str, Any]]:
    """Read a dataset written by ``save_dataset``.

    Returns ``(trajectory, meta)`` with the trajectory on ``device`` (CPU by default).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated or corrupt, or a field is missing, has the wrong shape
            or dtype, or holds NaN/inf; the message names the file and the field.
    """
    p = check_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: no such dataset file: {str(p)!r}")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":  # every .npz is a zip archive
        what = "is empty" if not head else "does not start like an .npz (zip) archive"
        raise ValueError(f"{p}: not a diffctl dataset: the file {what}")
    try:
        archive = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        why = "it holds pickled objects" if "pickle" in str(e) else str(e)
        raise ValueError(f"{p}: not a readable .npz dataset (truncated or corrupt?): {why}") from e
    with archive:
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{p}: not an .npz archive (a bare .npy array?)")
        names = set(archive.files)

        def read(name: str) -> np.ndarray:
            try:
                return archive[name]
            except Exception as e:  # CRC errors, truncated members, pickled objects, ...
                raise ValueError(
                    f"{p}: field {name!r} is unreadable (truncated or corrupt?): "
                    f"{type(e).__name__}: {e}"
                ) from e

        if _META not in names:
            raise ValueError(f"{p}: missing field {_META!r} (not a diffctl dataset?)")
        try:
            meta = json.loads(str(read(_META)))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: field {_META!r} is not valid JSON: {e}") from e
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if fmt != FORMAT:
            raise ValueError(f"{p}: field {_META!r} has format {fmt!r}, expected {FORMAT!r}")
        for name in _FIELDS:
            if name not in names:
                raise ValueError(f"{p}: missing field {name!r}")
        arrays = {name: read(name) for name in (*_FIELDS, *_OPTIONAL) if name in names}
        extras = {n[len(_EXTRA) :]: read(n) for n in sorted(names) if n.startswith(_EXTRA)}
    for name, a in [*arrays.items(), *((_EXTRA + k, v) for k, v in extras.items())]:
        if a.dtype.kind not in "fiub":
            raise ValueError(f"{p}: field {name!r} has unsupported dtype {a.dtype}")
        if a.dtype.kind == "f" and a.ndim >= 2 and (msg := _non_finite_report(name, a)):
            raise ValueError(f"{p}: {msg}")
    try:
        tr = Trajectory(
            **{k: torch.from_numpy(v) for k, v in arrays.items()},
            extras={k: torch.from_numpy(v) for k, v in extras.items()},
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"{p}: {e}") from e
    if "checksum" in meta:  # datasets from before the checksum have none
        content = {**arrays, **{_EXTRA + k: v for k, v in extras.items()}}
        if content_digest(content) != meta["checksum"]:
            raise ValueError(
                f"{p}: checksum mismatch: the arrays do not match the checksum saved in "
                f"{_META!r} (corrupt file)"
            )
    if device is not None:
        tr = tr.to(device)
    return tr, meta
