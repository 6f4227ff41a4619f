"""The run directory's writer: how a generation run keeps everything, and how it survives a kill.

The files are listed in `pipeline.run.layout`; `RunDir` extends the reader (`pipeline.run.reader.Run`)
with the writes. A round appends its records and then replaces state.json: that is the commit point,
and only rounds recorded there count. Records of a round that was appended but not committed are
redone on resume (from the teacher cache) and matched by id, so they are neither duplicated nor lost.
summary.json (`RunSummary`) is replaced after each commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.jsonio import iter_jsonl, repair_tail, write_json_atomic, write_text_atomic
from pipeline.core.locks import exclusive_lock
from pipeline.run.reader import Run
from pipeline.run.state import RunState
from pipeline.run.summary import RunSummary

TASK_STAGES = ("instruction", "classify", "instance", "dedup")
"""Stages at which a whole candidate task is rejected (candidates = kept + these)."""


def rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(state: Sequence[Any]) -> random.Random:
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class RunDir(Run):
    """The crash-safe writes of one run directory (the reads come from `Run`)."""

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock for the whole run: two writers on one directory would interleave rounds.

        The kernel releases it when the process dies, so a killed run never leaves a stale lock.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        busy = f"{self.path}: another `selfinstruct generate` is running on this run directory"
        with exclusive_lock(self.lock_path, busy):
            yield

    def repair(self) -> dict[str, int]:
        """Cut torn last lines (a kill mid-append) off the JSONL files; bytes removed per file."""
        return {p.name: repair_tail(p) for p in (self.tasks_path, self.rejected_path)}

    def write_state(self, state: RunState) -> None:
        """Replace state.json: the commit point of the rounds it records."""
        state.updated_at = time.time()
        write_json_atomic(self.state_path, state.model_dump(mode="json"), indent=None)

    def drop_uncommitted(self, rounds_done: int) -> None:
        """Rewrite both JSONL files without records of rounds after `rounds_done` (atomically)."""
        for path in (self.tasks_path, self.rejected_path):
            if not path.exists():
                continue
            kept = [
                json.dumps(obj, ensure_ascii=False) + "\n"
                for _, obj in iter_jsonl(path, skip_torn_tail=True)
                if int(obj.get("round", 0)) <= rounds_done
            ]
            write_text_atomic(path, "".join(kept))

    def write_config(self, text: str) -> None:
        write_text_atomic(self.config_path, text)

    def write_summary(self, summary: RunSummary) -> None:
        write_json_atomic(self.summary_path, summary.model_dump(mode="json"))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        if not data and prefix:
            out[prefix[:-1]] = {}
        return out
    return {prefix[:-1]: data}


def _is_free(key: str, free: Sequence[str]) -> bool:
    return any(key == f or key.startswith(f + ".") for f in free)


def config_differences(
    old: dict[str, Any], new: dict[str, Any], free: Sequence[str], defaults: dict[str, Any] | None = None
) -> list[str]:
    """The result-changing keys on which two resolved configs differ, as `key: old -> new` lines.

    A key the stored config lacks is a setting added to selfinstruct after the run was made: at its
    default it cannot have changed what the run did, so it is no difference (set to anything else, it is).
    """
    a, b, base = _flatten(old), _flatten(new), _flatten(defaults or {})
    out = []
    for key in sorted(set(a) | set(b)):
        if _is_free(key, free):
            continue
        if key not in a and key in base and b.get(key) == base[key]:
            continue
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            out.append(f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}")
    return out


def fingerprint_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Input files whose content changed under the same config (the seeds file, a template). A file the
    run did not record (a template added to selfinstruct later, for another method) is not compared."""
    a, b = _flatten(old), _flatten(new)
    return [f"{key} (file content changed)" for key in sorted(a) if a.get(key) != b.get(key)]
