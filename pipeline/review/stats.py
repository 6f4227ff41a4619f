"""The statistics of people's labels: the paper's table with Wilson intervals, agreement between people
and between people and each judge, the judge's min-score thresholds against the people's word, and the
blind pairwise result.

Kappa and the bootstrap interval come from `pipeline/judge/stats.py` (the same figures `evaluate --judge`
prints); the Wilson score interval is three lines of arithmetic, written here rather than pulling in scipy
or statsmodels for it.

A task reviewed by several people has one human verdict per question: the majority, a tie counting as no
(a reviewer's doubt is not overruled by a coin). Agreement between people is measured on the tasks they
both labelled, before any such merging.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from pipeline.core.jsonio import load_models
from pipeline.judge.stats import cohen_kappa, outcome_of, win_rate
from pipeline.review.labels import HUMAN_QUESTIONS, RATINGS, PairLabel, TaskLabel
from pipeline.run.judgments import PAPER_SHARES, Judgment, judge_caution, task_digest
from pipeline.run.layout import RunLayout
from pipeline.run.schemas import MachineTask

Z95 = 1.959963984540054
# The human question -> the judge's field for the same question.
JUDGE_FIELD = {
    "valid_instruction": "valid_instruction",
    "input_ok": "appropriate_input",
    "output_ok": "correct_output",
}
LABELS = {
    "valid_instruction": "instruction describes a valid task",
    "input_ok": "input is appropriate for the instruction",
    "output_ok": "output is a correct and acceptable response",
    "all_valid": "all three valid",
}
PAPER = {
    "valid_instruction": PAPER_SHARES["valid_instruction"],
    "input_ok": PAPER_SHARES["appropriate_input"],
    "output_ok": PAPER_SHARES["correct_output"],
    "all_valid": PAPER_SHARES["all_valid"],
}
KEYS = (*HUMAN_QUESTIONS, "all_valid")


def wilson(yes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion yes/n (None for n = 0)."""
    if n == 0:
        return None
    p = yes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class HumanVerdict:
    task_id: str
    task_digest: str
    answers: dict[str, bool]  # the three questions
    reviewers: int

    @property
    def all_valid(self) -> bool:
        return all(self.answers[q] for q in HUMAN_QUESTIONS)

    def get(self, key: str) -> bool:
        return self.all_valid if key == "all_valid" else self.answers[key]


def consensus(labels: list[TaskLabel]) -> dict[str, HumanVerdict]:
    """One verdict per task: each question's majority (a tie is no), over the labels of its latest text."""
    by_task: dict[str, list[TaskLabel]] = defaultdict(list)
    for label in labels:
        by_task[label.task_id].append(label)
    out = {}
    for task_id, group in by_task.items():
        latest = max(group, key=lambda lab: lab.created_at).task_digest
        group = [lab for lab in group if lab.task_digest == latest]
        answers = {q: 2 * sum(bool(getattr(lab, q)) for lab in group) > len(group) for q in HUMAN_QUESTIONS}
        out[task_id] = HumanVerdict(task_id, latest, answers, len(group))
    return out


def current_verdicts(labels: list[TaskLabel], tasks: list[MachineTask]) -> dict[str, HumanVerdict]:
    """The verdicts that still hold: for kept tasks of the run whose text is the one that was labelled."""
    digests = {t.id: task_digest(t) for t in tasks}
    return {tid: v for tid, v in consensus(labels).items() if digests.get(tid) == v.task_digest}


def paper_table(verdicts: dict[str, HumanVerdict]) -> dict[str, Any]:
    """The Self-Instruct paper's table from the people's labels: share of yes, its 95% Wilson interval."""
    n = len(verdicts)
    rows = []
    for key in KEYS:
        yes = sum(v.get(key) for v in verdicts.values())
        rows.append(
            {
                "key": key,
                "label": LABELS[key],
                "yes": yes,
                "n": n,
                "share": yes / n if n else None,
                "ci95": list(wilson(yes, n)) if n else None,
                "paper": PAPER[key],
            }
        )
    return {"tasks": n, "rows": rows}


def reviewer_agreement(labels: list[TaskLabel]) -> list[dict[str, Any]]:
    """Cohen's kappa and raw agreement per question for every pair of reviewers who share tasks."""
    by_reviewer: dict[str, dict[str, TaskLabel]] = defaultdict(dict)
    for label in labels:
        by_reviewer[label.reviewer][label.task_id] = label
    out = []
    for a, b in combinations(sorted(by_reviewer), 2):
        shared = sorted(
            tid
            for tid in set(by_reviewer[a]) & set(by_reviewer[b])
            if by_reviewer[a][tid].task_digest == by_reviewer[b][tid].task_digest
        )
        if not shared:
            continue
        questions = {}
        for key in KEYS:
            xs = [_answer(by_reviewer[a][t], key) for t in shared]
            ys = [_answer(by_reviewer[b][t], key) for t in shared]
            questions[key] = _agreement(xs, ys)
        out.append({"reviewers": [a, b], "tasks": len(shared), "questions": questions})
    return out


def _answer(label: TaskLabel, key: str) -> bool:
    return label.all_valid if key == "all_valid" else bool(getattr(label, key))


def _agreement(xs: list[Any], ys: list[Any]) -> dict[str, float | None]:
    same = sum(x == y for x, y in zip(xs, ys, strict=True))
    return {"agreement": same / len(xs) if xs else None, "kappa": cohen_kappa(xs, ys)}


def judges_of(run_dir: str | Path, tasks: list[MachineTask]) -> dict[tuple[str, ...], dict[str, Judgment]]:
    """Each judge (backend, model, fingerprint, prompt version) that scored the run: its latest scored
    verdict per task, for the task's current text only."""
    path = RunLayout(run_dir).judgments_path
    if not path.exists():
        return {}
    digests = {t.id: task_digest(t) for t in tasks}
    out: dict[tuple[str, ...], dict[str, Judgment]] = defaultdict(dict)
    for j in load_models(path, Judgment, skip_torn_tail=True):
        if j.scored and digests.get(j.task_id) == j.task_digest:
            out[(j.judge.backend, j.judge.model, j.judge.fingerprint, j.prompt_version)][j.task_id] = j
    return dict(out)


def judge_agreement(
    verdicts: dict[str, HumanVerdict],
    judges: dict[tuple[str, ...], dict[str, Judgment]],
    target_precision: float = 0.8,
) -> list[dict[str, Any]]:
    """For each judge: accuracy and kappa against the people per question, and its threshold table."""
    out = []
    for (backend, model, fingerprint, version), verdicts_of_judge in judges.items():
        shared = sorted(set(verdicts) & set(verdicts_of_judge))
        if not shared:
            continue
        questions = {}
        for key in KEYS:
            people = [verdicts[t].get(key) for t in shared]
            judge = [_judge_answer(verdicts_of_judge[t], key) for t in shared]
            row = _agreement(people, judge)
            questions[key] = {"accuracy": row["agreement"], "kappa": row["kappa"]}
        pairs = [(verdicts_of_judge[t].score or 0, verdicts[t].all_valid) for t in shared]
        out.append(
            {
                "judge": {
                    "backend": backend,
                    "model": model,
                    "fingerprint": fingerprint,
                    "prompt_version": version,
                },
                "caution": judge_caution([model]),
                "tasks": len(shared),
                "questions": questions,
                "thresholds": threshold_table(pairs, target_precision),
            }
        )
    return out


def _judge_answer(j: Judgment, key: str) -> bool:
    return j.all_valid if key == "all_valid" else bool(getattr(j, JUDGE_FIELD[key]))


def threshold_table(pairs: list[tuple[int, bool]], target_precision: float) -> dict[str, Any]:
    """For each --min-score 1..5: the share of tasks kept, and the precision and recall of the kept set
    against the people's all-valid; the smallest threshold reaching `target_precision`, if any."""
    n = len(pairs)
    good = sum(ok for _, ok in pairs)
    rows = []
    chosen = None
    for threshold in range(1, 6):
        kept = [ok for score, ok in pairs if score >= threshold]
        hits = sum(kept)
        precision = hits / len(kept) if kept else None
        rows.append(
            {
                "min_score": threshold,
                "kept": len(kept),
                "kept_share": len(kept) / n if n else None,
                "precision": precision,
                "recall": hits / good if good else None,
            }
        )
        if chosen is None and precision is not None and precision >= target_precision:
            chosen = threshold
    return {
        "target_precision": target_precision,
        "tasks": n,
        "all_valid": good,
        "rows": rows,
        "chosen": chosen,
    }


def pairwise_summary(labels: list[PairLabel], seed: int = 0) -> dict[str, Any]:
    """Win / tie / loss of the student, the win rate with ties half and its bootstrap interval (over tasks,
    a task's points averaged over its reviewers), and each model's A-D ratings."""
    points: dict[str, list[float]] = defaultdict(list)
    ratings: dict[str, Counter[str]] = {"base": Counter(), "student": Counter()}
    for label in labels:
        if label.student_points is not None:
            points[label.task_id].append(label.student_points)
        for side in ("base", "student"):
            rating = label.rating_of(side)  # type: ignore[arg-type]
            if rating is not None:
                ratings[side][rating] += 1
    per_task = {tid: sum(p) / len(p) for tid, p in sorted(points.items())}
    return {
        "reviewers": sorted({label.reviewer for label in labels}),
        "labels": len(labels),
        "tasks": len(per_task),
        **win_rate(list(per_task.values()), seed=seed),
        "ratings": {side: {r: ratings[side].get(r, 0) for r in RATINGS} for side in ratings},
        "outcomes": {tid: outcome_of(p) for tid, p in per_task.items()},
    }


def judge_pair_agreement(report: dict[str, Any], human: dict[str, Any]) -> dict[str, Any] | None:
    """Where `evaluate --judge` also compared the answers: on how many tasks the judge's outcome (win /
    tie / loss for the student) is the people's, and Cohen's kappa of the two."""
    judged = {
        str(row.get("id", k)): row["judge"]["outcome"]
        for k, row in enumerate(report.get("answers", []))
        if isinstance(row.get("judge"), dict) and row["judge"].get("outcome")
    }
    shared = sorted(set(judged) & set(human["outcomes"]))
    if not shared:
        return None
    people = [human["outcomes"][t] for t in shared]
    judge = [judged[t] for t in shared]
    return {"tasks": len(shared), **_agreement(people, judge)}
