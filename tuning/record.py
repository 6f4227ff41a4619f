"""What a training run trained on and what it held out, recorded so that nothing has to re-derive it.

A run directory grows and `selfinstruct export` re-splits it, so the held-out set cannot be recomputed
later from `test_size` and a seed: tasks the student was trained on would land in "held-out". Training
writes this record (`data_manifest.json`: task ids and digests of both splits, and the held-out
examples themselves) into its output folder before the first step and into the adapter it saves. A
resume over different data is refused, and `selfinstruct evaluate` scores exactly the held-out
examples recorded in the adapter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.core.errors import UserError
from pipeline.core.jsonio import write_json_atomic

RECORD_FILE = "data_manifest.json"


class Example(BaseModel):
    """One training or held-out example as the trainer saw it."""

    model_config = ConfigDict(extra="forbid")

    instruction: str
    input: str = ""
    output: str
    task_id: str | None = None


class SplitRecord(BaseModel):
    """A split by size and content: a change to any example changes the digest."""

    model_config = ConfigDict(extra="forbid")

    examples: int
    digest: str = Field(description="sha256 over the examples in order (see examples_digest)")
    task_ids: list[str] | None = Field(None, description="the split's tasks, when the data has task ids")


class HeldOutRecord(SplitRecord):
    """The held-out split, with its examples, so evaluation needs neither the data nor a re-split."""

    items: list[Example]


class DataRecord(BaseModel):
    """The data identity of a training run."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    data: str = Field(description="--data as given to `selfinstruct train`")
    data_path: str | None = Field(None, description="the same, resolved to an absolute path")
    source: str = Field("", description="where the held-out split came from")
    digest: str = Field(description="sha256 over both split digests: the resume key")
    train: SplitRecord
    held_out: HeldOutRecord


def _example(row: Mapping[str, Any]) -> Example:
    return Example(
        instruction=row["instruction"],
        input=row.get("input") or "",
        output=row["output"],
        task_id=row.get("task_id"),
    )


def examples_digest(examples: Sequence[Mapping[str, Any]]) -> str:
    """sha256 over one canonical JSON line per example (instruction, input, output, task id), in order."""
    h = hashlib.sha256()
    for row in examples:
        line = json.dumps(_example(row).model_dump(), sort_keys=True, ensure_ascii=False)
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


def _combined(train_digest: str, held_out_digest: str) -> str:
    return hashlib.sha256(f"{train_digest}\n{held_out_digest}".encode()).hexdigest()


def task_ids(examples: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """The distinct task ids in order of first use, or None when any example has none (a flat file)."""
    ids = [row.get("task_id") for row in examples]
    if not ids or any(not isinstance(i, str) for i in ids):
        return None
    return list(dict.fromkeys(ids))  # type: ignore[arg-type]


def build_record(
    train: Sequence[Mapping[str, Any]], held_out: Sequence[Mapping[str, Any]], data: str, source: str
) -> DataRecord:
    """The record of training on `train` with `held_out` held out, both from `data`."""
    train_digest, held_digest = examples_digest(train), examples_digest(held_out)
    return DataRecord(
        data=data,
        data_path=str(Path(data).resolve()) if data else None,
        source=source,
        digest=_combined(train_digest, held_digest),
        train=SplitRecord(examples=len(train), digest=train_digest, task_ids=task_ids(train)),
        held_out=HeldOutRecord(
            examples=len(held_out),
            digest=held_digest,
            task_ids=task_ids(held_out),
            items=[_example(row) for row in held_out],
        ),
    )


def write_record(folder: Path, record: DataRecord) -> None:
    write_json_atomic(folder / RECORD_FILE, record.model_dump(mode="json"))


def read_record(folder: Path) -> DataRecord | None:
    """The record in `folder`, None when there is none; a damaged or edited record is an error."""
    path = folder / RECORD_FILE
    if not path.exists():
        return None
    try:
        record = DataRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise UserError(f"{path}: not a valid training data record ({exc})") from exc
    items = [item.model_dump() for item in record.held_out.items]
    combined = _combined(record.train.digest, record.held_out.digest)
    if (
        len(items) != record.held_out.examples
        or examples_digest(items) != record.held_out.digest
        or combined != record.digest
    ):
        raise UserError(
            f"{path}: the held-out examples do not match their recorded digest (the file was edited)"
        )
    return record


def held_out_examples(record: DataRecord) -> list[dict[str, str]]:
    """The recorded held-out examples as {instruction, input, output} (+ task_id when known)."""
    out = []
    for item in record.held_out.items:
        row = {"instruction": item.instruction, "input": item.input, "output": item.output}
        if item.task_id is not None:
            row["task_id"] = item.task_id
        out.append(row)
    return out


def describe_change(old: DataRecord, new: DataRecord) -> str:
    """What differs between the data checkpoints were trained on and the data given now."""
    parts = [
        f"train {old.train.examples} -> {new.train.examples} examples",
        f"held-out {old.held_out.examples} -> {new.held_out.examples} examples",
    ]
    if old.train.task_ids is not None and new.held_out.task_ids is not None:
        trained = set(old.train.task_ids) & set(new.held_out.task_ids)
        if trained:
            parts.append(
                f"{len(trained)} of the {len(new.held_out.task_ids)} tasks held out now were trained on"
            )
    if old.data_path and new.data_path and old.data_path != new.data_path:
        parts.append(f"data was {old.data}")
    return "; ".join(parts)
