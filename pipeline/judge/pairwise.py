"""Judging the student: base and student answers to the same tasks, compared pairwise by a judge.

Every task is asked twice, once with the base answer shown first and once with the student's, so a
judge that favours the first (or second) position cancels out instead of deciding the result. A task
scores the student's average over the two orders (win 1, tie 1/2, loss 0): over 1/2 it is a win,
exactly 1/2 a tie, below a loss. The win rate is the mean task score (AlpacaEval's reading: ties count
half), with a percentile bootstrap interval over tasks. A task counts only when both orders gave a
usable verdict; the others are reported as unjudged with the reason.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.core.console import make_progress
from pipeline.core.lines import line_tqdm
from pipeline.judge.calls import ask_each
from pipeline.judge.config import JudgeConfig
from pipeline.judge.parse import Preference, Unusable, read_preference
from pipeline.judge.prompts import load_template, pairwise_request
from pipeline.judge.stats import bootstrap_ci
from pipeline.run.judgments import judge_caution
from pipeline.teachers.base import Completion, Teacher

ORDERS = ("base_first", "student_first")
NO_JUDGE_NOTE = (
    "no judge: held-out loss, ROUGE-L and clean endings do not measure whether answers got better; "
    "run `evaluate --judge` for a pairwise comparison"
)


def student_points(order: str, winner: str) -> float:
    """The student's share of one verdict: 1 if its answer won, 1/2 for a tie, 0 if it lost."""
    if winner == "tie":
        return 0.5
    student_is_a = order == "student_first"
    return 1.0 if (winner == "A") == student_is_a else 0.0


def outcome_of(points: float) -> str:
    return "win" if points > 0.5 else "loss" if points < 0.5 else "tie"


def _verdict(reply: Completion | Unusable) -> Preference | Unusable:
    if isinstance(reply, Unusable):
        return reply
    return read_preference(reply.texts[0], reply.finish_reasons[0])


def compare(
    rows: list[dict[str, Any]], teacher: Teacher, config: JudgeConfig, *, quiet: bool = True
) -> dict[str, Any]:
    """Judge `rows` (evaluate's per-task records with `base` and `student` answers) in both orders.

    Each row gains a `judge` entry with both verdicts; the return value is the summary for eval.json.
    """
    template = load_template("pairwise", config.pairwise_template)
    requests = []
    for row in rows:
        base, student = row["base"]["answer"], row["student"]["answer"]
        for first, second in ((base, student), (student, base)):
            requests.append(
                pairwise_request(template, row["instruction"], row["input"], first, second, config)
            )
    start = teacher.usage.copy()
    if not quiet and not sys.stdout.isatty():  # a log: plain lines, not a bar
        lines = line_tqdm("evaluate: ", sys.stdout)(total=len(requests), desc="judge (both orders)")
        try:
            replies = ask_each(teacher, requests, lines.update)
        finally:
            lines.close()
    else:
        with make_progress(quiet=quiet) as progress:
            bar = progress.add_task("judge (both orders)", total=len(requests))
            replies = ask_each(teacher, requests, lambda k: progress.advance(bar, k))

    task_points: list[float] = []
    outcomes: Counter[str] = Counter()
    single: Counter[str] = Counter()
    first_won = decided = 0
    unusable: Counter[str] = Counter()
    for k, row in enumerate(rows):
        verdicts = {order: _verdict(replies[2 * k + j]) for j, order in enumerate(ORDERS)}
        entry: dict[str, Any] = {}
        for order, verdict in verdicts.items():
            if isinstance(verdict, Unusable):
                entry[order] = {"winner": None, "reason": str(verdict)}
                unusable[verdict.code] += 1
            else:
                entry[order] = {"winner": verdict.winner, "reason": verdict.reason, "parsed": verdict.parsed}
                single[outcome_of(student_points(order, verdict.winner))] += 1
                if verdict.winner != "tie":
                    decided += 1
                    first_won += verdict.winner == "A"
        if all(isinstance(v, Preference) for v in verdicts.values()):
            points = sum(student_points(o, v.winner) for o, v in verdicts.items()) / 2  # type: ignore[union-attr]
            entry["student_points"] = points
            entry["outcome"] = outcome_of(points)
            task_points.append(points)
            outcomes[entry["outcome"]] += 1
        row["judge"] = entry

    interval = bootstrap_ci(task_points, seed=config.seed)
    return {
        "judge": teacher.identity.model_dump(),
        "caution": judge_caution([teacher.identity.model]),
        "prompt_version": template.version,
        "tasks": len(rows),
        "judged": len(task_points),
        "win": outcomes.get("win", 0),
        "tie": outcomes.get("tie", 0),
        "loss": outcomes.get("loss", 0),
        "win_rate": sum(task_points) / len(task_points) if task_points else None,
        "ci95": list(interval) if interval is not None else None,
        "single_verdicts": {k: single.get(k, 0) for k in ("win", "tie", "loss")},
        "first_answer_preferred": first_won / decided if decided else None,
        "unusable_verdicts": dict(unusable.most_common()),
        "usage": teacher.usage.since(start).as_dict(),
    }


def judge_pairs(
    rows: list[dict[str, Any]],
    config: JudgeConfig,
    *,
    cache_dir: str | Path | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """`compare` with the configured judge, built here (cached under `cache_dir` when given) and closed."""
    from pipeline.judge.runner import with_context
    from pipeline.teachers import make_teacher
    from pipeline.teachers.preflight import check_reachable

    check_reachable(config.teacher, "judge")
    config = with_context(config)
    teacher = make_teacher(config.teacher, Path(cache_dir) if cache_dir is not None else None)
    try:
        return compare(rows, teacher, config, quiet=quiet)
    finally:
        teacher.close()


def add_pairwise_rows(table: Any, report: dict[str, Any]) -> None:
    """Put the judge's verdict first in evaluate's table (metric | base | student | change), or, without a
    judge, say in the caption what the other lines do not measure."""
    pairwise = report.get("pairwise")
    if "student" not in report.get("models", {}):
        return
    if not pairwise:
        table.caption = NO_JUDGE_NOTE
        return
    rate, ci = pairwise["win_rate"], pairwise["ci95"]
    text = "-" if rate is None else f"{rate:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")
    judge = pairwise["judge"]
    table.add_row(f"judge: student win rate, ties half ({judge['model']})", "", text, "")
    table.add_row(
        "judge: student win / tie / loss",
        "",
        f"{pairwise['win']} / {pairwise['tie']} / {pairwise['loss']}",
        f"{pairwise['judged']} of {pairwise['tasks']} judged",
        end_section=True,
    )
    table.caption = pairwise.get("caution")
