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
from pipeline.judge.config import JudgeConfig, judge_teacher_config
from pipeline.judge.parse import Preference, Unusable, read_preference
from pipeline.judge.prompts import load_template, pairwise_request
from pipeline.judge.stats import outcome_of, win_rate
from pipeline.run.judgments import judge_caution
from pipeline.teachers.base import Completion, Teacher

ORDERS = ("base_first", "student_first")
NO_COMPARISON = (
    "NO comparison of answer quality was made: `selfinstruct review RUN --pairwise EVAL_DIR` (people, blind) "
    "or `evaluate --judge`"
)
NO_JUDGE_NOTE = (
    "no comparison of answer quality was made: held-out loss, ROUGE-L and clean endings do not measure "
    "whether answers got better; compare them blind with `selfinstruct review RUN --pairwise EVAL_DIR` "
    "(people) or `evaluate --judge` (a judge model)"
)
OTHER_METRICS = "below: reference overlap, endings, loss (not quality)"


def student_points(order: str, winner: str) -> float:
    """The student's share of one verdict: 1 if its answer won, 1/2 for a tie, 0 if it lost."""
    if winner == "tie":
        return 0.5
    student_is_a = order == "student_first"
    return 1.0 if (winner == "A") == student_is_a else 0.0


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

    return {
        "judge": teacher.identity.model_dump(),
        "caution": judge_caution([teacher.identity.model]),
        "prompt_version": template.version,
        "tasks": len(rows),
        "judged": len(task_points),
        **win_rate(task_points, seed=config.seed),
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
    teacher = make_teacher(judge_teacher_config(config), Path(cache_dir) if cache_dir is not None else None)
    try:
        return compare(rows, teacher, config, quiet=quiet)
    finally:
        teacher.close()


def add_pairwise_rows(table: Any, report: dict[str, Any]) -> None:
    """Put the comparisons of answer quality first in evaluate's table (metric | base | student | change):
    the people's blind verdicts (`review --pairwise`, eval.json's `human`), then the judge's, then how much
    they agree. Without either, the first line says that no such comparison was made and how to make one.
    The rows after these are headed by what they do measure."""
    if "student" not in report.get("models", {}):
        return
    human, pairwise = report.get("human"), report.get("pairwise")
    if human:
        _result_rows(table, "people (blind)", human, f"{human['tasks']} tasks rated")
        base, student = (" / ".join(str(human["ratings"][s][r]) for r in "ABCD") for s in ("base", "student"))
        table.add_row("people: ratings A / B / C / D", base, student, "", end_section=not pairwise)
    if pairwise:
        _result_rows(
            table,
            f"judge ({pairwise['judge']['model']})",
            pairwise,
            f"{pairwise['judged']} of {pairwise['tasks']} judged",
        )
        table.caption = pairwise.get("caution")
    agreement = (human or {}).get("judge_agreement")
    if agreement:
        table.add_row(
            "judge agrees with people (win/tie/loss)",
            "",
            f"{agreement['agreement']:.0%} of {agreement['tasks']}",
            "kappa -" if agreement["kappa"] is None else f"kappa {agreement['kappa']:+.2f}",
            end_section=True,
        )
    if not human and not pairwise:
        table.add_row(f"[bold red]{NO_COMPARISON}[/bold red]", "", "", "", end_section=True)
        table.caption = NO_JUDGE_NOTE
    table.add_row(f"[dim]{OTHER_METRICS}[/dim]", "", "", "")


def _result_rows(table: Any, who: str, result: dict[str, Any], judged: str) -> None:
    rate, ci = result["win_rate"], result["ci95"]
    text = "-" if rate is None else f"{rate:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")
    table.add_row(f"{who}: student win rate, ties half", "", text, "")
    table.add_row(
        f"{who}: student win / tie / loss",
        "",
        f"{result['win']} / {result['tie']} / {result['loss']}",
        judged,
    )
