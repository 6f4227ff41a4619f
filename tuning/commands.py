"""`selfinstruct train` and `selfinstruct evaluate`: the command-line faces of tuning.train and tuning.evaluate.

Both read a YAML config (configs/train.yaml: the training settings at the top level, the
evaluation settings under `evaluate:`) with command-line flags laid on top. Heavy imports (torch,
transformers, vLLM) happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.core.console import console
from pipeline.core.errors import UserError
from pipeline.core.yamlconfig import load_config
from pipeline.teachers.flags import TeacherFlags, teacher_flags
from tuning.config import TrainConfig, default_tasks_path
from tuning.formats import PROMPT_FORMATS


def run_contamination_check(train_examples: list[dict[str, str]], config: TrainConfig, quiet: bool) -> dict:
    """Warn (or stop, with contamination.fail) when training data overlaps the evaluation tasks."""
    from tuning.contamination import describe_hits, find_contamination, load_eval_tasks

    settings = config.contamination
    if not settings.enabled:
        return {"checked": False}
    path = Path(settings.tasks) if settings.tasks else default_tasks_path()
    if settings.tasks is None and not path.exists():
        if not quiet:
            console.print(f"[yellow]contamination check skipped: no evaluation tasks at {path}")
        return {"checked": False, "tasks": str(path)}
    tasks = load_eval_tasks(path)
    hits = find_contamination(train_examples, tasks, settings.rouge_threshold, settings.ngram)
    result = {
        "checked": True,
        "tasks": str(path),
        "hits": len(hits),
        "examples": [h.as_dict() for h in hits[:20]],
    }
    if hits:
        message = describe_hits(
            hits, len(train_examples), settings.ngram, settings.rouge_threshold, settings.show
        )
        if settings.fail:
            raise UserError(message + "\n(contamination.fail is set: remove these examples or unset it)")
        console.print(f"[yellow]warning: {message}")
    elif not quiet:
        console.print(f"contamination check: no overlap with the {len(tasks)} tasks in {path}")
    return result


@click.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="The training data: a run directory, a saved datasets folder, or an Alpaca JSON/JSONL file.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The output folder; a rerun resumes from its checkpoints when the data and settings are the same.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML settings (configs/train.yaml); flags override it.",
)
@click.option(
    "--base-model", help="The student to train: a HF folder or hub id (default: the bundled SmolLM2)."
)
@click.option(
    "--prompt-format",
    type=click.Choice(PROMPT_FORMATS),
    help="alpaca: Stanford Alpaca's template; chat: the tokenizer's chat template (default: the config's).",
)
@click.option("--max-steps", type=int, help="Stop after at most this many optimizer steps.")
@click.option("--epochs", type=float, help="Passes over the data (--max-steps caps them).")
@click.option("--merge", is_flag=True, default=None, help="Also write a merged model folder (OUT/merged).")
@click.option(
    "--min-score", type=click.IntRange(1, 5), help="Run data: train on tasks the judge scored N or more."
)
@click.option(
    "--require-valid",
    is_flag=True,
    help="Run data: train on tasks the judge found valid on all three questions.",
)
@click.option(
    "--reviewed-only",
    is_flag=True,
    help="Run data: train on tasks people marked valid on all three questions.",
)
@click.option(
    "--drop-rejected", is_flag=True, help="Run data: leave out tasks people rejected, keep unreviewed ones."
)
@click.option(
    "--min-quality",
    type=click.FloatRange(0.0, 1.0),
    help="Run data: train on tasks whose quality (people's label, judge or learned model; 0-1) is P or more.",
)
@click.option(
    "--select",
    "select_size",
    type=click.IntRange(min=1),
    help="Run data: train on the N training tasks `selfinstruct select` picks (quality and coverage).",
)
@click.option(
    "--select-method",
    type=click.Choice(["facility", "kcenter", "random"]),
    default="facility",
    show_default=True,
    help="With --select: how `select` picks (random: a uniform sample of N, the control).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Start over: discard the checkpoints of an earlier run in OUT (e.g. after the data changed).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the training summary as JSON on stdout (progress stays on stderr).",
)
@click.option("--quiet", is_flag=True, help="No progress display.")
def train(
    data: Path,
    out: Path,
    config_path: Path | None,
    base_model: str | None,
    prompt_format: str | None,
    max_steps: int | None,
    epochs: float | None,
    merge: bool | None,
    min_score: int | None,
    require_valid: bool,
    reviewed_only: bool,
    drop_rejected: bool,
    min_quality: float | None,
    select_size: int | None,
    select_method: str,
    force: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """LoRA SFT of a student on a generated corpus; rerun the same command to resume after a kill.

    OUT records what was trained on and held out; checkpoints are resumed only on that same data.
    """
    config = load_config(
        config_path,
        TrainConfig,
        {
            "base_model": base_model,
            "prompt_format": prompt_format,
            "max_steps": max_steps,
            "epochs": epochs,
            "merge": merge,
        },
    )
    from pipeline.core.outputs import check_output_dir
    from pipeline.curate.filters import QualityFilter
    from pipeline.review.filters import review_filter
    from pipeline.run.judgments import JudgeFilter
    from tuning.data import load_splits, selected_training
    from tuning.distributed import joined, launch_from_env, lone_process_warning, run_on_main
    from tuning.train import train as run_train

    check_output_dir(out, "--out")

    keep = [
        JudgeFilter(min_score=min_score, require_valid=require_valid),
        review_filter(reviewed_only, drop_rejected),
        QualityFilter(min_quality=min_quality, quiet=quiet),
    ]
    launch = launch_from_env()
    quiet = quiet or not launch.is_main
    lone = lone_process_warning()
    if lone and not quiet:
        console.print(f"[yellow]warning: {lone}")

    def read_data() -> tuple[list[dict[str, str]], list[dict[str, str]], str, dict]:
        train_examples, test_examples, source = load_splits(data, config.test_size, config.seed, keep)
        if select_size is not None:
            train_examples, note = selected_training(
                data, train_examples, select_size, method=select_method, quiet=quiet
            )
            source = f"{source}; {note}"
        if not quiet:
            console.print(f"{len(train_examples)} training examples; held-out: {source}")
            if launch.distributed:
                console.print(f"training on {launch.world_size} processes")
        return train_examples, test_examples, source, run_contamination_check(train_examples, config, quiet)

    with joined(launch):
        train_examples, test_examples, source, contamination = run_on_main(launch, read_data)
        summary = run_train(
            train_examples,
            test_examples,
            config,
            out,
            quiet=quiet,
            data_source=str(data),
            held_out_source=source,
            force=force,
            contamination=contamination,
            launch=launch,
        )
    if summary is not None and as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    elif summary is not None and not quiet:
        console.print(
            f"trained {summary['steps']} steps in {summary['wall_time_s']:.0f}s "
            f"({summary['tokens_per_s']:,.0f} tokens/s, effective batch {summary['effective_batch_size']} "
            f"on {summary['world_size']} process(es)); held-out loss "
            f"{summary['eval_loss_before']:.4f} -> {summary['eval_loss_after']:.4f}; "
            f"{summary['truncated']} over-length examples ({summary['overlength_policy']}); adapter: {summary['adapter']}"
            + (f"; merged: {summary['merged']}" if summary["merged"] else "")
        )


@click.command()
@click.option(
    "--adapter", type=click.Path(path_type=Path), help="The LoRA adapter folder (OUT/adapter of `train`)."
)
@click.option(
    "--base-model",
    help="The base model (default: the adapter's, else the bundled SmolLM2); a merged folder works too.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="The adapter's training data: also measure the held-out loss, on the examples its training "
    "recorded as held out.",
)
@click.option(
    "--tasks",
    type=click.Path(path_type=Path),
    help="The evaluation tasks (default: ../shared/reference/user_oriented_instructions.jsonl).",
)
@click.option("--limit", type=int, help="Evaluate the first N tasks only.")
@click.option("--max-tokens", type=int, help="The longest answer, in tokens.")
@click.option(
    "--prompt-format",
    type=click.Choice(PROMPT_FORMATS),
    help="The prompt format (default: the one the adapter was trained with).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="YAML whose `evaluate:` section applies; flags override it.",
)
@click.option("--out", type=click.Path(path_type=Path), help="Write OUT/eval.json.")
@click.option(
    "--judge",
    "use_judge",
    is_flag=True,
    default=None,
    help="Also compare base and student answers pairwise with a judge model.",
)
@teacher_flags("judge", prefix="judge-")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def evaluate(
    adapter: Path | None,
    base_model: str | None,
    data: Path | None,
    tasks: Path | None,
    limit: int | None,
    max_tokens: int | None,
    prompt_format: str | None,
    config_path: Path | None,
    out: Path | None,
    use_judge: bool | None,
    judge_teacher: TeacherFlags,
    as_json: bool,
    quiet: bool,
) -> None:
    """Answer evaluation tasks with the base model and the student side by side, and score them."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    config = load_config(
        config_path,
        TrainConfig,
        {
            "evaluate.base_model": base_model,
            "evaluate.tasks": str(tasks) if tasks is not None else None,
            "evaluate.limit": limit,
            "evaluate.max_tokens": max_tokens,
            "evaluate.prompt_format": prompt_format,
            "evaluate.judge.enabled": use_judge,
            **judge_teacher.overrides("evaluate.judge.teacher"),
        },
    ).evaluate
    from pipeline.core.outputs import check_output_dir
    from tuning.evaluate import evaluate as run_evaluate

    if out is not None:
        check_output_dir(out, "--out")
    from tuning.evaluate import results_table

    report = run_evaluate(config, adapter, data, out, quiet=quiet or as_json)
    if as_json:
        click.echo(json.dumps({k: v for k, v in report.items() if k != "answers"}, indent=2))
    else:
        console.print(results_table(report))
        if out is not None:
            console.print(f"wrote {out / 'eval.json'}")
            if not report.get("pairwise") and data is not None:
                console.print(f"compare the answers blind: selfinstruct review {data} --pairwise {out}")
