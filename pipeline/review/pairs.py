"""The blind A/B items of an `evaluate` output: each task's two answers in a seeded random order.

Which answer is the base model's and which the student's lives only here, on the server (and in the
label the server writes); the page receives the instruction, the input and two texts. The order is drawn
per task from the seed, the evaluation's digest and the task id, so it differs between tasks, is the same
on every reopening, and is recorded with each label.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.review.labels import Side

EVAL_FILE = "eval.json"


@dataclass(frozen=True)
class BlindItem:
    task_id: str
    instruction: str
    input: str
    first: Side  # server side only
    first_text: str
    second_text: str
    pair_digest: str


def eval_file(path: str | Path) -> Path:
    """EVAL as given: an `evaluate` output folder (its eval.json) or the eval.json itself."""
    path = Path(path)
    target = path / EVAL_FILE if path.is_dir() else path
    if not target.is_file():
        raise UserError(f"{path}: no {EVAL_FILE} here; give an `evaluate --out` folder or its eval.json")
    return target


def load_eval(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(the eval.json path, its content), checked to hold base and student answers for each task."""
    target = eval_file(path)
    try:
        report = json.loads(target.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{target}: not a readable eval.json ({exc})") from None
    rows = report.get("answers") if isinstance(report, dict) else None
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{target}: no answers; run `selfinstruct evaluate --out` first")
    for k, row in enumerate(rows, start=1):
        for side in ("base", "student"):
            if not isinstance(row.get(side), dict) or not isinstance(row[side].get("answer"), str):
                raise UserError(
                    f'{target}, answer {k}, field "{side}.answer": missing; a blind comparison needs an '
                    "evaluation of a student (`evaluate --adapter`)"
                )
    return target, report


def pair_digest(row: dict[str, Any]) -> str:
    payload = [
        row.get("instruction", ""),
        row.get("input", ""),
        row["base"]["answer"],
        row["student"]["answer"],
    ]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def eval_id(report: dict[str, Any]) -> str:
    """Names an evaluation by what was compared: the same answers give the same id wherever the file is."""
    digests = [[str(row.get("id", k)), pair_digest(row)] for k, row in enumerate(report["answers"])]
    return hashlib.sha256(json.dumps(digests).encode("utf-8")).hexdigest()[:16]


def first_side(seed: int, evaluation: str, task_id: str) -> Side:
    return "base" if random.Random(f"{seed}:{evaluation}:{task_id}").random() < 0.5 else "student"


def blind_items(report: dict[str, Any], seed: int) -> list[BlindItem]:
    """One item per evaluation task, in the evaluation's order, each with its own seeded answer order."""
    evaluation = eval_id(report)
    items = []
    for k, row in enumerate(report["answers"]):
        task_id = str(row.get("id", k))
        first = first_side(seed, evaluation, task_id)
        second = "student" if first == "base" else "base"
        items.append(
            BlindItem(
                task_id=task_id,
                instruction=row.get("instruction", ""),
                input=row.get("input", "") or "",
                first=first,
                first_text=row[first]["answer"],
                second_text=row[second]["answer"],
                pair_digest=pair_digest(row),
            )
        )
    return items
