"""`selfinstruct judge RUN`: score every kept task the way the Self-Instruct paper reviewed its data."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
from rich.progress import ProgressColumn, Task
from rich.text import Text

from pipeline.core.console import console, make_progress
from pipeline.core.lines import line_tqdm
from pipeline.teachers.flags import TeacherFlags, teacher_flags

if TYPE_CHECKING:
    from pipeline.judge.config import JudgeConfig
    from pipeline.judge.runner import JudgeOutcome
    from pipeline.teachers.usage import Usage


def resolve_config(run_dir: str, config_path: str | None, overrides: dict[str, Any]) -> JudgeConfig:
    """`--config`'s `judge:` section, else the run's own config.yaml's, else the defaults; flags on top."""
    from pipeline.core.yamlconfig import load_config, read_yaml
    from pipeline.judge.config import JudgeSection

    path = config_path
    stored = Path(run_dir) / "config.yaml"
    if path is None and stored.is_file() and isinstance(read_yaml(stored)[0].get("judge"), dict):
        path = str(stored)
    return load_config(path, JudgeSection, {f"judge.{k}": v for k, v in overrides.items()}).judge


class _UsageColumn(ProgressColumn):
    """The judge's live accounting beside the bar: answers from the cache, tokens/s, retries."""

    def __init__(self, usage: Usage):
        super().__init__()
        self.usage = usage

    def render(self, task: Task) -> Text:
        u = self.usage
        text = f"{u.cache_hits} from cache · {u.tokens_per_s:,.0f} tok/s"
        if u.retries:
            text += f" · {u.retries} retries"
        return Text(text, style="cyan")


class _Display:
    """A progress bar with counts, the judge's usage (requests, cache hits, tok/s), elapsed and ETA."""

    def __init__(self, progress: Any):
        self.progress = progress
        self.task: Any = None

    def step(self, label: str, total: int) -> None:
        self.task = self.progress.add_task(label, total=total)

    def advance(self, count: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, count)


class _Lines:
    """Plain progress lines when stdout is not a terminal (a log, CI): one at least every 30 s, and one
    when judging ends: tasks done / total, cache hits, tokens/s, elapsed, ETA."""

    def __init__(self, usage: Usage, stream: TextIO):
        def extra() -> str:
            return f"{usage.cache_hits} from cache · {usage.tokens_per_s:,.0f} tok/s"

        self.bar_class = line_tqdm("judge: ", stream, extra=extra)
        self.bar: Any = None

    def step(self, label: str, total: int) -> None:
        self.bar = self.bar_class(total=total, desc="tasks")

    def advance(self, count: int) -> None:
        self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML whose `judge:` section applies (default: the run's config.yaml, else the defaults).",
)
@teacher_flags("judge")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Tasks per recorded batch.")
@click.option("--no-cache", is_flag=True, help="Do not use the judge's request cache.")
@click.option("--quiet", is_flag=True, help="No progress display and no table.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome and the run's figures as JSON.")
def judge(
    run_dir: str,
    config_path: str | None,
    teacher: TeacherFlags,
    batch_size: int | None,
    no_cache: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Score each kept task of RUN_DIR with a judge model: valid instruction? appropriate input?
    correct output? (the Self-Instruct paper's questions), a 1-5 score and a reason.

    Verdicts go to RUN_DIR/judgments.jsonl. Rerunning judges only what has no verdict from this judge
    (new tasks, failed requests); a different judge or prompt re-scores every task. A killed run
    resumes where it stopped; answers already received come from the cache.
    """
    from pipeline.judge.runner import judge_run
    from pipeline.run.judgments import judgment_figures, read_judgments

    signal.signal(signal.SIGTERM, _interrupt)
    config = resolve_config(
        run_dir,
        config_path,
        {
            **teacher.overrides("teacher"),
            "batch_size": batch_size,
            "teacher.cache": False if no_cache else None,
        },
    )
    from pipeline.judge.config import judge_teacher_config
    from pipeline.run.reader import Run
    from pipeline.teachers import make_teacher

    Run.open(run_dir)  # a clear error for a path that is not a run, before any model loads
    teacher = make_teacher(judge_teacher_config(config))
    try:
        if not quiet and not sys.stdout.isatty():
            lines = _Lines(teacher.usage, sys.stderr if as_json else sys.stdout)
            try:
                outcome = judge_run(run_dir, config, teacher=teacher, progress=lines)
            finally:
                lines.close()
        else:
            with make_progress(quiet=quiet, extra=(_UsageColumn(teacher.usage),)) as progress:
                outcome = judge_run(run_dir, config, teacher=teacher, progress=_Display(progress))
    finally:
        teacher.close()
    figures = judgment_figures(Run.open(run_dir).committed_tasks(), read_judgments(run_dir))
    if not quiet:
        print_outcome(outcome, figures, run_dir)
    if as_json:
        figures.pop("lowest")
        click.echo(json.dumps({**outcome.as_dict(), "figures": figures}, indent=2, ensure_ascii=False))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def print_outcome(outcome: JudgeOutcome, figures: dict[str, Any], run_dir: str) -> None:
    """What this invocation did, then the paper's table for the whole run, on stderr."""
    from rich.table import Table

    judge = outcome.judge
    counts = outcome.counts
    usage = outcome.usage
    console.print(
        f"judge {judge.backend}: {judge.model} (prompt {outcome.prompt_version}): asked about "
        f"{outcome.asked} of {outcome.tasks} tasks ({usage.get('cache_hits', 0)} answers from the cache); "
        f"{counts.get('scored', 0)} scored, {counts.get('unscored', 0)} unscored, {counts.get('failed', 0)} failed"
    )
    if outcome.reasons:
        why = "; ".join(f"{n} {reason}" for reason, n in outcome.reasons.items())
        console.print(f"asked because (tasks): {why}")
    table = Table(title=f"{run_dir}: {figures['scored']} of {figures['tasks']} tasks scored")
    table.add_column("question")
    table.add_column(f"this run, one random instance ({figures['sampled']} tasks)", justify="right")
    table.add_column("Self-Instruct paper (one instance)", justify="right")
    table.add_column("this run, every instance", justify="right")
    for key in ("valid_instruction", "appropriate_input", "correct_output", "all_valid"):
        share, every = figures["shares"][key], figures["shares_all_instances"][key]
        table.add_row(
            figures["labels"][key],
            "-" if share is None else f"{share:.0%} ({figures['yes'][key]})",
            f"{figures['paper'][key]:.0%}",
            "-" if every is None else f"{every:.0%} ({figures['yes_all_instances'][key]})",
        )
    console.print(table)
    if figures["decided_by"]:
        decided = " · ".join(
            f"{row['model']} (prompt {row['prompt_version']}): {row['tasks']} tasks"
            for row in figures["decided_by"]
        )
        console.print(f"current scores by judge: {decided}")
    if figures["caution"]:
        console.print(f"[yellow]caution:[/yellow] {figures['caution']}")
    histogram = "  ".join(f"{row['score']}: {row['count']}" for row in figures["histogram"])
    console.print(f"scores  {histogram}")
    left = figures["unscored"] + figures["failed"] + figures["not_judged"]
    if left:
        reasons = ", ".join(f"{k} {v}" for k, v in figures["unscored_reasons"].items())
        console.print(
            f"[yellow]{left} task(s) without a score[/yellow] ({figures['unscored']} unscored, "
            f"{figures['failed']} failed requests, {figures['not_judged']} not judged)"
            + (f": {reasons}" if reasons else "")
            + "; failed requests are asked again on the next run"
        )
