"""state.json: the commit point of a run. Only rounds recorded here count; see `pipeline.run.rundir`."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from pipeline.run.schemas import ConstrainedDecoding, TeacherIdentity

STATE_VERSION = 1


class RunState(BaseModel):
    """Everything needed to continue a run exactly where its last committed round ended.

    `rounds` holds one row per committed round as the generator builds it; `RunSummary` gives the
    typed view of those rows (`pipeline.run.summary.RoundRow`).
    """

    version: int = STATE_VERSION
    rounds_done: int = Field(0, ge=0)
    kept_total: int = Field(0, ge=0)
    rng_state: list[Any] = Field(default_factory=list)
    fingerprints: dict[str, Any] = Field(default_factory=dict)
    teacher: TeacherIdentity | None = None
    # decoding.constrained as it resolved for this run (None: not resolved yet, or a run from before)
    constrained: ConstrainedDecoding | None = None
    rounds: list[dict[str, Any]] = Field(default_factory=list)
    # Entries in cache/teacher.jsonl when the last round committed: later ones were paid for in a round
    # that never committed, and count as paid when a resumed run gets them from the cache.
    cache_entries_counted: int | None = None
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
