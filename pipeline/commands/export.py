"""`selfinstruct export`: a run's kept tasks as Alpaca JSON, JSONL, chat messages or a HF dataset."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["alpaca", "jsonl", "messages", "hf"]),
    required=True,
    help="alpaca: alpaca_data.json's JSON list; jsonl: one example a line; messages: chat JSONL "
    "for TRL; hf: a datasets.DatasetDict (train/test) saved with save_to_disk.",
)
@click.option("-o", "--out", required=True, type=click.Path(), help="Output file (folder for hf).")
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
    "--min-quality",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Only tasks whose quality (human label, else judge score, else the model learned from the "
    "labels; 0-1) is at least this; see `selfinstruct select`.",
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
    min_quality: float | None,
    as_json: bool,
) -> None:
    """Export the kept tasks of RUN_DIR (one example per instance)."""
    from pipeline.run.export import export_run
    from pipeline.run.judgments import JudgeFilter

    keep = JudgeFilter(min_score=min_score, require_valid=require_valid)
    only, quality_line = None, None
    if min_quality is not None:
        from pipeline.curate.progress import open_view
        from pipeline.curate.runview import min_quality_ids

        only, quality_line = min_quality_ids(open_view(run_dir, quiet=as_json), min_quality)
    info = export_run(
        run_dir,
        fmt,  # type: ignore[arg-type]
        out,
        include_seeds=include_seeds,
        test_size=test_size,
        seed=seed,
        keep=keep,
        only=only,
    )
    if quality_line is not None:
        info["quality_filter"] = quality_line
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    split = f" (train {info['train']}, test {info['test']})" if "train" in info else ""
    click.echo(
        f"wrote {info['examples']} examples from {info['tasks']} tasks to {info['path']} [{fmt}]{split}"
    )
    if "judge_filter" in info:
        click.echo(describe_judge_filter(info["judge_filter"]))
    if quality_line is not None:
        click.echo(quality_line)


def describe_judge_filter(counts: dict) -> str:
    """One line: what the judge filter kept and why it left the rest out."""
    why = {
        "below_min_score": "below the minimum score",
        "not_all_valid": "not valid on all three questions",
        "unscored": "unscored by the judge",
        "not_judged": "not judged yet",
    }
    left = ", ".join(f"{counts[k]} {label}" for k, label in why.items() if counts.get(k))
    return f"judge filter ({counts['rule']}): kept {counts['kept']} tasks" + (
        f"; left out {left}" if left else ""
    )
