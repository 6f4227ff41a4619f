"""`selfinstruct review RUN --import FILE`: labels made elsewhere (a spreadsheet, another tool).

One JSON object a line: task_id, valid_instruction, input_ok, output_ok (true/false), reviewer, and
optionally instance (the 0-based index of the instance judged) and note. The whole file is checked
before anything is written; a problem names the file, the line and the field. Imported labels count
exactly like labels given in the page. A label already current for that reviewer and task (the same
answers and instance) is not written again, so importing a file twice changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from pipeline.core.jsonio import load_models
from pipeline.review.labels import HUMAN_QUESTIONS, ReviewStore, TaskLabel
from pipeline.run.judgments import task_digest
from pipeline.run.reader import Run
from pipeline.run.schemas import MachineTask


class ImportedLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(min_length=1)
    valid_instruction: StrictBool
    input_ok: StrictBool
    output_ok: StrictBool
    reviewer: str = Field(min_length=1)
    instance: int | None = Field(None, ge=0)
    note: str = ""


def import_labels(run_dir: str | Path, file: str | Path) -> dict[str, int]:
    """Check every line of `file` against the run, then append the new labels in one durable write."""
    tasks = {t.id: t for t in Run.open(run_dir).committed_tasks()}
    seen: dict[tuple[str, str], int] = {}

    def check(lineno: int, row: ImportedLabel) -> list[str]:
        problems = []
        task = tasks.get(row.task_id)
        if task is None:
            problems.append(
                f'line {lineno}, field "task_id": {row.task_id!r} is not a kept task of {run_dir}'
            )
        elif row.instance is not None and row.instance >= len(task.instances):
            problems.append(
                f'line {lineno}, field "instance": {row.instance} is out of range '
                f"(task {row.task_id} has {len(task.instances)} instance(s), numbered from 0)"
            )
        earlier = seen.setdefault((row.reviewer, row.task_id), lineno)
        if earlier != lineno:
            problems.append(
                f'line {lineno}, field "task_id": {row.reviewer!r} already labelled {row.task_id} on line {earlier}'
            )
        return problems

    rows = load_models(file, ImportedLabel, check)
    store = ReviewStore(run_dir)
    current = {(lab.reviewer, lab.task_id): lab for lab in store.task_labels()}
    source = f"import:{Path(file).name}"
    new = [
        label
        for row in rows
        if not _same(current.get((row.reviewer, row.task_id)), row, tasks[row.task_id])
        for label in [_label(row, tasks[row.task_id], source)]
    ]
    store.append(new)
    return {"lines": len(rows), "imported": len(new), "already_present": len(rows) - len(new)}


def _label(row: ImportedLabel, task: MachineTask, source: str) -> TaskLabel:
    return TaskLabel(
        reviewer=row.reviewer,
        task_id=row.task_id,
        task_digest=task_digest(task),
        instance=row.instance,
        valid_instruction=row.valid_instruction,
        input_ok=row.input_ok,
        output_ok=row.output_ok,
        note=row.note,
        source=source,
    )


def _same(label: TaskLabel | None, row: ImportedLabel, task: MachineTask) -> bool:
    if label is None or label.task_digest != task_digest(task) or label.instance != row.instance:
        return False
    return all(getattr(label, q) == getattr(row, q) for q in HUMAN_QUESTIONS)
