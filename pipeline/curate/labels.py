"""Human labels of a run's tasks, from a pluggable source.

A label says whether a person found a task fully valid: its instruction, the input and the output of
the one instance they judged. Sources are tried in order; the first that has labels for the run wins:
  1. the human-review stage's own reader (`pipeline.review`, issue 19), when that package is installed
     and exposes `read_labels(run_dir) -> {task_id: bool}`;
  2. `reviews.jsonl` in the run directory, or a file given with `--labels`, in the review import
     format: one JSON object a line with `task_id`, `valid_instruction`, `input_ok`, `output_ok`.
The last line of a task wins (a re-review overrides), like judgments.jsonl.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.jsonio import iter_jsonl

REVIEWS_FILE = "reviews.jsonl"
LABEL_FIELDS = ("valid_instruction", "input_ok", "output_ok")

LabelSource = Callable[[Path], "dict[str, bool] | None"]


def read_label_file(path: str | Path) -> dict[str, bool]:
    """{task_id: all three yes} from a file in the review import format; bad lines name line and field."""
    path = Path(path)
    labels: dict[str, bool] = {}
    for lineno, row in iter_jsonl(path, skip_torn_tail=True):
        if not isinstance(row, dict) or not isinstance(row.get("task_id"), str):
            raise UserError(f'{path}, line {lineno}, field "task_id": expected a task id string')
        answers = []
        for name in LABEL_FIELDS:
            value = row.get(name)
            if not isinstance(value, bool):
                raise UserError(f'{path}, line {lineno}, field "{name}": expected true or false')
            answers.append(value)
        labels[row["task_id"]] = all(answers)
    return labels


def _from_review_module(run_dir: Path) -> dict[str, bool] | None:
    try:
        module = importlib.import_module("pipeline.review")
    except ImportError:
        return None
    reader = getattr(module, "read_labels", None)
    return reader(run_dir) if callable(reader) else None


def _from_reviews_file(run_dir: Path) -> dict[str, bool] | None:
    path = run_dir / REVIEWS_FILE
    return read_label_file(path) if path.is_file() else None


SOURCES: list[tuple[str, LabelSource]] = [
    ("the review stage (pipeline.review)", _from_review_module),
    (REVIEWS_FILE, _from_reviews_file),
]


def human_labels(run_dir: str | Path, labels_file: str | Path | None = None) -> tuple[dict[str, bool], str]:
    """(labels, where they came from); ({}, "") when the run has none."""
    if labels_file is not None:
        return read_label_file(labels_file), str(labels_file)
    for name, source in SOURCES:
        found = source(Path(run_dir))
        if found:
            return found, name
    return {}, ""
