"""Atomic file writes shared by the replay buffer, the dataset I/O and every checkpoint.

The temporary file is ``.<name>.<pid>.<random>.tmp`` beside the target: removed on every
exception (``KeyboardInterrupt`` and a SIGTERM turned into an exception included), and a
process killed outright (SIGKILL, power loss) leaves one that the next write to the same
target removes, since its process id no longer runs.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "check_path", "remove_stale_temps", "content_digest"]


def content_digest(obj: object) -> str:
    """SHA-256 (hex) of a nested structure of dicts, lists, tuples, tensors, numpy arrays and
    plain values, in a canonical order: the checksum a checkpoint or dataset keeps of its
    content, so flipped bytes in a file are found on loading."""
    import hashlib
    import sys

    torch = sys.modules.get("torch")  # a tensor means torch is imported already
    h = hashlib.sha256()

    def walk(x: object) -> None:
        import numpy as np

        if isinstance(x, dict):
            h.update(b"d%d" % len(x))
            for k in sorted(x, key=str):
                walk(str(k))
                walk(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(b"l%d" % len(x))
            for v in x:
                walk(v)
        elif isinstance(x, np.ndarray):
            a = np.ascontiguousarray(x)
            h.update(f"a{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        elif torch is not None and isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"t{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif x is None or isinstance(x, (bool, int, float, str, bytes)):
            h.update(f"v{type(x).__name__}:{x!r};".encode())
        else:
            h.update(f"o{type(x).__name__}:{x!r};".encode())

    walk(obj)
    return h.hexdigest()


def check_path(path: object, name: str = "path") -> Path:
    """``path`` as a ``Path`` (``str`` or ``os.PathLike``), else ``TypeError`` naming it."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _pid_running(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there: assume it still runs
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left beside it (those whose
    process id no longer runs); returns what was removed."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[^.]+\.tmp$")
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_running(int(m.group(1))):
            try:
                os.unlink(parent / name)
                removed.append(parent / name)
            except OSError:
                pass
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through ``write(fileobj)`` into a temporary file beside ``path``, flush it to
    disk and rename it over ``path``, so a crash never leaves half a file. Returns the path."""
    path = check_path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"path: directory {str(parent)!r} does not exist")
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
