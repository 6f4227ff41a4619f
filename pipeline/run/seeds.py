"""Seed task files (the Self-Instruct seed format): loading them, and the one rule for which file a run uses."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import InputFileError
from pipeline.core.jsonio import load_models
from pipeline.run.schemas import SeedTask

DEFAULT_SEEDS = Path(__file__).resolve().parents[2] / "seeds" / "seed_tasks.jsonl"


def default_seeds_path() -> Path:
    """Our own 175 seed tasks, next to the package in a checkout."""
    return DEFAULT_SEEDS


def resolve_seeds_path(configured: str | Path | None, run_dir: str | Path | None = None) -> Path:
    """Which seeds file a run uses: the one rule, for the generator and every reader of a run.

    No path (None or empty) means the project's own seeds. A relative path is taken from the working
    directory, as `generate` took it; a reader that passes `run_dir` also finds the file there when it
    is not under the working directory (a run directory moved together with its seeds).
    """
    if configured is None or not str(configured):
        return default_seeds_path()
    path = Path(configured)
    if run_dir is not None and not path.is_absolute() and not path.exists():
        beside = Path(run_dir) / path
        if beside.exists():
            return beside
    return path


def load_seeds(
    path: str | Path | None = None, warnings: list[str] | None = None, *, max_words: int | None = None
) -> list[SeedTask]:
    """Load and validate a seeds file; every problem is reported with its line and field, at once.

    Duplicate ids are errors (ids key the prompts and records). Duplicate names are only warnings,
    appended to `warnings`: names are labels, and the paper's own seed file repeats one. With
    `max_words`, an instruction longer than that many words (fewer tokens than any tokenizer makes of
    them) is an error: it can never fit in the teacher's context.
    """
    path = Path(path) if path is not None else default_seeds_path()
    seen_ids: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    notes = warnings if warnings is not None else []

    def check(lineno: int, task: SeedTask) -> list[str]:
        problems = []
        first = seen_ids.setdefault(task.id, lineno)
        if first != lineno:
            problems.append(f'line {lineno}, field "id": duplicate id {task.id!r} (first on line {first})')
        first = seen_names.setdefault(task.name, lineno)
        if first != lineno:
            notes.append(f'line {lineno}, field "name": duplicate name {task.name!r} (first on line {first})')
        words = len(task.instruction.split())
        if max_words is not None and words > max_words:
            problems.append(
                f'line {lineno}, field "instruction": {words:,} words cannot fit in a prompt (the teacher\'s '
                f"context leaves room for {max_words:,} tokens); shorten it, or raise teacher.engine.max_model_len"
            )
        for k, inst in enumerate(task.instances):
            if not inst.output.strip():
                problems.append(f'line {lineno}, field "instances.{k}.output": output is empty')
        return problems

    tasks = load_models(path, SeedTask, check)
    if not tasks:
        raise InputFileError(str(path), ["line 1: the file holds no seed tasks"])
    return tasks
