"""`selfinstruct generate`: grow a run of machine-generated tasks, round after round, resumably."""

from __future__ import annotations

import json
import signal
from collections import Counter
from typing import TYPE_CHECKING, Any

import click
from rich.progress import TextColumn
from rich.table import Table

from pipeline.core.console import console, make_progress

if TYPE_CHECKING:
    from pipeline.generate.config import GenerateConfig
    from pipeline.generate.rounds import RunOutcome
    from pipeline.run.rundir import RunState


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML settings (configs/default.yaml, alpaca.yaml, gpu.yaml, server.yaml); flags override it.",
)
@click.option(
    "--run-dir",
    default="runs/default",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The run directory; rerunning continues the run in it.",
)
@click.option("--method", type=click.Choice(["self-instruct", "alpaca"]), default=None)
@click.option(
    "--prompt-style",
    type=click.Choice(["completion", "chat"]),
    default=None,
    help="completion: the teacher continues a raw prompt (base models); chat: one user message.",
)
@click.option(
    "--teacher",
    "backend",
    type=click.Choice(["vllm", "openai"]),
    default=None,
    help="vllm: in-process engine; openai: any OpenAI-compatible server (--base-url).",
)
@click.option("--model", default=None, help="Teacher model: a HF folder or name; 'bundled' = SmolLM2-135M.")
@click.option("--base-url", "base_urls", multiple=True, help="openai backend: server URL(s) ending in /v1.")
@click.option("--seeds", default=None, type=click.Path(dir_okay=False), help="Seed tasks JSONL.")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Run this many more rounds.")
@click.option("--until", type=click.IntRange(min=1), default=None, help="Run until this many kept tasks.")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=None, help="Instruction requests per round."
)
@click.option("--seed", type=int, default=None, help="The run's RNG seed.")
@click.option("--no-cache", is_flag=True, help="Do not use the teacher cache (a resume then pays again).")
@click.option("--force", is_flag=True, help="Continue a run even though the configuration changed.")
@click.option("--quiet", is_flag=True, help="No progress display and no summary table.")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout at the end.")
def generate(
    config_path: str | None,
    run_dir: str,
    method: str | None,
    prompt_style: str | None,
    backend: str | None,
    model: str | None,
    base_urls: tuple[str, ...],
    seeds: str | None,
    rounds: int | None,
    until: int | None,
    batch_size: int | None,
    seed: int | None,
    no_cache: bool,
    force: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Generate instruction data from seed tasks with a teacher model (Self-Instruct or Alpaca recipe).

    Each round sends one batch of requests and commits its results; a killed run resumes where it
    stopped, and rerunning the same command grows the run by more rounds.
    """
    from pipeline.core.errors import UserError
    from pipeline.core.yamlconfig import load_config
    from pipeline.generate.config import GenerateConfig
    from pipeline.generate.rounds import NO_PROGRESS_STOP, run_generation

    # A plain `kill` stops the run like Ctrl-C: the engine is shut down and everything committed stays.
    signal.signal(signal.SIGTERM, _interrupt)
    if rounds is not None and until is not None:
        raise UserError("give either --rounds or --until, not both")
    overrides: dict[str, Any] = {
        "method": method,
        "prompt_style": prompt_style,
        "teacher.backend": backend,
        "teacher.model": model,
        "teacher.base_urls": list(base_urls) if base_urls else None,
        "seeds": seeds,
        "rounds": rounds,
        "until": until,
        "batch_size": batch_size,
        "seed": seed,
        "teacher.cache": False if no_cache else None,
    }
    config = load_config(config_path, GenerateConfig, overrides)
    if rounds is not None:
        config = config.model_copy(update={"until": None})

    from pipeline.judge.hook import round_judge

    reporter = RichReporter(config, quiet=quiet)
    with reporter, round_judge(config.teacher, config.judge, run_dir, reporter) as (teacher, after_commit):
        outcome = run_generation(
            config,
            run_dir,
            force=force,
            teacher=teacher,
            reporter=reporter,
            on_warning=reporter.warn,
            after_commit=after_commit,
        )
    if not quiet:
        print_summary(outcome, run_dir)
    if as_json:
        click.echo(json.dumps(outcome.summary, indent=2, ensure_ascii=False))
    if outcome.stopped == NO_PROGRESS_STOP:
        raise UserError(
            f"stopped: {config.max_rounds_without_progress} rounds in a row kept no task "
            f"({outcome.summary['kept_total']} of {config.until} kept); see rejected.jsonl for why, "
            "then rerun to continue (a stronger teacher or a chat prompt style may help)"
        )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class RichReporter:
    """Live progress: round, kept/target, rejection rate with its top reasons, tokens/s, ETA."""

    def __init__(self, config: GenerateConfig, *, quiet: bool = False):
        self.config = config
        self.quiet = quiet
        self.progress = make_progress(quiet=quiet, extra=(TextColumn("{task.fields[info]}"),))
        self.main: Any = None
        self.sub: Any = None
        self.round_no = 0
        self.reasons: Counter[str] = Counter()
        self.candidates = 0
        self.task_rejections = 0
        self.completion_tokens = 0
        self.seconds = 0.0

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, state: RunState, config: GenerateConfig) -> None:
        if config.until is not None:
            total, done, what = config.until, min(state.kept_total, config.until), "kept"
        else:
            total, done, what = config.rounds, 0, "rounds"
        self.main = self.progress.add_task(
            what, total=total, completed=done, info=f"{state.kept_total} kept so far"
        )
        self.sub = self.progress.add_task("teacher", total=1, completed=0, info="", visible=False)

    def round_start(self, round_no: int) -> None:
        self.round_no = round_no
        if self.main is not None:
            self.progress.update(self.main, description=f"round {round_no}")

    def step(self, label: str, total: int) -> None:
        if self.sub is not None:
            self.progress.reset(self.sub, total=total, description=f"  {label}", visible=True, info="")

    def advance(self, count: int) -> None:
        if self.sub is not None:
            self.progress.advance(self.sub, count)

    def round_done(self, row: dict[str, Any], state: RunState) -> None:
        from pipeline.generate.rounds import task_rejection_count

        self.candidates += row["candidates"]
        self.task_rejections += task_rejection_count(row)
        self.reasons.update(row["rejected"])
        self.completion_tokens += row["completion_tokens"]
        self.seconds += row["seconds"]
        rate = self.task_rejections / self.candidates if self.candidates else 0.0
        top = ", ".join(f"{r} {n}" for r, n in self.reasons.most_common(3))
        speed = self.completion_tokens / self.seconds if self.seconds > 0 else 0.0
        target = f"/{self.config.until}" if self.config.until is not None else ""
        info = f"kept {state.kept_total}{target} · {rate:.0%} of candidates rejected (top: {top}) · {speed:,.0f} tok/s"
        if self.main is not None:
            if self.config.until is not None:
                self.progress.update(self.main, completed=min(state.kept_total, self.config.until), info=info)
            else:
                self.progress.update(self.main, advance=1, info=info)
        if self.sub is not None:
            self.progress.update(self.sub, visible=False)

    def warn(self, text: str) -> None:
        console.print(f"[yellow]warning:[/yellow] {text}")


def print_summary(outcome: RunOutcome, run_dir: str) -> None:
    """A short table of the whole run (all rounds so far), on stderr."""
    summary = outcome.summary
    totals = summary["totals"]
    table = Table(title=f"run {run_dir}", show_header=False)
    table.add_row("method", summary["method"])
    teacher = summary.get("teacher") or {}
    table.add_row("teacher", f"{teacher.get('backend', '?')}: {teacher.get('model', '?')}")
    table.add_row("rounds", f"{len(summary['rounds'])} ({outcome.rounds_run} this time)")
    table.add_row("requests", f"{totals['requests']} ({totals['cache_hits']} from cache)")
    table.add_row(
        "tokens", f"{totals['prompt_tokens']:,} prompt + {totals['completion_tokens']:,} completion"
    )
    table.add_row("tokens/s", f"{totals['tokens_per_s']:,.0f}")
    if totals.get("cost") is not None:
        table.add_row("cost", f"${totals['cost']:.4f}")
    table.add_row("candidates", str(totals["candidates"]))
    table.add_row("kept", str(summary["kept_total"]))
    top = list(totals["rejected_by_reason"].items())[:5]
    table.add_row("top rejections", ", ".join(f"{r} {n}" for r, n in top) or "-")
    if outcome.resumed_round is not None:
        table.add_row("resumed", f"round {outcome.resumed_round} redone from the cache")
    console.print(table)
