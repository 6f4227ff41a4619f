"""Training data: load the corpus and its held-out split, then tokenize with the loss on the response only.

Each example becomes `input_ids` and `labels` where every prompt token is labelled -100 (ignored by
the loss) and every response token, the end-of-sequence token included, is trained. We tokenize
here rather than inside TRL because TRL truncates to `max_length` silently, which can cut the EOS
off and teach the model never to stop; here an example that does not fit is counted and, by
default, dropped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.run.filtering import Filters, active_filters, apply_filters
from pipeline.run.reader import Run
from tuning.formats import render_example

IGNORE_INDEX = -100


@dataclass
class Encoded:
    """One tokenized example: ids, labels (-100 on the prompt) and whether it had to be cut."""

    input_ids: list[int]
    labels: list[int]
    overlength: bool
    full_length: int


@dataclass
class EncodeStats:
    """What tokenization did to a split; reported, never silent."""

    examples: int = 0
    kept: int = 0
    overlength: int = 0
    dropped: int = 0
    truncated: int = 0
    tokens: int = 0
    response_tokens: int = 0
    longest: int = 0
    overlength_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "kept": self.kept,
            "overlength": self.overlength,
            "dropped": self.dropped,
            "truncated": self.truncated,
            "tokens": self.tokens,
            "response_tokens": self.response_tokens,
            "longest": self.longest,
        }


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def encode_example(example: dict[str, str], tokenizer: Any, fmt: str, max_length: int) -> Encoded:
    """Tokenize one example with the prompt masked; cut to `max_length` when it does not fit.

    The prompt and prompt+response are tokenized separately (no special tokens added: the templates
    carry their own) and the response starts where they diverge, which also handles a merge of
    tokens across the boundary.
    """
    prompt, completion = render_example(
        fmt, tokenizer, example["instruction"], example.get("input", ""), example["output"]
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    start = common_prefix_length(prompt_ids, full_ids)
    labels = [IGNORE_INDEX] * start + full_ids[start:]
    overlength = len(full_ids) > max_length
    return Encoded(
        input_ids=full_ids[:max_length],
        labels=labels[:max_length],
        overlength=overlength,
        full_length=len(full_ids),
    )


def encode_examples(
    examples: list[dict[str, str]], tokenizer: Any, fmt: str, max_length: int, overlength: str = "drop"
) -> tuple[list[dict[str, list[int]]], EncodeStats]:
    """Tokenize a split; `overlength` = "drop" leaves out examples that do not fit, "truncate" keeps them cut."""
    stats = EncodeStats(examples=len(examples))
    rows: list[dict[str, list[int]]] = []
    for example in examples:
        enc = encode_example(example, tokenizer, fmt, max_length)
        stats.longest = max(stats.longest, enc.full_length)
        if enc.overlength:
            stats.overlength += 1
            if len(stats.overlength_examples) < 3:
                stats.overlength_examples.append(f"{enc.full_length} tokens: {example['instruction'][:80]!r}")
            if overlength == "drop":
                stats.dropped += 1
                continue
            stats.truncated += 1
        if not any(label != IGNORE_INDEX for label in enc.labels):
            # The prompt alone fills max_length: nothing left to learn from.
            stats.dropped += 1
            continue
        rows.append({"input_ids": enc.input_ids, "labels": enc.labels})
        stats.kept += 1
        stats.tokens += len(enc.input_ids)
        stats.response_tokens += sum(1 for label in enc.labels if label != IGNORE_INDEX)
    return rows, stats


def split_examples(
    examples: list[dict[str, str]], test_size: float, seed: int
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A seeded train/test split for data without a test split of its own (at least one held-out example)."""
    if len(examples) < 2:
        raise UserError(f"need at least 2 examples to hold one out for evaluation, got {len(examples)}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = min(len(examples) - 1, max(1, round(len(examples) * test_size)))
    test_idx = set(order[:n_test])
    train = [ex for i, ex in enumerate(examples) if i not in test_idx]
    test = [ex for i, ex in enumerate(examples) if i in test_idx]
    return train, test


def _clean(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """{instruction, input, output}, plus the task id where the data has one (the training record keeps it)."""
    out = []
    for r in rows:
        row = {"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]}
        if isinstance(r.get("task_id"), str):
            row["task_id"] = r["task_id"]
        out.append(row)
    return out


def _saved_split(saved: Path, data: Any, split: str) -> list[dict[str, str]]:
    """One split of a saved DatasetDict, with its task ids when it has that column."""
    from pipeline.run import export

    rows = export.load_examples(saved, split)
    if "task_id" in data[split].column_names:
        for row, task_id in zip(rows, data[split]["task_id"], strict=True):
            row["task_id"] = task_id
    return rows


def _saved_dataset_dict(path: Path) -> Path | None:
    """The saved `datasets` folder at `path` or in a run's export/hf, if any."""
    for candidate in (path, Run(path).export_dir / "hf"):
        if (candidate / "dataset_dict.json").exists():
            return candidate
    return None


def load_splits(
    path: str | Path, test_size: float = 0.05, seed: int = 42, keep: Filters = None
) -> tuple[list[dict[str, str]], list[dict[str, str]], str]:
    """(train, test, where the test split came from) for a run dir, a saved datasets folder or an Alpaca file.

    A saved DatasetDict (given directly, or a run's export/hf) brings the test split the export held
    out; a run without one is split by task the way the export splits (no task straddles the two);
    a flat Alpaca file, which has no task ids, is split by example. Both with `test_size` and `seed`.
    Examples carry their `task_id` where the data has one. Training records the split it got
    (tuning.record): a split is derived here once, for training, and never again for evaluation.
    `keep` (a judge filter, run directories only) removes failing tasks from the training side alone.
    """
    from pipeline.run import export

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    filters = active_filters(keep)
    if filters:
        if not Run(path).looks_like_run():
            flags = "--min-score, --require-valid, --reviewed-only, --drop-rejected and --min-quality"
            raise UserError(f"{path}: {flags} need a run directory as --data")
        train, test, source = load_splits(path, test_size, seed)
        train, note = filtered_training(path, train, filters)
        return train, test, f"{source}; {note}"
    saved = _saved_dataset_dict(path) if path.is_dir() else None
    if saved is not None:
        from datasets import load_from_disk

        data = load_from_disk(str(saved))
        if "train" in data and "test" in data:
            train = _saved_split(saved, data, "train")
            test = _saved_split(saved, data, "test")
            if train and test:
                return train, test, f"the export's test split ({saved})"
    if Run(path).looks_like_run():
        examples = export.task_examples(Run.open(path).committed_tasks())
        if len({e["task_id"] for e in examples}) < 2:
            raise UserError(f"{path}: need at least 2 kept tasks to hold one out for evaluation")
        train, test = export.split_by_task(examples, test_size, seed)
        return _clean(train), _clean(test), f"{len(test)} examples of held-out tasks (test_size {test_size})"
    train, test = split_examples(export.load_examples(path), test_size, seed)
    return train, test, f"{len(test)} examples held out here (test_size {test_size}, seed {seed})"


def filtered_training(
    run_dir: Path, train: list[dict[str, str]], keep: Filters
) -> tuple[list[dict[str, str]], str]:
    """Training examples of tasks that pass every filter in `keep` (judge scores, people's labels). The
    held-out split is left as it is without a filter, so filtered and unfiltered students are compared on
    the same held-out tasks. Examples are matched by task id, or by their text where the data (an old
    export) has none."""
    from pipeline.run import export

    tasks = Run.open(run_dir).committed_tasks()
    passing, counts = apply_filters(run_dir, tasks, keep)
    ids = {t.id for t in passing}

    def key(e: dict[str, Any]) -> tuple[str, str, str]:
        return e["instruction"].strip(), (e.get("input") or "").strip(), e["output"].strip()

    examples = export.task_examples(tasks)
    good = {key(e) for e in examples if e["task_id"] in ids}
    bad = {key(e) for e in examples if e["task_id"] not in ids} - good
    kept = [e for e in train if (e["task_id"] in ids if "task_id" in e else key(e) not in bad)]
    rules = " and ".join(c["rule"] for c in counts.values())
    if not kept:
        raise UserError(f"{run_dir}: no training example passes the filter ({rules})")
    names = " and ".join(f.label for f in active_filters(keep))
    return kept, f"{names} ({rules}) kept {len(passing)} of {len(tasks)} tasks"


def selected_training(
    run_dir: Path, train: list[dict[str, str]], size: int, method: str = "facility", quiet: bool = False
) -> tuple[list[dict[str, str]], str]:
    """`--select N`: the N tasks of the training side (after any other filter) that `selfinstruct
    select` picks for quality and coverage; the held-out split stays as it is."""
    from pipeline.curate.filters import SelectionFilter

    if not Run(run_dir).looks_like_run():
        raise UserError(f"{run_dir}: --select needs a run directory as --data")
    if any("task_id" not in e for e in train):
        raise UserError(
            f"{run_dir}: --select needs training examples with task ids (a run, not an old export)"
        )
    pick = SelectionFilter(size=size, method=method, among={e["task_id"] for e in train}, quiet=quiet)  # type: ignore[arg-type]
    kept, note = filtered_training(run_dir, train, [pick])
    assert pick.result is not None
    if method == "random":
        return kept, f"{note}, at random (the control)"
    used = "quality and coverage" if pick.result.quality_used else "coverage alone (no quality source)"
    return kept, f"{note}, for {used}"
