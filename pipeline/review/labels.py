"""reviews.jsonl: the people's labels, written by the review page and by `--import`, read by every stage.

Append-only, one durable line per decision: the line is fsynced before the page is told "saved", so a
killed server loses nothing. A reviewer who changes an answer appends a new line: the current label of a
(reviewer, item) is its latest *labelled* line; a skip is recorded (the queue resumes past it) but never
replaces a label. Several review servers may write one file, so appends hold a file lock (`filelock`).

Two kinds of line share the file: `task` (a kept task: valid instruction? appropriate input? correct
output? for one instance) and `pair` (a blind base-vs-student comparison of one evaluation task).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from pipeline.core.errors import InputFileError
from pipeline.core.jsonio import append_jsonl, describe_validation_error, iter_jsonl
from pipeline.run.layout import RunLayout

Status = Literal["labelled", "skipped"]
Rating = Literal["A", "B", "C", "D"]
Preference = Literal["first", "second", "tie"]
Side = Literal["base", "student"]

# The paper's A-D scale (Self-Instruct, section 5: human evaluation of the user-oriented tasks).
RATINGS: dict[str, str] = {
    "A": "correct and satisfying",
    "B": "acceptable, with minor flaws",
    "C": "responds, but with significant errors",
    "D": "irrelevant or invalid",
}
HUMAN_QUESTIONS = ("valid_instruction", "input_ok", "output_ok")


class TaskLabel(BaseModel):
    """One reviewer's decision on one kept task, judged on one instance as the paper did."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["task"] = "task"
    reviewer: str = Field(min_length=1)
    task_id: str = Field(min_length=1)
    task_digest: str = Field(description="hash of the task's text: a label holds only for that text")
    instance: int | None = Field(None, ge=0, description="index of the instance shown (None: not known)")
    status: Status = "labelled"
    valid_instruction: bool | None = None
    input_ok: bool | None = None
    output_ok: bool | None = None
    note: str = ""
    sample_seed: int | None = None
    source: str = Field("page", description="'page', or 'import:FILE' for labels made elsewhere")
    created_at: float = Field(default_factory=time.time)

    @property
    def labelled(self) -> bool:
        return self.status == "labelled"

    @property
    def all_valid(self) -> bool:
        return self.labelled and bool(self.valid_instruction and self.input_ok and self.output_ok)


class PairLabel(BaseModel):
    """One reviewer's blind comparison of two answers to one evaluation task.

    `first` (which model's answer was shown first) is written here by the server, never sent to the page.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["pair"] = "pair"
    reviewer: str = Field(min_length=1)
    eval_id: str = Field(description="digest of the evaluation's answers (pairs.eval_id)")
    eval_path: str = ""
    task_id: str
    pair_digest: str
    first: Side
    order_seed: int
    status: Status = "labelled"
    rating_first: Rating | None = None
    rating_second: Rating | None = None
    preference: Preference | None = None
    note: str = ""
    created_at: float = Field(default_factory=time.time)

    @property
    def labelled(self) -> bool:
        return self.status == "labelled"

    def rating_of(self, side: Side) -> Rating | None:
        return self.rating_first if side == self.first else self.rating_second

    @property
    def student_points(self) -> float | None:
        """1 if the student's answer was preferred, 1/2 for a tie, 0 if the base's; None when not rated."""
        if not self.labelled or self.preference is None:
            return None
        if self.preference == "tie":
            return 0.5
        preferred = self.first if self.preference == "first" else _other(self.first)
        return 1.0 if preferred == "student" else 0.0


def _other(side: Side) -> Side:
    return "student" if side == "base" else "base"


Label = Annotated[TaskLabel | PairLabel, Field(discriminator="kind")]
_LABEL = TypeAdapter(Label)


class ReviewStore:
    """The run's reviews.jsonl: durable appends under a lock, and the current labels."""

    def __init__(self, run_dir: str | Path):
        self.path = RunLayout(run_dir).reviews_path
        self._lock = FileLock(str(self.path) + ".lock")

    def append(self, labels: Iterable[TaskLabel | PairLabel]) -> int:
        """One durable write of `labels` (a kill leaves at most a torn last line, which readers skip)."""
        with self._lock:
            return append_jsonl(self.path, list(labels))

    def read(self) -> list[TaskLabel | PairLabel]:
        """Every line, in the order written; a missing file is no labels."""
        if not self.path.exists():
            return []
        out: list[TaskLabel | PairLabel] = []
        problems: list[str] = []
        for lineno, obj in iter_jsonl(self.path, skip_torn_tail=True):
            try:
                out.append(_LABEL.validate_python(obj))
            except ValidationError as exc:
                problems.extend(describe_validation_error(lineno, exc))
        if problems:
            raise InputFileError(str(self.path), problems)
        return out

    def task_labels(self) -> list[TaskLabel]:
        """The current label of each (reviewer, task): the latest labelled line; skips never replace one."""
        current: dict[tuple[str, str], TaskLabel] = {}
        for label in self.read():
            if isinstance(label, TaskLabel) and label.labelled:
                current[(label.reviewer, label.task_id)] = label
        return list(current.values())

    def pair_labels(self, eval_id: str | None = None) -> list[PairLabel]:
        """The current label of each (reviewer, eval, task), of one evaluation when `eval_id` is given."""
        current: dict[tuple[str, str, str], PairLabel] = {}
        for label in self.read():
            wanted = eval_id is None or getattr(label, "eval_id", None) == eval_id
            if isinstance(label, PairLabel) and label.labelled and wanted:
                current[(label.reviewer, label.eval_id, label.task_id)] = label
        return list(current.values())

    def seen(self, reviewer: str, kind: str, eval_id: str | None = None) -> set[str]:
        """Task ids this reviewer labelled or skipped (of one evaluation for pairs): where a queue resumes."""
        out: set[str] = set()
        for label in self.read():
            if label.kind != kind or label.reviewer != reviewer:
                continue
            if isinstance(label, PairLabel) and eval_id is not None and label.eval_id != eval_id:
                continue
            out.add(label.task_id)
        return out
