"""`selfinstruct status RUN_DIR`: what a run directory holds, and whether a run is going on in it."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def status(run_dir: str, as_json: bool) -> None:
    """Show RUN_DIR's committed rounds, kept and rejected counts, teacher and judges, the outputs made,
    and whether a `selfinstruct generate` is running on it now (it holds the run's lock).

    Reads only: a run in progress is not disturbed.
    """
    from pipeline.run.status import run_status

    figures = run_status(run_dir)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    table = Table(title=f"run {figures['run_dir']}", show_header=False)
    table.add_row("method", str(figures["method"] or "?"))
    table.add_row("teacher", str(figures["teacher"] or "? (no round committed yet)"))
    table.add_row("rounds committed", str(figures["rounds_committed"]))
    candidates = f" of {figures['candidates']:,} candidates" if figures["candidates"] is not None else ""
    table.add_row("kept", f"{figures['kept']:,}{candidates}")
    table.add_row("rejected", f"{figures['rejected']:,} records (rejected.jsonl)")
    if figures["uncommitted_records"]:
        table.add_row(
            "cut short",
            f"{figures['uncommitted_records']} records of a round not committed (redone on rerun)",
        )
    judges = ", ".join(figures["judges"]) or "-"
    table.add_row("judged", f"{figures['judged']:,} of {figures['kept']:,} kept tasks ({judges})")
    running = f"yes: a generate holds the lock (pid {figures['pid']})" if figures["in_progress"] else "no"
    table.add_row("in progress", running)
    table.add_row("outputs", ", ".join(figures["outputs"]) or "- (run `selfinstruct report` / `export`)")
    Console(highlight=False).print(table)
