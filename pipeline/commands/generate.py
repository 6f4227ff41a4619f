"""`selfinstruct generate`: grow a run of machine-generated tasks, round after round, resumably."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import click
from rich.progress import TextColumn
from rich.table import Table

from pipeline.core.console import console, make_progress
from pipeline.core.lines import duration
from pipeline.generate.progress import LineProgress, ProgressListener
from pipeline.teachers.flags import TeacherFlags, teacher_flags

if TYPE_CHECKING:
    from pipeline.generate.config import GenerateConfig
    from pipeline.generate.protocol import RunOutcome
    from pipeline.run.rundir import RunState
    from pipeline.run.summary import RunSummary
    from pipeline.teachers.usage import ReplicaCounts, Usage


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML settings (configs/default.yaml, alpaca.yaml, evol.yaml, magpie.yaml, gpu.yaml, server.yaml); "
    "flags override it.",
)
@click.option(
    "--run-dir",
    default="runs/default",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The run directory; rerunning continues the run in it.",
)
@click.option(
    "--method",
    type=click.Choice(["self-instruct", "alpaca", "evol-instruct", "magpie"]),
    default=None,
    help="self-instruct: the paper's bootstrap (instructions, then classification, then instances); "
    "alpaca: Stanford Alpaca's 20 complete tasks a request; evol-instruct: rewrite tasks into harder or "
    "broader ones; magpie: conversations from the chat template alone (default: the config's, else "
    "self-instruct).",
)
@click.option(
    "--from",
    "from_run",
    default=None,
    type=click.Path(file_okay=False),
    help="evol-instruct: evolve the kept tasks of this run instead of the seeds (evol.from_run).",
)
@click.option(
    "--turns",
    type=click.IntRange(min=1),
    default=None,
    help="magpie: user turns per conversation (magpie.turns, default 1).",
)
@click.option(
    "--prompt-style",
    type=click.Choice(["completion", "chat"]),
    default=None,
    help="completion: the teacher continues a raw prompt (base models); chat: one user message.",
)
@teacher_flags("teacher")
@click.option(
    "--seeds",
    default=None,
    type=click.Path(dir_okay=False),
    help="The seed tasks JSONL (default: the config's, else seeds/seed_tasks.jsonl).",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=None,
    help="Run this many more rounds (counted from where the run is).",
)
@click.option(
    "--until",
    type=click.IntRange(min=1),
    default=None,
    help="Run until the run holds this many kept tasks in all (a total, not more on top).",
)
@click.option(
    "--time-budget",
    default=None,
    metavar="DURATION",
    help="Start no round once this much wall time is spent (600, 90s, 10m, 1h30m; 'none' lifts the "
    "config's budget). With --rounds or --until, whichever comes first.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Instruction requests per round (default: the config's, else 8).",
)
@click.option("--seed", type=int, default=None, help="The run's RNG seed (default: the config's, else 42).")
@click.option(
    "--constrained",
    type=click.Choice(["auto", "on", "off"]),
    default=None,
    help="Hold replies to the recipe's layout (decoding.constrained): auto where the backend can, on, off.",
)
@click.option(
    "--overlap",
    type=click.Choice(["auto", "on", "off"]),
    default=None,
    help="Ask the next round's prompts during this round's last replies, on a guess (overlap_rounds): "
    "auto on a GPU engine only; the results are the same either way.",
)
@click.option("--no-cache", is_flag=True, help="Do not use the teacher cache (a resume then pays again).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check everything (config, seeds, run directory, teacher reachable) and exit without generating.",
)
@click.option("--force", is_flag=True, help="Continue a run even though the configuration changed.")
@click.option("--quiet", is_flag=True, help="No progress display and no summary table.")
@click.option(
    "--verbose",
    is_flag=True,
    help="Show vLLM's own log lines on the terminal too (they always go to RUN_DIR/logs/engine.log).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print summary.json to stdout at the end; progress lines, if any, then go to stderr.",
)
@click.pass_context
def generate(
    ctx: click.Context,
    config_path: str | None,
    run_dir: str,
    method: str | None,
    from_run: str | None,
    turns: int | None,
    prompt_style: str | None,
    teacher: TeacherFlags,
    seeds: str | None,
    rounds: int | None,
    until: int | None,
    time_budget: str | None,
    batch_size: int | None,
    seed: int | None,
    constrained: str | None,
    overlap: str | None,
    no_cache: bool,
    dry_run: bool,
    force: bool,
    quiet: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Generate instruction data with a teacher model: Self-Instruct, Alpaca, Evol-Instruct or Magpie.

    Each round commits its results; a killed run resumes where it stopped, and rerunning the same
    command grows the run by more rounds. In a terminal the progress is a live display; otherwise
    (a log, a pipe) it is a plain line at every round end and at least every 30 seconds.
    """
    from pipeline.core.errors import UserError
    from pipeline.core.outputs import check_output_dir
    from pipeline.core.yamlconfig import load_config
    from pipeline.generate.config import GenerateConfig
    from pipeline.generate.protocol import NO_PROGRESS_STOP

    # A plain `kill` stops the run like Ctrl-C: the engine is shut down and everything committed stays.
    signal.signal(signal.SIGTERM, _interrupt)
    if rounds is not None and until is not None:
        raise UserError("give either --rounds or --until, not both")
    overrides: dict[str, Any] = {
        "method": method,
        "evol.from_run": from_run,
        "magpie.turns": turns,
        "prompt_style": prompt_style,
        **teacher.overrides("teacher"),
        "seeds": seeds,
        "rounds": rounds,
        "until": until,
        "time_budget": time_budget,
        "batch_size": batch_size,
        "seed": seed,
        "teacher.cache": False if no_cache else None,
        "decoding.constrained": constrained,
        "overlap_rounds": overlap,
    }
    config = load_config(config_path, GenerateConfig, overrides)
    check_output_dir(run_dir, "--run-dir")
    if rounds is not None:
        config = config.model_copy(update={"until": None})
    if dry_run:
        _dry_run(config, run_dir, force=force, as_json=as_json)
        return

    outcome, summary = _run(ctx, config, run_dir, force=force, quiet=quiet, as_json=as_json, verbose=verbose)
    if outcome.stopped == NO_PROGRESS_STOP:
        raise UserError(
            f"stopped: {config.max_rounds_without_progress} rounds in a row kept no task "
            f"({summary.kept_total} of {config.until} kept); see rejected.jsonl for why, "
            "then rerun to continue (a stronger teacher or a chat prompt style may help)"
        )


def _run(
    ctx: click.Context,
    config: GenerateConfig,
    run_dir: str,
    *,
    force: bool,
    quiet: bool,
    as_json: bool,
    verbose: bool,
) -> tuple[RunOutcome, RunSummary]:
    """Run with the progress display the output calls for, then show (or print) the summary."""
    from pipeline.generate.protocol import TIME_BUDGET_STOP, run_generation

    # Test harnesses pass a crash hook in the click context (`main(obj={"crash_hook": ...})`).
    crash_hook = ctx.obj.get("crash_hook") if isinstance(ctx.obj, dict) else None
    from pipeline.judge.hook import round_judge

    progress = _progress_for(config, quiet=quiet, as_json=as_json)
    judging = JudgeProgress(progress, quiet=quiet)
    with progress, round_judge(config.teacher, config.judge, run_dir, judging) as after_commit:
        outcome = run_generation(
            config,
            run_dir,
            force=force,
            progress=progress,
            on_warning=_warn,
            crash_hook=crash_hook,
            verbose=verbose,
            after_commit=after_commit,
        )
    summary = outcome.summary
    if summary is None:  # run_generation always writes one; this only narrows the type
        raise RuntimeError("run_generation returned without a summary")
    if not quiet:
        print_summary(summary, outcome, run_dir)
        if outcome.stopped == TIME_BUDGET_STOP:
            console.print(
                f"time budget ({duration(config.time_budget or 0)}) spent after {outcome.rounds_run} rounds; "
                "rerun the same command to continue"
            )
    if as_json:
        click.echo(json.dumps(summary.model_dump(mode="json"), indent=2, ensure_ascii=False))
    return outcome, summary


def _dry_run(config: GenerateConfig, run_dir: str, *, force: bool, as_json: bool) -> None:
    """Print what the checks found (or the JSON of it); a failed check has raised its error already."""
    from pipeline.generate.dryrun import dry_run

    found = dry_run(config, run_dir, force=force)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for text in found["warnings"]:
        _warn(text)
    click.echo(f"seeds: {found['seeds']['count']} tasks in {found['seeds']['path']}")
    click.echo(f"teacher: {found['teacher']}")
    click.echo(f"run directory: {found['run_dir']['path']}, {found['run_dir']['what']}")
    click.echo(f"ok: {config.method} run ready; nothing was generated or written (--dry-run)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _warn(text: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {text}")


def _progress_for(config: GenerateConfig, *, quiet: bool, as_json: bool) -> ProgressListener:
    """Nothing with --quiet; the live display in a terminal; plain lines otherwise (on stderr with
    --json, which keeps stdout for the summary)."""
    if quiet:
        return ProgressListener()
    if sys.stdout.isatty():
        return RichProgress(config)
    return LineProgress(sys.stderr if as_json else sys.stdout)


class JudgeProgress:
    """The per-round judge's progress (`judge.enabled`), shown as more requests of the round just done."""

    def __init__(self, progress: ProgressListener, *, quiet: bool):
        self.progress = progress
        self.quiet = quiet

    def step(self, label: str, total: int) -> None:
        if not self.quiet:
            console.print(f"judging {total} new task(s) ...")
        self.progress.requests_added(total)

    def advance(self, count: int) -> None:
        self.progress.requests_done(count)


class RichProgress(ProgressListener):
    """Live progress: round, kept/target, rejection rate with its top reasons, tokens/s, ETA."""

    def __init__(self, config: GenerateConfig):
        self.config = config
        self.progress = make_progress(extra=(TextColumn("{task.fields[info]}"),))
        self.main: Any = None
        self.sub: Any = None
        self.reasons: Counter[str] = Counter()
        self.candidates = 0
        self.task_rejections = 0
        self.completion_tokens = 0
        self.seconds = 0.0
        self.started = 0.0

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def run_started(self, state: RunState, config: GenerateConfig, usage: Usage) -> None:
        self.started = time.monotonic()
        if config.until is not None:
            total, done, what = config.until, min(state.kept_total, config.until), "kept"
        elif config.rounds is not None or config.time_budget is None:
            total, done, what = config.rounds or 1, 0, "rounds"
        else:
            total, done, what = round(config.time_budget), 0, "seconds"
        self.main = self.progress.add_task(
            what, total=total, completed=done, info=f"{state.kept_total} kept so far"
        )
        self.sub = self.progress.add_task("  requests", total=0, completed=0, info="", visible=False)

    def round_started(self, round_no: int) -> None:
        self.progress.update(self.main, description=f"round {round_no}")
        self.progress.reset(self.sub, total=0, visible=True, info="")

    def requests_added(self, count: int) -> None:
        total = self.progress.tasks[self.sub].total or 0
        self.progress.update(self.sub, total=total + count)

    def requests_done(self, count: int) -> None:
        self.progress.advance(self.sub, count)
        if self.config.until is None and self.config.rounds is None and self.config.time_budget is not None:
            self.progress.update(
                self.main, completed=min(time.monotonic() - self.started, self.config.time_budget)
            )

    def replicas(self, counts: dict[str, ReplicaCounts]) -> None:
        from pipeline.teachers.usage import describe_replicas

        self.progress.update(self.sub, info=describe_replicas(counts))

    def round_committed(self, row: dict[str, Any], state: RunState) -> None:
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
        if self.config.until is not None:
            self.progress.update(self.main, completed=min(state.kept_total, self.config.until), info=info)
        elif self.config.rounds is not None or self.config.time_budget is None:
            self.progress.update(self.main, advance=1, info=info)
        else:
            elapsed = min(time.monotonic() - self.started, self.config.time_budget)
            self.progress.update(self.main, completed=elapsed, info=info)
        self.progress.update(self.sub, visible=False)


def print_summary(summary: RunSummary, outcome: RunOutcome, run_dir: str) -> None:
    """A short table of the whole run (all rounds so far), on stderr."""
    totals = summary.totals
    table = Table(title=f"run {run_dir}", show_header=False)
    table.add_row("method", summary.method)
    teacher = summary.teacher
    table.add_row("teacher", f"{teacher.backend}: {teacher.model}" if teacher else "?")
    table.add_row("rounds", f"{len(summary.rounds)} ({outcome.rounds_run} this time)")
    table.add_row("requests", f"{totals.requests} ({totals.cache_hits} from cache)")
    table.add_row("tokens", f"{totals.prompt_tokens:,} prompt + {totals.completion_tokens:,} completion")
    table.add_row("tokens/s", f"{totals.tokens_per_s:,.0f}")
    if summary.constrained_decoding is not None:
        table.add_row("decoding", summary.constrained_decoding.describe())
    if totals.cost is not None:
        table.add_row("cost", f"${totals.cost:.4f}")
    table.add_row("candidates", str(totals.candidates))
    table.add_row("kept", str(summary.kept_total))
    top = list(totals.rejected_by_reason.items())[:5]
    table.add_row("top rejections", ", ".join(f"{r} {n}" for r, n in top) or "-")
    if outcome.resumed_round is not None:
        table.add_row("resumed", f"round {outcome.resumed_round} redone from the cache")
    console.print(table)
