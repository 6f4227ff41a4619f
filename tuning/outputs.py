"""Names in a training output folder and the atomic folder write that train and merge share.

Kept apart from tuning.train so that merge and evaluate need not import the trainer (no import cycle).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
MERGED = "merged"
META_FILE = "selfinstruct_tuning.json"


def save_dir_atomic(out_dir: Path, write: Callable[[Path], None]) -> None:
    """Write a folder through a temporary sibling and swap it in, so a kill never leaves half of it."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
