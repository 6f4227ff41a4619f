"""`selfinstruct seeds validate`: check a seeds file and describe it."""

from __future__ import annotations

import json

import click
from rich.table import Table

from pipeline.core.console import console


@click.group()
def seeds() -> None:
    """Seed task files."""


@seeds.command("validate")
@click.option(
    "--seeds",
    "path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Seed tasks JSONL (default: the project's seeds/seed_tasks.jsonl).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def validate(path: str | None, as_json: bool) -> None:
    """Validate a seeds file and print count, classification count, input share, lengths, max ROUGE-L."""
    from pipeline.quality.seedset import seed_stats
    from pipeline.run.seeds import default_seeds_path, load_seeds

    warnings: list[str] = []
    tasks = load_seeds(path, warnings)
    stats = seed_stats(tasks)
    figures = {"path": str(path or default_seeds_path()), **stats.as_dict(), "warnings": warnings}
    for note in warnings:
        click.echo(f"warning: {figures['path']}: {note}", err=True)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    table = Table(title=f"seeds: {figures['path']}", show_header=False)
    table.add_row("tasks", str(stats.count))
    table.add_row("classification", str(stats.classification))
    table.add_row("with input", f"{stats.with_input_share:.1%}")
    table.add_row("instances", str(stats.instances))
    table.add_row("instruction words", f"{stats.min_words}-{stats.max_words}")
    table.add_row(
        "max pairwise ROUGE-L", f"{stats.max_pairwise_rouge:.3f} ({stats.max_pair[0]} / {stats.max_pair[1]})"
    )
    console.print(table)
    click.echo(f"ok: {stats.count} valid seed tasks")
