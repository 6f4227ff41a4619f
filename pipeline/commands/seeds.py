"""`selfinstruct seeds validate`: check a seeds file and describe it."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table


@click.group()
def seeds() -> None:
    """Seed task files."""


@seeds.command("validate")
@click.argument("path_arg", metavar="[PATH]", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--seeds",
    "path_opt",
    type=click.Path(dir_okay=False),
    default=None,
    help="The same as PATH (kept for older scripts). Default: the run config's `seeds`, else the "
    "project's seeds/seed_tasks.jsonl.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="The generate config to check the seeds against (its method, the tasks each prompt shows, "
    "the teacher's context). Default: the defaults of `selfinstruct generate`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def validate(path_arg: str | None, path_opt: str | None, config_path: str | None, as_json: bool) -> None:
    """Check a seeds file by the rules `generate` applies, then print its count, classification count,
    input share, lengths and closest pair (max ROUGE-L). A file that passes is one a run takes.
    """
    from pipeline.core.errors import UserError
    from pipeline.core.yamlconfig import load_config
    from pipeline.generate.config import GenerateConfig
    from pipeline.generate.protocol import load_run_seeds
    from pipeline.quality.seedset import seed_stats

    if path_arg is not None and path_opt is not None and path_arg != path_opt:
        raise UserError(f"give the seeds file once: PATH {path_arg} and --seeds {path_opt} differ")
    config = load_config(config_path, GenerateConfig)
    warnings: list[str] = []
    path, tasks = load_run_seeds(config, path_arg or path_opt, warnings)
    stats = seed_stats(tasks)
    figures = {"path": str(path), **stats.as_dict(), "warnings": warnings}
    if as_json:
        for note in warnings:
            click.echo(f"warning: {figures['path']}: {note}", err=True)
        click.echo(json.dumps(figures, indent=2))
        return
    # Table, warnings and verdict on one stream (stdout), in the order they are read.
    out = Console(highlight=False)
    for note in warnings:
        out.print(f"warning: {figures['path']}: {note}", markup=False)
    table = Table(title=f"seeds: {figures['path']}", show_header=False)
    table.add_row("tasks", str(stats.count))
    table.add_row("classification", str(stats.classification))
    table.add_row("with input", f"{stats.with_input_share:.1%}")
    table.add_row("instances", str(stats.instances))
    table.add_row("instruction words", f"{stats.min_words}-{stats.max_words}")
    table.add_row(
        "max pairwise ROUGE-L", f"{stats.max_pairwise_rouge:.3f} ({stats.max_pair[0]} / {stats.max_pair[1]})"
    )
    out.print(table)
    out.print(f"ok: {stats.count} valid seed tasks", markup=False)
