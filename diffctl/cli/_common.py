"""What every ``diffctl`` subcommand shares: one-line errors, exit codes, output safety.

* ``run_command(name, argv, body)`` runs ``body()`` and turns every failure into one line
  ``diffctl <name>: error: ...`` on stderr: exit status 2 for a usage error (``UsageError``: a
  flag tyro/argparse rejected, a config field out of range, an output that exists or equals an
  input, a missing input file, ...), 1 for a failure while running (a corrupt or mismatched
  file, ...), 130 on Ctrl-C, 143 on SIGTERM, 129 on SIGHUP (both turned into an exception, so
  the temporary files of an atomic write are removed). A traceback is printed only with ``--debug``.
* ``parse(cls, argv, prog)`` is ``tyro.cli`` whose error box becomes one ``UsageError`` line.
* ``Outputs`` checks before any work that each output's folder exists and is writable, that no
  output exists (unless ``--overwrite``), is a folder, equals an input or another output.
* ``blame(flag)`` prefixes a failure inside it with the flag it is about.
* ``check_device(flag, value)`` refuses an unknown device or CUDA without CUDA.
* ``refuse_unused(config, unused)`` refuses a flag the run would silently ignore (a planner's
  settings with another planner, ...).

This module imports no torch at import time: ``diffctl --help`` and usage errors stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "UsageError",
    "ArgumentParser",
    "CommandError",
    "run_command",
    "parse",
    "Outputs",
    "blame",
    "check_device",
    "check_input",
    "raw_value",
    "refuse_unused",
]


class UsageError(ValueError):
    """A bad command line (exit status 2); a ``ValueError`` for library callers."""

    code = 2


class CommandError(ValueError):
    """A failure while running, already worded for the user (exit status 1)."""

    code = 1


class _Terminated(BaseException):
    """SIGTERM or SIGHUP (``args[0]``), raised in the main thread so ``finally`` blocks and
    temp-file cleanup run."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _message(e: BaseException) -> str:
    msg = _one_line(str(e))
    # torch's advice after a corrupt zip is several sentences long: the first one says it
    msg = re.sub(r"\s*This is an internal miniz error\..*?(\)?)$", r"\1", msg)
    if isinstance(e, (UsageError, CommandError, ValueError, TypeError)):
        return msg or type(e).__name__
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    if isinstance(e, (FileNotFoundError, OSError)) and msg:
        return msg
    return f"{type(e).__name__}: {msg} (run with --debug for a traceback)"


def run_command(name: str, argv: Sequence[str], body: Callable[[], int | None]) -> int:
    """Run ``body()`` as ``diffctl <name>``; returns the exit status (see the module doc)."""
    debug = "--debug" in argv
    prefix = f"diffctl {name}: error:"
    # SIGTERM (kill, a scheduler) and SIGHUP (terminal closed) become an exception in the main
    # thread, so every ``finally`` runs and an atomic write's temp file is removed
    signums = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    old_handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: Any) -> None:
            raise _Terminated(signum)

        for signum in signums:
            old_handlers[signum] = signal.signal(signum, on_signal)
    try:
        return int(body() or 0)
    except KeyboardInterrupt:
        print(f"{prefix} interrupted", file=sys.stderr)
        return 130
    except _Terminated as e:
        signum = e.args[0]
        print(f"{prefix} terminated ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except SystemExit as e:  # argparse, or a library calling sys.exit
        if e.code in (0, None):
            return 0
        if isinstance(e.code, int):
            return e.code
        print(f"{prefix} {_one_line(str(e.code))}", file=sys.stderr)  # sys.exit("why")
        return 1
    except Exception as e:  # noqa: BLE001 - every failure becomes one line
        if debug:
            traceback.print_exc()
        print(f"{prefix} {_message(e)}", file=sys.stderr)
        return int(getattr(e, "code", 1)) if isinstance(e, (UsageError, CommandError)) else 1
    finally:
        for signum, old in old_handlers.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)
        sys.stderr.flush()


_EDGE = "│╭╮╰╯─━┃|+-= \t"


def _tyro_message(text: str) -> str:
    """The message of tyro's error box (drawn with Unicode or ASCII edges) as one line: the
    lines after the title up to the first rule."""
    lines = [ln.strip("│┃| \t") for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return "bad arguments"
    body: list[str] = []
    for ln in lines[1:]:
        if ln.startswith(("Argument helptext", "For full helptext")):
            break
        if set(ln) <= set(_EDGE):  # a rule: under the title without a box, else the end
            if body:
                break
            continue
        body.append(ln)
    body = body or lines[:1]
    if body[0].startswith("Missing from"):  # the next lines name the required flags
        flags = [ln.split()[0] for ln in body[1:] if ln.startswith("--")]
        return f"missing required {', '.join(flags) or 'arguments'}"
    msg = _one_line(" ".join(body))
    # "Error parsing CollectConfig: episodes: ..." -> "episodes: ..." (a config's own check)
    return re.sub(r"^Error parsing [A-Za-z_][\w.]*: (?=[\w.-]+: )", "", msg)


def parse(cls: Any, argv: Sequence[str], prog: str, **kwargs: Any) -> Any:
    """``tyro.cli(cls, args=argv, prog=prog, **kwargs)``; ``--help`` raises ``SystemExit(0)``,
    a rejected flag or config field raises ``UsageError`` with one line naming it."""
    import tyro

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(cls, args=list(argv), prog=prog, **kwargs)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise UsageError(f"{_tyro_message(err.getvalue())} (see '{prog} --help')") from None
    except (ValueError, TypeError) as e:  # a field rejected by a config's __post_init__
        raise UsageError(_one_line(str(e))) from None


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose errors raise ``UsageError`` (one line) instead of printing usage."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{_one_line(message)} (see '{self.prog} --help')")


def raw_value(argv: Sequence[str], flag: str) -> str | None:
    """The last value given to ``flag`` on the command line as typed (``--out x`` or
    ``--out=x``), before tyro turns it into a ``Path`` (which drops a trailing ``/``)."""
    value = None
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(flag + "="):
            value = a[len(flag) + 1 :]
    return value


@contextlib.contextmanager
def blame(flag: str, usage: bool = False) -> Iterator[None]:
    """Re-raise a failure inside as a one-line error naming ``flag`` (``UsageError`` when
    ``usage``, else ``CommandError``); a message already naming the flag is kept as it is."""
    try:
        yield
    except (UsageError, CommandError):
        raise
    except Exception as e:  # noqa: BLE001 - reworded, never swallowed
        msg = _message(e) if not isinstance(e, KeyError) else f"missing entry {e}"
        msg = msg.replace(" (run with --debug for a traceback)", "")
        msg = re.sub(r"^(path|name|model|agent|env|resume): ", "", msg)
        if not msg.startswith(flag):
            msg = f"{flag}: {msg}"
        raise (UsageError if usage else CommandError)(msg) from e


def refuse_unused(config: Any, unused: dict[str, str], prefix: str = "") -> None:
    """Refuse a flag the command would silently ignore: ``unused`` maps each field of the
    ``config`` dataclass that has no effect in this run to why (``"unless --model greybox"``);
    such a field given a value other than its default raises ``UsageError`` naming the flag
    (for a nested config, its first changed field)."""
    import dataclasses

    defaults = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    for name, why in unused.items():
        value, base = getattr(config, name), defaults.get(name)
        if value == base:
            continue
        flag = f"--{prefix}{name}"
        if dataclasses.is_dataclass(value) and dataclasses.is_dataclass(base):
            changed = [
                f.name
                for f in dataclasses.fields(value)
                if getattr(value, f.name) != getattr(base, f.name)
            ]
            flag += f".{changed[0]}" if changed else ""
        raise UsageError(f"{flag.replace('_', '-')}: has no effect {why}")


def check_input(flag: str, path: str | os.PathLike | None) -> Path | None:
    """``path`` as a ``Path`` if it is a readable file, else ``UsageError`` naming ``flag``."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag}: {str(p)!r} is a folder, expected a file")
    if not p.is_file():
        raise UsageError(f"{flag}: no such file {str(p)!r}")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{flag}: {str(p)!r} is not readable")
    return p


def check_device(flag: str, value: str | None) -> None:
    """Refuse a device string torch cannot parse, or CUDA/MPS where it is unavailable."""
    if value is None:
        return
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"{flag}: cannot interpret {value!r} as a torch device") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{flag}: {value!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"{flag}: {value!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) exist"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"{flag}: {value!r} requested but MPS is not available")


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a) == os.path.abspath(b)


def _writable_dir(folder: Path) -> str | None:
    """``None`` if a file can be created in ``folder``, else why not (tried for real: the
    permission bits say nothing for root or on a read-only file system)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".diffctl-probe-", suffix=".tmp")
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(tmp)
    return None


class Outputs:
    """The files a command will write, checked before it starts working.

    ``add(flag, path)`` registers an output named by ``flag`` (``path`` may be a file beside
    the one the user named, e.g. ``<out>.json``); ``check(inputs)`` raises ``UsageError`` if an
    output's folder is missing or unwritable, an output is a folder, exists without
    ``overwrite``, equals one of ``inputs`` (``flag -> path``) or another output.
    """

    def __init__(self, overwrite: bool = False) -> None:
        self.overwrite = overwrite
        self.items: list[tuple[str, Path]] = []
        self.folders: list[tuple[str, str]] = []
        self.makedirs: set[Path] = set()

    def add(
        self, flag: str, path: str | os.PathLike, raw: str | None = None, makedirs: bool = False
    ) -> Path:
        """Register ``path``; ``raw`` is the value as typed (see ``raw_value``): one ending in
        ``/`` names a folder, which a file output refuses. With ``makedirs`` the command
        creates missing folders above ``path`` when it writes: the nearest existing one must
        then be writable."""
        p = Path(path)
        self.items.append((flag, p))
        if makedirs:
            self.makedirs.add(p)
        if raw is not None and raw.endswith(("/", os.sep)):
            self.folders.append((flag, raw))
        return p

    def check(self, inputs: dict[str, str | os.PathLike | None] | None = None) -> None:
        checked: set[str] = set()
        for flag, raw in self.folders:
            raise UsageError(f"{flag}: {raw!r} names a folder, expected a file name")
        for i, (flag, path) in enumerate(self.items):
            for other_flag, other in self.items[:i]:
                if _same(path, other):
                    raise UsageError(
                        f"{flag}: {str(path)!r} would be written twice (also as {other_flag}); "
                        "choose another name"
                    )
            for in_flag, in_path in (inputs or {}).items():
                if in_path is not None and _same(path, Path(in_path)):
                    raise UsageError(
                        f"{flag}: {str(path)!r} is also the input {in_flag}; an output never "
                        "replaces an input, choose another name"
                    )
            folder = path.parent
            if path in self.makedirs:
                while not folder.exists() and folder.parent != folder:
                    folder = folder.parent
            if not folder.is_dir():
                what = "is not a folder" if folder.exists() else "does not exist"
                raise UsageError(f"{flag}: folder {str(folder)!r} {what}")
            if path.is_dir():
                raise UsageError(f"{flag}: {str(path)!r} is a folder, expected a file name")
            if path.exists() and not self.overwrite:
                raise UsageError(f"{flag}: {str(path)!r} exists (pass --overwrite to replace it)")
            key = os.path.abspath(folder)
            if key not in checked:
                why = _writable_dir(folder)
                if why is not None:
                    raise UsageError(f"{flag}: cannot write in folder {str(folder)!r} ({why})")
                checked.add(key)

    def wrote(self, written: Sequence[str | os.PathLike] | None = None) -> str:
        """``"wrote a, b, c"`` for the files written (default: every registered output)."""
        paths = [str(p) for p in (written if written is not None else [p for _, p in self.items])]
        return "wrote " + ", ".join(paths)
