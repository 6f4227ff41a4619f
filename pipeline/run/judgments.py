"""judgments.jsonl: a judge's verdict on each kept task, and the readers every later stage uses.

The file is append-only (one durable write per judged batch). A task can have several lines: a
request that failed and was retried later, or a re-judge by another judge or prompt version. The
*current* judgment of a task is its last line, so readers (export, train, report) see one verdict per
task, always from the latest judge that answered for it.

A judgment is one of three kinds: `scored` (the three questions, a 1-5 score and a reason),
`unscored` (the judge answered, but not with a usable verdict; `reason` says what was wrong), and
`failed` (the request itself failed; `judge` asks again next time).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from pipeline.core.errors import UserError
from pipeline.core.jsonio import append_jsonl, load_models
from pipeline.core.model import BUNDLED_ALIASES
from pipeline.run.layout import JUDGMENTS_FILE, RunLayout
from pipeline.run.schemas import MachineTask, TeacherIdentity

QUESTIONS = ("valid_instruction", "appropriate_input", "correct_output")
QUESTION_LABELS = {
    "valid_instruction": "instruction describes a valid task",
    "appropriate_input": "input is appropriate for the instruction",
    "correct_output": "output is a correct and acceptable response",
    "all_valid": "all three valid",
}
# Self-Instruct (Wang et al., 2023), Table 4: a hand review of 200 of their GPT-3 generated tasks.
PAPER_SHARES = {
    "valid_instruction": 0.92,
    "appropriate_input": 0.79,
    "correct_output": 0.58,
    "all_valid": 0.54,
}
SCORES = (1, 2, 3, 4, 5)

Status = Literal["scored", "unscored", "failed"]


class Judgment(BaseModel):
    """One line of judgments.jsonl."""

    task_id: str
    status: Status
    valid_instruction: bool | None = None
    appropriate_input: bool | None = None
    correct_output: bool | None = None
    score: int | None = Field(None, ge=1, le=5)
    reason: str = Field("", description="the judge's sentence when scored; what went wrong otherwise")
    judge: TeacherIdentity
    prompt_version: str
    task_digest: str = Field(description="hash of the judged text: a verdict holds only for that text")
    parsed: Literal["json", "tolerant"] | None = Field(None, description="how the reply was read")
    reply: str = Field("", description="the judge's raw reply (clipped) when it was not usable")
    created_at: float = Field(default_factory=time.time)

    @property
    def scored(self) -> bool:
        return self.status == "scored"

    @property
    def all_valid(self) -> bool:
        return self.scored and bool(self.valid_instruction and self.appropriate_input and self.correct_output)


def task_digest(task: MachineTask) -> str:
    """What the judge saw of a task; a task with the same id but other text is judged anew."""
    payload = [task.instruction, [[i.input, i.output] for i in task.instances]]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def judgments_path(run_dir: str | Path) -> Path:
    return RunLayout(run_dir).judgments_path


def read_judgments(run_dir: str | Path) -> dict[str, Judgment]:
    """The current (last) judgment of each task id; {} when the run was never judged."""
    path = judgments_path(run_dir)
    if not path.exists():
        return {}
    current: dict[str, Judgment] = {}
    for judgment in load_models(path, Judgment, skip_torn_tail=True):
        current[judgment.task_id] = judgment
    return current


def append_judgments(run_dir: str | Path, judgments: list[Judgment]) -> None:
    """One durable append: a kill leaves at most a torn last line, which readers skip."""
    append_jsonl(judgments_path(run_dir), judgments)


# -- filtering on the scores -----------------------------------------------------------------------
@dataclass(frozen=True)
class JudgeFilter:
    """`--min-score N` and `--require-valid`: which judged tasks a user keeps."""

    min_score: int | None = None
    require_valid: bool = False
    key: str = "judge_filter"
    label: str = "judge filter"

    def __post_init__(self) -> None:
        if self.min_score is not None and self.min_score not in SCORES:
            raise UserError(f"--min-score must be one of 1..5, got {self.min_score}")

    @property
    def active(self) -> bool:
        return self.min_score is not None or self.require_valid

    def describe(self) -> str:
        parts = []
        if self.min_score is not None:
            parts.append(f"score >= {self.min_score}")
        if self.require_valid:
            parts.append("all three questions yes")
        return " and ".join(parts)

    def select(
        self, run_dir: str | Path, tasks: list[MachineTask]
    ) -> tuple[list[MachineTask], dict[str, int]]:
        return select_tasks(run_dir, tasks, self)


def select_tasks(
    run_dir: str | Path, tasks: list[MachineTask], keep: JudgeFilter
) -> tuple[list[MachineTask], dict[str, int]]:
    """The tasks whose current judgment passes `keep`, and why the others did not.

    A task never judged, judged under other text, or left unscored cannot pass: a filter keeps only
    what a judge actually approved. Without any judgments a filter is an error, not an empty export.
    """
    if not keep.active:
        return tasks, {"kept": len(tasks)}
    judgments = read_judgments(run_dir)
    if not judgments:
        raise UserError(
            f"{run_dir}: the run has no {JUDGMENTS_FILE}; run `selfinstruct judge {run_dir}` before "
            "filtering with --min-score or --require-valid"
        )
    counts: Counter[str] = Counter()
    kept = []
    for task in tasks:
        judgment = judgments.get(task.id)
        if judgment is None or judgment.task_digest != task_digest(task):
            counts["not_judged"] += 1
        elif not judgment.scored:
            counts["unscored"] += 1
        elif keep.min_score is not None and (judgment.score or 0) < keep.min_score:
            counts["below_min_score"] += 1
        elif keep.require_valid and not judgment.all_valid:
            counts["not_all_valid"] += 1
        else:
            kept.append(task)
    counts["kept"] = len(kept)
    return kept, dict(counts)


# Measured with `bench/judge.py` (60 labelled tasks, half with a planted defect): the bundled model says
# yes to every question and scores everything alike, so its verdicts carry no information.
UNFIT_JUDGE_NOTE = (
    "The judge is the bundled SmolLM2-135M model, which cannot judge: on the labelled tasks of "
    "bench/judge.py it answers yes to every question and agrees with the labels no better than chance "
    "(Cohen's kappa 0). These figures say nothing about the data; judge it with a strong model "
    "(README: Which judge to use)."
)


def judge_caution(models: Iterable[str]) -> str | None:
    """A warning to show beside verdicts that came from the bundled model; None for any other judge."""
    return UNFIT_JUDGE_NOTE if any(model in BUNDLED_ALIASES for model in models) else None


# -- figures for the report and the dataset card ---------------------------------------------------
def judgment_figures(
    tasks: list[MachineTask], judgments: dict[str, Judgment], lowest: int = 5
) -> dict[str, Any]:
    """The paper's table for this run (share of yes per question and all three), the score histogram,
    the lowest-scored tasks, and which judge(s) gave the verdicts. Shares are over scored tasks."""
    by_id = {t.id: t for t in tasks}
    current = {
        tid: j for tid, j in judgments.items() if tid in by_id and j.task_digest == task_digest(by_id[tid])
    }
    scored = [j for j in current.values() if j.scored]
    n = len(scored)
    shares: dict[str, float | None] = {}
    yes: dict[str, int] = {}
    for question in QUESTIONS:
        yes[question] = sum(bool(getattr(j, question)) for j in scored)
    yes["all_valid"] = sum(j.all_valid for j in scored)
    for key, count in yes.items():
        shares[key] = count / n if n else None
    histogram = Counter(j.score for j in scored)
    judges = Counter(
        (j.judge.backend, j.judge.model, j.judge.fingerprint, j.prompt_version) for j in current.values()
    )
    order = sorted(scored, key=lambda j: (j.score or 0, j.task_id))[:lowest]
    statuses = Counter(j.status for j in current.values())
    unscored_reasons = Counter(j.reason.split(":")[0] for j in current.values() if j.status != "scored")
    return {
        "tasks": len(tasks),
        "judged": len(current),
        "scored": n,
        "unscored": statuses.get("unscored", 0),
        "failed": statuses.get("failed", 0),
        "not_judged": len(tasks) - len(current),
        "yes": yes,
        "shares": shares,
        "paper": dict(PAPER_SHARES),
        "labels": dict(QUESTION_LABELS),
        "histogram": [{"score": s, "count": histogram.get(s, 0)} for s in SCORES],
        "mean_score": sum(j.score or 0 for j in scored) / n if n else None,
        "unscored_reasons": dict(unscored_reasons.most_common()),
        "judges": [
            {"backend": b, "model": m, "fingerprint": f, "prompt_version": v, "tasks": c}
            for (b, m, f, v), c in judges.most_common()
        ],
        "caution": judge_caution(model for _, model, _, _ in judges),
        "lowest": [
            {
                "id": j.task_id,
                "score": j.score,
                "reason": j.reason,
                "answers": {q: getattr(j, q) for q in QUESTIONS},
                "instruction": by_id[j.task_id].instruction,
                "instances": [i.model_dump() for i in by_id[j.task_id].instances[:2]],
            }
            for j in order
        ],
    }
