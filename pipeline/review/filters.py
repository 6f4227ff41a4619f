"""`--reviewed-only` and `--drop-rejected`: export and train on the people's word (a `TaskFilter`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.review.labels import ReviewStore
from pipeline.review.stats import current_verdicts
from pipeline.run.layout import REVIEWS_FILE
from pipeline.run.schemas import MachineTask


@dataclass(frozen=True)
class ReviewFilter:
    """reviewed_only: keep only tasks people marked valid on all three questions; drop_rejected: leave
    out the tasks people rejected (any question no) and keep every task nobody reviewed."""

    reviewed_only: bool = False
    drop_rejected: bool = False
    key: str = "review_filter"
    label: str = "review filter"

    @property
    def active(self) -> bool:
        return self.reviewed_only or self.drop_rejected

    def describe(self) -> str:
        if self.reviewed_only:
            return "reviewed by people and valid on all three questions"
        return "not rejected by people"

    def select(
        self, run_dir: str | Path, tasks: list[MachineTask]
    ) -> tuple[list[MachineTask], dict[str, int]]:
        store = ReviewStore(run_dir)
        labels = store.task_labels()
        if not labels:
            raise UserError(
                f"{run_dir}: the run has no {REVIEWS_FILE} task labels; review it first "
                f"(`selfinstruct review {run_dir}`, or `--import FILE`)"
            )
        verdicts = current_verdicts(labels, tasks)
        counts: Counter[str] = Counter()
        kept = []
        for task in tasks:
            verdict = verdicts.get(task.id)
            if verdict is None:
                counts["not_reviewed" if self.reviewed_only else "kept_unreviewed"] += 1
                if not self.reviewed_only:
                    kept.append(task)
            elif verdict.all_valid:
                counts["reviewed_valid"] += 1
                kept.append(task)
            else:
                counts["rejected_by_people"] += 1
        counts["kept"] = len(kept)
        return kept, dict(counts)


def review_filter(reviewed_only: bool, drop_rejected: bool) -> ReviewFilter:
    """The flags' filter; both at once is a contradiction the user should hear about."""
    if reviewed_only and drop_rejected:
        raise UserError(
            "--reviewed-only and --drop-rejected exclude each other: --reviewed-only already drops rejected tasks"
        )
    return ReviewFilter(reviewed_only=reviewed_only, drop_rejected=drop_rejected)
