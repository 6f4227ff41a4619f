"""judgments.jsonl: a judge's verdict on each kept task, and the readers every later stage uses.

The file is append-only (one durable write per judged batch). A task can have several lines: a
request that failed and was retried later, or a re-judge by another judge or prompt version. The
*current* judgment of a task is its last scored line: a failed request or an unusable reply never
hides a verdict, so when a newer judge's request fails the older judge's score still counts (and the
newer judge asks again next time). A task with no scored line shows its last line, so readers
(export, train, report) see why it has no score.

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
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="the judge settings that can change a verdict (decoding, seed, field limit); "
        "{} on lines written before they were recorded",
    )
    task_digest: str = Field(description="hash of the judged text: a verdict holds only for that text")
    sampled_instance: int | None = Field(
        None, description="the instance (0-based, a seeded draw) the paper-comparable answers are about"
    )
    sampled: dict[str, bool] | None = Field(
        None,
        description="the three answers about that one instance alone, as the paper's review asked them "
        "(None on lines written before they were asked)",
    )
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


def read_history(run_dir: str | Path) -> list[Judgment]:
    """Every line of judgments.jsonl in the order written; [] when the run was never judged."""
    path = judgments_path(run_dir)
    return load_models(path, Judgment, skip_torn_tail=True) if path.exists() else []


def current_judgments(history: Iterable[Judgment]) -> dict[str, Judgment]:
    """Each task's current judgment: its last scored line, else its last line (see the module doc)."""
    current: dict[str, Judgment] = {}
    for judgment in history:
        held = current.get(judgment.task_id)
        if judgment.scored or held is None or not held.scored:
            current[judgment.task_id] = judgment
    return current


def read_judgments(run_dir: str | Path) -> dict[str, Judgment]:
    """The current judgment of each task id; {} when the run was never judged."""
    return current_judgments(read_history(run_dir))


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
def one_instance_answers(judgment: Judgment, task: MachineTask) -> dict[str, bool] | None:
    """The paper-comparable answers of a scored judgment: about its one sampled instance (for a
    one-instance task the whole verdict is that); None for an older line that never asked."""
    if judgment.sampled is not None:
        return {q: bool(judgment.sampled.get(q)) for q in QUESTIONS}
    if len(task.instances) == 1:
        return {q: bool(getattr(judgment, q)) for q in QUESTIONS}
    return None


def paper_answers(judgment: Judgment, task: MachineTask) -> dict[str, bool]:
    """`one_instance_answers`, or for an older line the whole-task verdict it has (stricter, so its
    shares can only be lower); `judgment_figures` counts how many tasks are on one instance."""
    one = one_instance_answers(judgment, task)
    return one if one is not None else {q: bool(getattr(judgment, q)) for q in QUESTIONS}


def _shares(answers: list[dict[str, bool]]) -> tuple[dict[str, int], dict[str, float | None]]:
    """Yes counts and shares per question and for all three, over `answers`."""
    yes = {q: sum(a[q] for a in answers) for q in QUESTIONS}
    yes["all_valid"] = sum(all(a.values()) for a in answers)
    return yes, {k: (v / len(answers) if answers else None) for k, v in yes.items()}


def judgment_figures(
    tasks: list[MachineTask], judgments: dict[str, Judgment], lowest: int = 5
) -> dict[str, Any]:
    """The paper's table for this run (share of yes per question and all three, on one seeded random
    instance a task as the paper's review did; `shares_all_instances`: every instance right), the
    score histogram, the lowest-scored tasks, and which judge(s) gave the verdicts. Shares are over
    scored tasks."""
    by_id = {t.id: t for t in tasks}
    current = {
        tid: j for tid, j in judgments.items() if tid in by_id and j.task_digest == task_digest(by_id[tid])
    }
    scored = [j for j in current.values() if j.scored]
    n = len(scored)
    every = [{q: bool(getattr(j, q)) for q in QUESTIONS} for j in scored]
    one = [paper_answers(j, by_id[j.task_id]) for j in scored]
    sampled = sum(one_instance_answers(j, by_id[j.task_id]) is not None for j in scored)
    yes, shares = _shares(one)
    yes_all, shares_all = _shares(every)
    histogram = Counter(j.score for j in scored)
    judges = Counter(
        (j.judge.backend, j.judge.model, j.judge.fingerprint, j.prompt_version) for j in current.values()
    )
    decided = Counter((j.judge.backend, j.judge.model, j.prompt_version) for j in scored)
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
        "sampled": sampled,
        "yes_all_instances": yes_all,
        "shares_all_instances": shares_all,
        "paper": dict(PAPER_SHARES),
        "labels": dict(QUESTION_LABELS),
        "histogram": [{"score": s, "count": histogram.get(s, 0)} for s in SCORES],
        "mean_score": sum(j.score or 0 for j in scored) / n if n else None,
        "unscored_reasons": dict(unscored_reasons.most_common()),
        "judges": [
            {"backend": b, "model": m, "fingerprint": f, "prompt_version": v, "tasks": c}
            for (b, m, f, v), c in judges.most_common()
        ],
        "decided_by": [
            {"backend": b, "model": m, "prompt_version": v, "tasks": c}
            for (b, m, v), c in decided.most_common()
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
