"""summary.json, typed: what a run did, for people, the report, export, tuning and the judge.

The generator builds it from the committed rounds in state.json (`RunSummary.from_state`) and writes
it with `RunDir.write_summary`; every reader gets it back validated from `Run.summary()`. Writer and
readers share these models, so a field cannot be renamed on one side only: an old or hand-edited
file fails to read with its file and field named, instead of being read back as zeros.

The file's keys are those the untyped summary always had; `totals.retries` is new (0 when absent).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from pipeline.run.schemas import ConstrainedDecoding, TeacherIdentity
from pipeline.run.state import RunState

Counts = dict[str, NonNegativeInt]
"""How many records per key (a reason code, a stage, a classification label), largest first."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReplicaUsage(_Strict):
    """One replica of an HTTP teacher: attempts sent to it, how many failed, and its concurrency limit
    (requests it may have open: adaptive, AIMD) at the end of the round."""

    requests: NonNegativeInt
    failures: NonNegativeInt
    concurrency: NonNegativeInt = 0


class TeacherUsage(_Strict):
    """The teacher's work and time: requests asked, answered from the cache, tokens, money, seconds.

    Tokens and cost cover what was paid for, once: calls that reached the teacher, and answers an
    earlier, killed invocation paid for in a round it never committed (`earlier_*` says how many of the
    tokens those are); `seconds` is time spent in teacher calls and `tokens_per_s` the completion
    tokens per such second. `replicas` (HTTP teachers only): per base URL. The `earlier_*` keys are
    written only when not 0.
    """

    requests: NonNegativeInt
    cache_hits: NonNegativeInt
    prompt_tokens: NonNegativeInt
    completion_tokens: NonNegativeInt
    cost: NonNegativeFloat | None
    seconds: NonNegativeFloat
    tokens_per_s: NonNegativeFloat
    retries: NonNegativeInt = 0
    earlier_prompt_tokens: NonNegativeInt = 0
    earlier_completion_tokens: NonNegativeInt = 0
    replicas: dict[str, ReplicaUsage] | None = None

    @model_serializer(mode="wrap")
    def _only_http_teachers_have_replicas(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if data.get("replicas") is None:
            data.pop("replicas", None)
        for key in ("earlier_prompt_tokens", "earlier_completion_tokens"):  # written only when not 0
            if not data.get(key):
                data.pop(key, None)
        return data


class RoundRow(TeacherUsage):
    """One committed round: the teacher's work, candidates and kept tasks, and why the rest went."""

    round: int = Field(ge=1)
    candidates: NonNegativeInt = Field(description="whole candidate tasks: kept + rejected at a task stage")
    kept: NonNegativeInt
    rejected: Counts = Field(description="rejection records per reason code")
    rejected_by_stage: Counts
    classification: Counts = Field(description="the classification step's answers per label")
    wall_s: NonNegativeFloat = Field(description="wall-clock seconds of the whole round")
    startup_s: NonNegativeFloat = Field(
        0.0,
        description="the first round of an invocation: seconds from the command's start to the round's "
        "(engine start, seeds, ROUGE-L index); 0 for the other rounds and for runs from before the field",
    )
    guessed_requests: NonNegativeInt = Field(
        0,
        exclude_if=lambda value: value == 0,
        description="overlapping rounds: requests of this round's opening asked during the previous "
        "round's tail, on a guess of its kept tasks (written only when not 0)",
    )
    guesses_used: NonNegativeInt = Field(
        0,
        exclude_if=lambda value: value == 0,
        description="how many of those the round's real opening asked too, and so used; the rest were "
        "teacher time spent on a wrong guess",
    )


class Totals(TeacherUsage):
    """The rounds added up; tokens per second recomputed from the summed tokens and seconds."""

    candidates: NonNegativeInt
    kept: NonNegativeInt
    rejected_by_reason: Counts
    rejected_by_stage: Counts
    classification: Counts

    @classmethod
    def of(cls, rows: Iterable[RoundRow]) -> Totals:
        rows = list(rows)
        seconds = round(sum(r.seconds for r in rows), 3)
        completion = sum(r.completion_tokens for r in rows)
        costs = [r.cost for r in rows if r.cost is not None]
        by_reason: Counter[str] = Counter()
        by_stage: Counter[str] = Counter()
        labels: Counter[str] = Counter()
        for row in rows:
            by_reason.update(row.rejected)
            by_stage.update(row.rejected_by_stage)
            labels.update(row.classification)
        replicas: dict[str, ReplicaUsage] = {}
        for row in rows:  # attempts and failures add up; the concurrency is the latest round's
            for url, used in (row.replicas or {}).items():
                before = replicas.get(url, ReplicaUsage(requests=0, failures=0))
                replicas[url] = ReplicaUsage(
                    requests=before.requests + used.requests,
                    failures=before.failures + used.failures,
                    concurrency=used.concurrency,
                )
        return cls(
            requests=sum(r.requests for r in rows),
            cache_hits=sum(r.cache_hits for r in rows),
            prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=completion,
            cost=round(sum(costs), 6) if costs else None,
            seconds=seconds,
            tokens_per_s=(
                round((completion - sum(r.earlier_completion_tokens for r in rows)) / seconds, 1)
                if seconds > 0
                else 0.0
            ),
            retries=sum(r.retries for r in rows),
            earlier_prompt_tokens=sum(r.earlier_prompt_tokens for r in rows),
            earlier_completion_tokens=sum(r.earlier_completion_tokens for r in rows),
            replicas=replicas or None,
            candidates=sum(r.candidates for r in rows),
            kept=sum(r.kept for r in rows),
            rejected_by_reason=dict(by_reason.most_common()),
            rejected_by_stage=dict(by_stage.most_common()),
            classification=dict(labels),
        )


class SeedsUsed(_Strict):
    """The seeds file as the generator resolved it, and how many seed tasks it held."""

    path: str
    count: NonNegativeInt


class RunSummary(_Strict):
    """The whole of summary.json."""

    method: str
    teacher: TeacherIdentity | None
    seeds: SeedsUsed
    rounds: list[RoundRow]
    totals: Totals
    kept_total: NonNegativeInt
    updated_at: float
    # Which decoding ran (None for a run from before `decoding.constrained`).
    constrained_decoding: ConstrainedDecoding | None = None

    @field_validator("teacher", mode="before")
    @classmethod
    def _no_teacher_yet(cls, value: Any) -> Any:
        # Summaries written before this model stored an unknown teacher as {}.
        return None if value == {} else value

    @classmethod
    def from_state(
        cls,
        state: RunState,
        *,
        method: str,
        seeds_path: str,
        seeds_count: int,
        teacher: TeacherIdentity | None,
    ) -> RunSummary:
        """The summary of the rounds committed in `state` (the generator writes it after each commit)."""
        rows = [RoundRow.model_validate(row) for row in state.rounds]
        return cls(
            method=method,
            teacher=teacher or state.teacher,
            seeds=SeedsUsed(path=seeds_path, count=seeds_count),
            rounds=rows,
            totals=Totals.of(rows),
            kept_total=state.kept_total,
            updated_at=time.time(),
            constrained_decoding=state.constrained,
        )
