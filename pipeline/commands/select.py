"""`selfinstruct select`: the N tasks of a run that best combine quality and coverage, exported."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.core.errors import UserError


def check_output(out: Path, fmt: str) -> None:
    """Refuse an output location that cannot be written, before any work."""
    if fmt != "hf" and out.is_dir():
        raise UserError(f"{out}: is a directory; --format {fmt} writes a file")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise UserError(f"{parent}: not a directory")


def describe_selection(info: dict) -> list[str]:
    """The picked subset against a random one of the same size, one row per figure."""
    picked, chance = info["picked"], info["random"]

    def q(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    rows = [
        f"{'':28s}{'selected':>10s}{'random':>10s}",
        f"{'mean quality (where known)':28s}{q(picked['mean_quality']):>10s}{q(chance['mean_quality']):>10s}",
        f"{'clusters covered':28s}{picked['clusters_covered']:>10d}{chance['clusters_covered']:>10d}"
        f"  (of {picked['clusters_total']})",
        f"{'mean nearest-neighbour sim':28s}{picked['mean_nn_similarity']:>10.3f}{chance['mean_nn_similarity']:>10.3f}",
        f"{'coverage (facility location)':28s}{picked['coverage']:>10.3f}{chance['coverage']:>10.3f}",
    ]
    return rows


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--size", "-n", type=click.IntRange(min=1), required=True, help="How many tasks to pick.")
@click.option(
    "-o", "--out", required=True, type=click.Path(path_type=Path), help="Output file (folder for hf)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["alpaca", "jsonl", "messages", "hf"]),
    default="jsonl",
    show_default=True,
    help="As in `selfinstruct export`.",
)
@click.option(
    "--method",
    type=click.Choice(["facility", "kcenter", "random"]),
    default="facility",
    show_default=True,
    help="Coverage: facility location (lazy greedy) or k-center greedy on the embeddings; random: a "
    "uniform sample (the control).",
)
@click.option(
    "--quality-weight",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="The weight of quality against coverage: 0 = coverage only, 1 = quality only.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="The seed of k-means, the random subset and the CV folds.",
)
@click.option("--test-size", type=float, default=0.05, show_default=True, help="hf: share held out.")
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures and picked ids as JSON.")
def select(
    run_dir: str,
    size: int,
    out: Path,
    fmt: str,
    method: str,
    quality_weight: float,
    seed: int,
    test_size: float,
    quiet: bool,
    as_json: bool,
) -> None:
    """Pick the SIZE tasks of RUN_DIR that best combine quality and coverage; write them to OUT.

    Quality: people's labels (`selfinstruct review`), else judge scores, else a model learned from the
    labels; with none, the choice is for coverage alone (said so). Prints the pick against a random
    subset of the same size.
    """
    from pipeline.curate.filters import SelectionFilter
    from pipeline.run.export import export_run

    check_output(out, fmt)
    pick = SelectionFilter(
        size=size,
        method=method,  # type: ignore[arg-type]
        quality_weight=quality_weight,
        quiet=quiet or as_json,
        seed=seed,
    )
    written = export_run(run_dir, fmt, out, keep=[pick], test_size=test_size, seed=seed)  # type: ignore[arg-type]
    chosen, view = pick.result, pick.view(run_dir)
    assert chosen is not None
    model = view.quality.model
    info = {
        **chosen.as_dict(),
        "quality_sources": view.quality.counts(),
        "notes": view.quality.notes,
        "model": None
        if model is None
        else {
            "labels": model.labels,
            "cv_folds": model.folds,
            "cv_accuracy": model.accuracy,
            "cv_auc": model.auc,
            "majority_accuracy": model.majority_accuracy,
        },
        "embedded_now": view.embedded_now,
        "export": written,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    if not chosen.quality_used:
        click.echo("no quality source: picked for coverage alone")
    shown = ", ".join(f"{v} {k}" for k, v in info["quality_sources"].items())
    click.echo(
        f"selected {len(chosen.ids)} of {len(view.tasks)} tasks ({method}, quality weight "
        f"{quality_weight if chosen.quality_used else 0:g}; quality from: {shown})"
    )
    for row in describe_selection(info):
        click.echo(row)
    click.echo(
        f"wrote {written['examples']} examples from {written['tasks']} tasks to {written['path']} [{fmt}]"
    )
