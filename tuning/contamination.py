"""Is the evaluation leaking into training? Compare training examples with the evaluation tasks.

Two signals, either of which flags a training example:
- its instruction has ROUGE-L above a threshold (0.7, Self-Instruct's own dedup bar) with an
  evaluation task's instruction: a paraphrase of the same task;
- it shares a run of N words (13 by default, the GPT-3 paper's contamination n-gram) with an
  evaluation task's text (instruction, input and reference output): copied material.

Words are rouge-score's tokens (lower-case ASCII letters and digits), so punctuation and case do not
hide a copy. The check only reports; the caller decides whether to warn or stop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import InputFileError, UserError
from pipeline.core.jsonio import read_records
from pipeline.quality.rouge import Vocabulary, fmeasure_array, lcs_matrix, tokenize


@dataclass
class EvalTask:
    """One evaluation task, flattened to the fields every format has."""

    id: str
    instruction: str
    input: str
    output: str

    def text(self) -> str:
        return "\n".join(part for part in (self.instruction, self.input, self.output) if part)


@dataclass
class ContaminationHit:
    """A training example that overlaps an evaluation task, and how."""

    train_index: int
    train_instruction: str
    task_id: str
    task_instruction: str
    rouge_l: float  # the example's best instruction ROUGE-L over all tasks (`task_id` when it is > threshold)
    ngram: str | None  # the shared words, when the n-gram rule fired
    ngram_task_id: str | None = None  # the task they are shared with (may differ from the ROUGE-L one)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_eval_tasks(path: str | Path) -> list[EvalTask]:
    """Evaluation tasks from JSONL (Self-Instruct tasks with `instances`, or flat Alpaca records) or JSON."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such task file")
    numbered, where = read_records(path, "tasks")
    tasks: list[EvalTask] = []
    problems: list[str] = []
    for lineno, row in numbered:
        if not isinstance(row, dict):
            problems.append(f"{where} {lineno}: expected a JSON object")
            continue
        instruction = row.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            problems.append(f'{where} {lineno}, field "instruction": missing or empty')
            continue
        instances = row.get("instances")
        if isinstance(instances, list) and instances:
            first = instances[0]
            if not isinstance(first, dict) or not isinstance(first.get("output"), str):
                problems.append(f'{where} {lineno}, field "instances.0.output": missing')
                continue
            inp, out = first.get("input") or "", first["output"]
        elif isinstance(row.get("output"), str):
            inp, out = row.get("input") or "", row["output"]
        else:
            problems.append(f'{where} {lineno}, field "output": missing (nor "instances")')
            continue
        tasks.append(
            EvalTask(id=str(row.get("id", f"task_{lineno}")), instruction=instruction, input=inp, output=out)
        )
    if problems:
        raise InputFileError(str(path), problems)
    if not tasks:
        raise UserError(f"{path}: no tasks")
    return tasks


def _ngrams(tokens: Sequence[str], n: int) -> Iterator[tuple[str, ...]]:
    for i in range(len(tokens) - n + 1):
        yield tuple(tokens[i : i + n])


def find_contamination(
    train: Sequence[dict[str, str]],
    tasks: Sequence[EvalTask],
    rouge_threshold: float = 0.7,
    ngram: int = 13,
) -> list[ContaminationHit]:
    """Every training example that paraphrases (ROUGE-L > threshold) or copies (shared n-gram) a task."""
    if not train or not tasks:
        return []
    # n-gram index of the evaluation side: each n-gram -> first task that has it
    index: dict[tuple[str, ...], int] = {}
    for t, task in enumerate(tasks):
        for gram in _ngrams(tokenize(task.text()), ngram):
            index.setdefault(gram, t)

    vocab = Vocabulary()
    train_codes = [vocab.encode(tokenize(ex["instruction"])) for ex in train]
    task_codes = [vocab.encode(tokenize(task.instruction)) for task in tasks]
    train_lens = np.fromiter((len(c) for c in train_codes), dtype=np.int64, count=len(train_codes))
    task_lens = np.fromiter((len(c) for c in task_codes), dtype=np.int64, count=len(task_codes))

    hits: list[ContaminationHit] = []
    block = max(1, 2_000_000 // len(tasks))
    for start in range(0, len(train), block):
        stop = min(len(train), start + block)
        scores = fmeasure_array(
            lcs_matrix(train_codes[start:stop], task_codes), train_lens[start:stop, None], task_lens[None, :]
        )
        best = scores.argmax(axis=1)
        for row, i in enumerate(range(start, stop)):
            ex = train[i]
            j = int(best[row])
            score = float(scores[row, j])  # stays the best ROUGE-L whatever the n-gram rule finds
            shared, other = None, None
            text = "\n".join(part for part in (ex["instruction"], ex.get("input", ""), ex["output"]) if part)
            for gram in _ngrams(tokenize(text), ngram):
                t = index.get(gram)
                if t is not None:
                    shared, other = " ".join(gram), t
                    break
            if score > rouge_threshold or shared is not None:
                shown = j if score > rouge_threshold or other is None else other
                hits.append(
                    ContaminationHit(
                        train_index=i,
                        train_instruction=ex["instruction"],
                        task_id=tasks[shown].id,
                        task_instruction=tasks[shown].instruction,
                        rouge_l=round(score, 4),
                        ngram=shared,
                        ngram_task_id=tasks[other].id if other is not None else None,
                    )
                )
    return hits


def describe_hits(
    hits: Sequence[ContaminationHit], total: int, ngram: int, threshold: float, show: int = 5
) -> str:
    """A warning that says how many, by which rule, and shows a few pairs."""
    by_rouge = sum(1 for h in hits if h.rouge_l > threshold)
    by_ngram = sum(1 for h in hits if h.ngram is not None)
    lines = [
        f"contamination: {len(hits)} of {total} training examples overlap the evaluation tasks "
        f"({by_rouge} with instruction ROUGE-L > {threshold}, {by_ngram} sharing a {ngram}-word run)"
    ]
    for hit in list(hits)[:show]:
        why = f"ROUGE-L {hit.rouge_l:.2f}"
        if hit.ngram is not None:
            where = f" with {hit.ngram_task_id}" if hit.ngram_task_id not in (None, hit.task_id) else ""
            why += f", shares {ngram} words{where}: {hit.ngram!r}"
        lines.append(f"  train #{hit.train_index} {hit.train_instruction[:70]!r}")
        lines.append(f"    ~ {hit.task_id} {hit.task_instruction[:70]!r} ({why})")
    return "\n".join(lines)
