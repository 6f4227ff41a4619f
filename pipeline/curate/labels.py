"""Human labels of a run's tasks for the quality score: the people's current verdicts from the review
stage (`pipeline.review`: reviews.jsonl, written by `selfinstruct review` and its `--import`), one
boolean per task (fully valid on all three questions), only where the labelled text is the task's."""

from __future__ import annotations

from pathlib import Path

from pipeline.review.labels import ReviewStore
from pipeline.review.stats import current_verdicts
from pipeline.run.schemas import MachineTask


def human_labels(run_dir: str | Path, tasks: list[MachineTask]) -> dict[str, bool]:
    labels = ReviewStore(run_dir).task_labels()
    if not labels:
        return {}
    return {task_id: verdict.all_valid for task_id, verdict in current_verdicts(labels, tasks).items()}
