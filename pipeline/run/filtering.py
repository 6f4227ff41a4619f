"""Filters that decide which kept tasks an export or a training run uses, one contract for all of them.

A judge's scores (`--min-score`, `--require-valid`, pipeline/run/judgments.py) and people's labels
(`--reviewed-only`, `--drop-rejected`, pipeline/review/filters.py) each say which tasks pass and why the
others did not; export and train apply every active filter in turn through `apply_filters`, and report
each one's counts under its own key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline.core.errors import UserError
from pipeline.run.schemas import MachineTask


class TaskFilter(Protocol):
    key: str  # where its counts go in export's info ("judge_filter", "review_filter")
    label: str  # how messages name it ("judge filter")

    @property
    def active(self) -> bool: ...

    def describe(self) -> str: ...

    def select(
        self, run_dir: str | Path, tasks: list[MachineTask]
    ) -> tuple[list[MachineTask], dict[str, int]]: ...


Filters = TaskFilter | Sequence[TaskFilter | None] | None


def active_filters(filters: Filters) -> list[TaskFilter]:
    """The active ones of one filter, several, or none."""
    if filters is None:
        return []
    many = filters if isinstance(filters, Sequence) else [filters]
    return [f for f in many if f is not None and f.active]


def apply_filters(
    run_dir: str | Path, tasks: list[MachineTask], filters: Filters
) -> tuple[list[MachineTask], dict[str, dict[str, Any]]]:
    """The tasks that pass every active filter, and each filter's counts (with its rule) by its key.

    A filter that leaves nothing is an error naming it and its reasons, not an empty export.
    """
    counts: dict[str, dict[str, Any]] = {}
    for keep in active_filters(filters):
        tasks, why = keep.select(run_dir, tasks)
        counts[keep.key] = {"rule": keep.describe(), **why}
        if not tasks:
            left = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in why.items() if k != "kept")
            raise UserError(f"{run_dir}: no task passes the {keep.label} ({keep.describe()}): {left}")
    return tasks, counts
