"""Exporting a run's kept tasks for training, and reading training data back (`load_examples`).

One example per instance: {"instruction", "input", "output"} (+ "task_id"). Formats:
- alpaca:   a JSON list, exactly the shape of Stanford Alpaca's alpaca_data.json;
- jsonl:    one example per line, with task_id and is_classification;
- messages: JSONL of {"messages": [user, assistant]} for TRL's conversational SFT;
- hf:       a `datasets.DatasetDict` with train/test, saved with `save_to_disk`. The split is by
            task, so the instances of one task never straddle train and test.
- parquet:  the same two splits as `data/train-00000-of-00001.parquet` and `data/test-...` in a folder,
            the layout a Hub dataset repo serves (`load_dataset("user/name")`, the dataset viewer).
A multi-turn task (magpie's `conversation`) is one example whose first turn is its instruction and
output: `messages` and `hf` (a `messages` column, added when the run has such a task) carry every turn
in order, `jsonl` adds the conversation, and `alpaca` keeps the first turn and says how many later turns
it left out (`later_turns_left_out`).
Every export is written to a temporary path and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pipeline.core.errors import InputFileError, UserError
from pipeline.core.jsonio import read_records, write_json_atomic, write_text_atomic
from pipeline.core.outputs import check_output_dir, check_output_file
from pipeline.run.filtering import Filters, apply_filters
from pipeline.run.reader import Run
from pipeline.run.schemas import MachineTask, SeedTask

Format = Literal["alpaca", "jsonl", "messages", "hf", "parquet"]
FORMATS: tuple[str, ...] = ("alpaca", "jsonl", "messages", "hf", "parquet")
FOLDER_FORMATS = ("hf", "parquet")
COLUMNS = ("instruction", "input", "output", "task_id")
PARQUET_FILES = {"train": "data/train-00000-of-00001.parquet", "test": "data/test-00000-of-00001.parquet"}
"""The parquet export's files, named as the Hub names a dataset's shards (the card's `configs:` too)."""


def task_examples(tasks: list[MachineTask], seeds: list[SeedTask] | None = None) -> list[dict[str, Any]]:
    """Flatten tasks to one example per instance (seed tasks first when given, as a training mix)."""
    out: list[dict[str, Any]] = []
    for seed in seeds or []:
        for inst in seed.instances:
            out.append(_example(seed.instruction, inst.input, inst.output, seed.id, seed.is_classification))
    for task in tasks:
        for inst in task.instances:
            example = _example(task.instruction, inst.input, inst.output, task.id, task.is_classification)
            if task.conversation:
                example["conversation"] = [dict(m) for m in task.conversation]
            out.append(example)
    return out


def later_turns(examples: list[dict[str, Any]]) -> int:
    """User turns after the first one, over all examples: what a single-turn format leaves out."""
    return sum(max(0, len(e.get("conversation", [])) // 2 - 1) for e in examples)


def _example(instruction: str, given: str, output: str, task_id: str, is_clf: bool) -> dict[str, Any]:
    return {
        "instruction": instruction.strip(),
        "input": given.strip(),
        "output": output.strip(),
        "task_id": task_id,
        "is_classification": is_clf,
    }


def to_messages(example: dict[str, Any]) -> dict[str, Any]:
    """Chat messages of an example: a conversation whole, in order; else its instruction (and input) and output."""
    if example.get("conversation"):
        return {"messages": [dict(m) for m in example["conversation"]]}
    user = example["instruction"] + ("\n\n" + example["input"] if example.get("input") else "")
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": example["output"]},
        ]
    }


def split_by_task(
    examples: list[dict[str, Any]], test_size: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out about `test_size` of the tasks (at least one when there are two or more)."""
    ids = list(dict.fromkeys(e["task_id"] for e in examples))
    if test_size <= 0 or len(ids) < 2:
        return list(examples), []
    n_test = min(len(ids) - 1, max(1, round(test_size * len(ids))))
    held = set(random.Random(seed).sample(ids, n_test))
    return [e for e in examples if e["task_id"] not in held], [e for e in examples if e["task_id"] in held]


def check_export_target(out: Path, fmt: str) -> None:
    """Fail before the work on an `-o` that cannot be written, or whose replacement would lose data:
    the `hf` and `parquet` exports replace a folder, so only an export (or an empty folder) may be there."""
    if fmt not in FOLDER_FORMATS:
        check_output_file(out, "-o")
        return
    check_output_dir(out, "-o")
    saved = (out / "dataset_dict.json").exists() or (out / "dataset_info.json").exists()
    saved = saved or (all(p.name == "data" for p in out.glob("*")) and any(out.glob("data/*.parquet")))
    if out.is_dir() and any(out.iterdir()) and not saved:
        raise UserError(
            f"-o {out}: the folder holds files that are not a saved dataset; the {fmt} export replaces "
            "the whole folder, so give a new or empty folder"
        )


def export_run(
    run_dir: str | Path,
    fmt: Format,
    out: str | Path,
    *,
    include_seeds: bool = False,
    test_size: float = 0.05,
    seed: int = 42,
    keep: Filters = None,
) -> dict[str, Any]:
    """Write the run's examples in `fmt` to `out`; return counts for the command to print.

    With `keep` (the judge's --min-score / --require-valid, the people's --reviewed-only / --drop-rejected),
    only tasks that pass every active filter are written.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not 0.0 <= test_size < 1.0:
        raise UserError(f"--test-size must be in [0, 1), got {test_size}")
    out = Path(out)
    check_export_target(out, fmt)
    run = Run.open(run_dir)
    tasks = run.committed_tasks()
    if not tasks:
        raise UserError(f"{run_dir}: the run has no kept tasks yet; run `selfinstruct generate` first")
    tasks, filtered = apply_filters(run_dir, tasks, keep)
    seeds = run.seeds()[1] if include_seeds else None
    examples = task_examples(tasks, seeds)
    info: dict[str, Any] = {"format": fmt, "path": str(out), "tasks": len(tasks), "examples": len(examples)}
    info.update(filtered)
    if seeds:
        info["seed_tasks"] = len(seeds)
    left_out = later_turns(examples)
    if fmt == "alpaca":
        if left_out:
            info["later_turns_left_out"] = left_out
        write_json_atomic(out, [{k: e[k] for k in ("instruction", "input", "output")} for e in examples])
    elif fmt == "jsonl":
        write_text_atomic(out, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))
    elif fmt == "messages":
        write_text_atomic(
            out, "".join(json.dumps(to_messages(e), ensure_ascii=False) + "\n" for e in examples)
        )
    else:
        train, test = split_by_task(examples, test_size, seed)
        _save_folder(train, test, out, fmt)
        info.update(train=len(train), test=len(test))
    return info


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No per-split progress bars from datasets: the command prints its own one-line result."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _save_folder(train: list[dict[str, Any]], test: list[dict[str, Any]], out: Path, fmt: str) -> None:
    """The splits as a saved DatasetDict (`hf`) or as Parquet files (`parquet`), replacing `out` atomically."""
    from datasets import Dataset, DatasetDict, Features, List, Value

    columns: dict[str, Any] = {name: Value("string") for name in COLUMNS}
    turns = any(r.get("conversation") for r in train + test)
    if turns:  # every turn of a conversation, in order; other runs' datasets keep their four columns
        columns["messages"] = List({"role": Value("string"), "content": Value("string")})
    features = Features(columns)

    def build(rows: list[dict[str, Any]]) -> Dataset:
        data = {c: [r[c] for r in rows] for c in COLUMNS}
        if turns:
            data["messages"] = [to_messages(r)["messages"] for r in rows]
        return Dataset.from_dict(data, features=features)

    data = DatasetDict({"train": build(train), "test": build(test)})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old = None
    try:
        # One shard per split: datasets writes no shard at all for an empty split, which it cannot load back.
        with _quiet_datasets():
            if fmt == "hf":
                data.save_to_disk(str(tmp / "data"), num_shards={name: 1 for name in data})
            else:
                for split, path in PARQUET_FILES.items():
                    (tmp / "data" / path).parent.mkdir(parents=True, exist_ok=True)
                    data[split].to_parquet(str(tmp / "data" / path))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "data")
        os.replace(tmp / "data", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# -- reading training data back ----------------------------------------------------------------------
def load_examples(path: str | Path, split: str | None = None) -> list[dict[str, str]]:
    """{"instruction", "input", "output"} dicts from a run directory, a saved datasets folder, or an
    Alpaca-style JSON list / JSONL file (the tuning stage's `--data`).

    A saved DatasetDict gives its "train" split unless `split` names another ("all" joins every split).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_dir():
        if Run(path).looks_like_run():
            tasks = Run.open(path).committed_tasks()
            if not tasks:
                raise UserError(f"{path}: the run has no kept tasks yet")
            return [_plain(e) for e in task_examples(tasks)]
        if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
            return _load_saved_dataset(path, split)
        raise UserError(f"{path}: neither a run directory nor a saved dataset (datasets.save_to_disk)")
    rows, where = read_records(path, "{instruction, input, output} objects")
    out, problems = [], []
    for number, row in rows:
        if not isinstance(row, dict):
            problems.append(f"{where} {number}: expected an object, got {type(row).__name__}")
            continue
        missing = [k for k in ("instruction", "output") if not isinstance(row.get(k), str)]
        if missing:
            problems.extend(f'{where} {number}, field "{k}": missing or not a string' for k in missing)
            continue
        out.append(_plain(row))
    if problems:
        raise InputFileError(str(path), problems)
    if not out:
        raise UserError(f"{path}: no examples")
    return out


def _plain(row: dict[str, Any]) -> dict[str, str]:
    return {"instruction": row["instruction"], "input": row.get("input") or "", "output": row["output"]}


def _load_saved_dataset(path: Path, split: str | None) -> list[dict[str, str]]:
    from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk

    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        if split == "all":
            parts: Dataset = concatenate_datasets([data[name] for name in data])
        else:
            name = split or ("train" if "train" in data else next(iter(data)))
            if name not in data:
                raise UserError(f"{path}: no split {name!r} (has {', '.join(data)})")
            parts = data[name]
    else:
        parts = data
    for column in ("instruction", "output"):
        if column not in parts.column_names:
            raise UserError(
                f"{path}: the dataset has no {column!r} column (has {', '.join(parts.column_names)})"
            )
    return [_plain(row) for row in parts]
