"""The run directory: where a generation run keeps everything, and how it survives a kill.

    config.yaml          the resolved configuration (a rerun must match it, see `config_differences`)
    machine_tasks.jsonl  kept tasks, append-only, ids "r{round:04d}-{k:04d}"
    rejected.jsonl       rejected candidates, append-only, each with a stable `candidate.key`
    state.json           the commit point: rounds done, RNG state, per-round figures (atomic)
    summary.json         counts, tokens, cost and time for people and the report (atomic)
    cache/               the teacher cache
    export/              exports

A round appends its records and then replaces state.json; only rounds recorded there count. Records
of a round that was appended but not committed are redone on resume (from the teacher cache) and
matched by id, so they are neither duplicated nor lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError

from pipeline.core.errors import UserError
from pipeline.core.jsonio import (
    iter_jsonl,
    load_models,
    repair_tail,
    write_json_atomic,
    write_text_atomic,
)
from pipeline.run.schemas import MachineTask, Rejection, TeacherIdentity

M = TypeVar("M", bound=BaseModel)

STATE_VERSION = 1
TASK_STAGES = ("instruction", "classify", "instance", "dedup")
"""Stages at which a whole candidate task is rejected (candidates = kept + these)."""


class RunState(BaseModel):
    """Everything needed to continue a run exactly where its last committed round ended."""

    version: int = STATE_VERSION
    rounds_done: int = 0
    kept_total: int = 0
    rng_state: list[Any] = Field(default_factory=list)
    fingerprints: dict[str, Any] = Field(default_factory=dict)
    teacher: TeacherIdentity | None = None
    rounds: list[dict[str, Any]] = Field(default_factory=list)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


def rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(state: Sequence[Any]) -> random.Random:
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class RunDir:
    """Paths and the crash-safe reads and writes of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.yaml"
        self.tasks_path = self.path / "machine_tasks.jsonl"
        self.rejected_path = self.path / "rejected.jsonl"
        self.state_path = self.path / "state.json"
        self.summary_path = self.path / "summary.json"
        self.cache_dir = self.path / "cache"
        self.lock_path = self.path / ".lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock for the whole run: two writers on one directory would interleave rounds.

        The kernel releases it when the process dies, so a killed run never leaves a stale lock.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        handle = self.lock_path.open("a+")
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"{self.path}: another `selfinstruct generate` is running on this run directory"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            handle.close()

    def repair(self) -> dict[str, int]:
        """Cut torn last lines (a kill mid-append) off the JSONL files; bytes removed per file."""
        return {p.name: repair_tail(p) for p in (self.tasks_path, self.rejected_path)}

    # -- state -------------------------------------------------------------------------------------
    def read_state(self) -> RunState | None:
        if not self.state_path.exists():
            return None
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            state = RunState.model_validate(data)
        except (json.JSONDecodeError, ValidationError) as exc:
            raise UserError(
                f"{self.state_path}: unreadable run state ({exc.__class__.__name__}): {exc}"
            ) from None
        if state.version != STATE_VERSION:
            raise UserError(
                f"{self.state_path}: state version {state.version}, this selfinstruct reads {STATE_VERSION}"
            )
        return state

    def write_state(self, state: RunState) -> None:
        state.updated_at = time.time()
        write_json_atomic(self.state_path, state.model_dump(mode="json"), indent=None)

    # -- records -----------------------------------------------------------------------------------
    def read_tasks(self) -> list[MachineTask]:
        """Every kept task on disk (a torn tail is skipped), validated."""
        return _read_models(self.tasks_path, MachineTask)

    def read_rejections(self) -> list[Rejection]:
        return _read_models(self.rejected_path, Rejection)

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

    # -- config ------------------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any] | None:
        if not self.config_path.exists():
            return None
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise UserError(f"{self.config_path}: unreadable stored config: {exc}") from None
        return data if isinstance(data, dict) else {}

    def write_config(self, text: str) -> None:
        write_text_atomic(self.config_path, text)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)


def _read_models(path: Path, model: type[M]) -> list[M]:
    if not path.exists():
        return []
    return [record for _, record in load_models(path, model, skip_torn_tail=True)]


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


def config_differences(old: dict[str, Any], new: dict[str, Any], free: Sequence[str]) -> list[str]:
    """The result-changing keys on which two resolved configs differ, as `key: old -> new` lines."""
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if _is_free(key, free):
            continue
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            out.append(f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}")
    return out


def fingerprint_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Input files whose content changed under the same config (the seeds file, a template)."""
    a, b = _flatten(old), _flatten(new)
    return [f"{key} (file content changed)" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def _add_counts(total: dict[str, int], part: dict[str, int]) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0) + value


def build_summary(
    state: RunState, *, method: str, seeds_path: str, seeds_count: int, teacher: TeacherIdentity | None
) -> dict[str, Any]:
    """summary.json from the committed rounds in the state (the shape the report reads)."""
    totals: dict[str, Any] = {
        "requests": 0,
        "cache_hits": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": None,
        "seconds": 0.0,
        "candidates": 0,
        "kept": 0,
    }
    by_reason: Counter[str] = Counter()
    by_stage: Counter[str] = Counter()
    classification: dict[str, int] = {}
    for row in state.rounds:
        for key in ("requests", "cache_hits", "prompt_tokens", "completion_tokens", "candidates", "kept"):
            totals[key] += int(row.get(key, 0))
        totals["seconds"] += float(row.get("seconds", 0.0))
        if row.get("cost") is not None:
            totals["cost"] = (totals["cost"] or 0.0) + float(row["cost"])
        by_reason.update(row.get("rejected", {}))
        by_stage.update(row.get("rejected_by_stage", {}))
        _add_counts(classification, row.get("classification", {}))
    totals["seconds"] = round(totals["seconds"], 3)
    if totals["cost"] is not None:
        totals["cost"] = round(totals["cost"], 6)
    totals["tokens_per_s"] = (
        round(totals["completion_tokens"] / totals["seconds"], 1) if totals["seconds"] > 0 else 0.0
    )
    totals["rejected_by_reason"] = dict(by_reason.most_common())
    totals["rejected_by_stage"] = dict(by_stage.most_common())
    totals["classification"] = classification
    ident = teacher or state.teacher
    return {
        "method": method,
        "teacher": ident.model_dump() if ident else {},
        "seeds": {"path": seeds_path, "count": seeds_count},
        "rounds": state.rounds,
        "totals": totals,
        "kept_total": state.kept_total,
        "updated_at": time.time(),
    }
