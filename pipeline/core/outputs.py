"""Checking an output location before the work: a bad `-o`/`--out`/`--run-dir` is one clear error up front.

A command that writes calls `check_output_file` or `check_output_dir` right after parsing its flags, so
that a path under /sys, /proc, a file, or an existing folder where a file is meant fails in a second
with exit 2, not after minutes of work with a traceback. Whether a folder takes new files is found the
only reliable way (permissions, read-only mounts and pseudo file systems all differ): a probe file is
created in the nearest existing folder and removed at once; nothing else is created, no folder either.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pipeline.core.errors import UserError


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _probe_writable(folder: Path, path: Path, flag: str) -> None:
    """Create and remove a probe file in `folder`: the one test every file system answers truly."""
    probe = folder / f".selfinstruct-probe-{secrets.token_hex(6)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"{flag} {path}: cannot write in {folder} ({reason})") from None
    os.close(fd)
    probe.unlink(missing_ok=True)


def _parent_folder(path: Path, flag: str) -> Path:
    """The nearest existing ancestor of `path`'s folder, which must be a folder (not a file)."""
    base = _nearest_existing(path.parent if str(path.parent) else Path("."))
    if not base.is_dir():
        raise UserError(f"{flag} {path}: {base} is a file, not a folder")
    return base


def check_output_file(path: str | Path, flag: str = "-o") -> Path:
    """`path` can be written as a file: it is not a folder and its folder exists or can be made."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file path")
    _probe_writable(_parent_folder(path, flag), path, flag)
    return path


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """`path` can hold files as a folder: it is a folder already or one can be made where it points."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file, not a folder")
    folder = path if path.is_dir() else _parent_folder(path, flag)
    _probe_writable(folder, path, flag)
    return path
