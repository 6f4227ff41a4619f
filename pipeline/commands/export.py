"""`selfinstruct export`: a run's kept tasks as Alpaca JSON, JSONL, chat messages or a HF dataset."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["alpaca", "jsonl", "messages", "hf", "parquet"]),
    required=True,
    help="alpaca: alpaca_data.json's JSON list; jsonl: one example a line; messages: chat JSONL "
    "for TRL; hf: a datasets.DatasetDict (train/test) saved with save_to_disk; parquet: a folder with "
    "data/train-*.parquet and data/test-*.parquet, the layout of a Hub dataset repo.",
)
@click.option(
    "-o", "--out", required=True, type=click.Path(), help="Output file (a folder for hf and parquet)."
)
@click.option("--include-seeds", is_flag=True, help="Add the run's seed tasks (all their instances).")
@click.option(
    "--test-size",
    type=float,
    default=0.05,
    show_default=True,
    help="hf: share of tasks held out as the test split.",
)
@click.option("--seed", type=int, default=42, show_default=True, help="hf: seed of the train/test split.")
@click.option(
    "--min-score",
    type=click.IntRange(1, 5),
    default=None,
    help="Only tasks the judge scored at least this (1-5); see `selfinstruct judge`.",
)
@click.option(
    "--require-valid",
    is_flag=True,
    help="Only tasks the judge found valid on all three questions (instruction, input, output).",
)
@click.option(
    "--reviewed-only",
    is_flag=True,
    help="Only tasks that people reviewed and marked valid on all three questions (`selfinstruct review`).",
)
@click.option(
    "--drop-rejected",
    is_flag=True,
    help="Leave out the tasks that people rejected (any question no); keep every task nobody reviewed.",
)
@click.option(
    "--min-quality",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Only tasks whose quality (0-1: people's label, else judge score, else the model learned from "
    "the labels) is at least this; see `selfinstruct select`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def export(
    run_dir: str,
    fmt: str,
    out: str,
    include_seeds: bool,
    test_size: float,
    seed: int,
    min_score: int | None,
    require_valid: bool,
    reviewed_only: bool,
    drop_rejected: bool,
    min_quality: float | None,
    as_json: bool,
) -> None:
    """Export the kept tasks of RUN_DIR (one example per instance)."""
    from pipeline.curate.filters import QualityFilter
    from pipeline.review.filters import review_filter
    from pipeline.run.export import export_run
    from pipeline.run.judgments import JudgeFilter

    keep = [
        JudgeFilter(min_score=min_score, require_valid=require_valid),
        review_filter(reviewed_only, drop_rejected),
        QualityFilter(min_quality=min_quality, quiet=as_json),
    ]
    info = export_run(
        run_dir,
        fmt,  # type: ignore[arg-type]
        out,
        include_seeds=include_seeds,
        test_size=test_size,
        seed=seed,
        keep=keep,
    )
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    split = f" (train {info['train']}, test {info['test']})" if "train" in info else ""
    click.echo(
        f"wrote {info['examples']} examples from {info['tasks']} tasks to {info['path']} [{fmt}]{split}"
    )
    for key in ("judge_filter", "review_filter", "quality_filter"):
        if key in info:
            click.echo(describe_filter(key, info[key]))


def describe_filter(key: str, counts: dict) -> str:
    """One line: what a filter kept and why it left the rest out."""
    why = {
        "below_min_score": "below the minimum score",
        "not_all_valid": "not valid on all three questions",
        "unscored": "unscored by the judge",
        "not_judged": "not judged yet",
        "rejected_by_people": "rejected by people",
        "not_reviewed": "not reviewed",
        "below_min_quality": "below the minimum quality",
        "no_quality_score": "without a quality score",
        "not_selected": "not selected",
    }
    name = key.replace("_", " ")
    left = ", ".join(f"{counts[k]} {label}" for k, label in why.items() if counts.get(k))
    return f"{name} ({counts['rule']}): kept {counts['kept']} tasks" + (f"; left out {left}" if left else "")
