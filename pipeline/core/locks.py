"""One writer per directory: an exclusive advisory lock that a killed process never leaves behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.core.errors import UserError


@contextlib.contextmanager
def exclusive_lock(path: Path, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (which then holds our pid) for the block; `UserError(busy)` if
    another process holds it. The kernel releases it when the process dies, so no lock goes stale."""
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(busy) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def lock_holder(path: Path) -> int | None:
    """The pid holding `exclusive_lock(path)` now (0 when it did not write one), or None when nobody does.

    Asked without taking the lock for longer than the test: a shared, non-blocking request that only
    a held exclusive lock refuses. Nothing is created when `path` does not exist.
    """
    if not path.is_file():
        return None
    with path.open("r") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None
