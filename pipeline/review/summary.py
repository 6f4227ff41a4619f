"""`selfinstruct review RUN --summary`: everything people's labels say about a run, as one mapping.

The paper's table with Wilson intervals, agreement between reviewers, each judge against the people
(with its min-score threshold table), and the blind pairwise result of every evaluation reviewed. The
report, the dataset card and the command all read this one mapping.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.review.labels import PairLabel, ReviewStore
from pipeline.review.pairs import load_eval
from pipeline.review.stats import (
    current_verdicts,
    judge_agreement,
    judge_pair_agreement,
    judges_of,
    pairwise_summary,
    paper_table,
    reviewer_agreement,
)
from pipeline.run.judgments import task_digest
from pipeline.run.reader import Run


def review_summary(run_dir: str | Path, target_precision: float = 0.8) -> dict[str, Any]:
    """The people's figures for `run_dir` (empty tables where nobody has labelled anything yet)."""
    run = Run.open(run_dir)
    tasks = run.committed_tasks()
    store = ReviewStore(run_dir)
    digests = {t.id: task_digest(t) for t in tasks}
    labels = [lab for lab in store.task_labels() if digests.get(lab.task_id) == lab.task_digest]
    verdicts = current_verdicts(labels, tasks)
    return {
        "run": str(run_dir),
        "reviewers": sorted({lab.reviewer for lab in labels}),
        "labels": len(labels),
        "instances_shown": "one instance a task (the paper's protocol)",
        "table": paper_table(verdicts),
        "reviewer_agreement": reviewer_agreement(labels),
        "judges": judge_agreement(verdicts, judges_of(run_dir, tasks), target_precision),
        "target_precision": target_precision,
        "pairwise": pairwise_results(run.path, store.pair_labels()),
    }


def pairwise_results(run_dir: Path, labels: list[PairLabel]) -> list[dict[str, Any]]:
    """One entry per evaluation reviewed: where it is, the people's result, and the judge's beside it."""
    by_eval: dict[str, list[PairLabel]] = defaultdict(list)
    for label in labels:
        by_eval[label.eval_id].append(label)
    out = []
    for evaluation, group in by_eval.items():
        where = max(group, key=lambda lab: lab.created_at).eval_path
        summary = pairwise_summary(group, seed=group[0].order_seed)
        entry: dict[str, Any] = {"eval_id": evaluation, "eval_path": where, "human": summary, "judge": None}
        path = Path(where) if Path(where).is_absolute() else run_dir / where
        try:
            _, report = load_eval(path)
        except UserError:
            report = None
        if report is not None:
            entry["judge"] = _judge_part(report.get("pairwise"))
            entry["judge_agreement"] = judge_pair_agreement(report, summary)
        out.append(entry)
    return out


def _judge_part(pairwise: dict[str, Any] | None) -> dict[str, Any] | None:
    if not pairwise:
        return None
    keys = ("win", "tie", "loss", "win_rate", "ci95", "judged", "tasks", "caution")
    return {"model": pairwise["judge"]["model"], **{k: pairwise.get(k) for k in keys}}
