"""`selfinstruct report RUN_DIR`: write report.html and the dataset card README.md for a run."""

from __future__ import annotations

import json

import click

from pipeline.core.console import console


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for report.html and README.md (default: the run directory).",
)
@click.option(
    "--seeds",
    type=click.Path(dir_okay=False),
    default=None,
    help="Seed tasks the run used (default: config.yaml's `seeds`, else the project's seeds).",
)
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many kept tasks to show in the sample section.",
)
@click.option(
    "--verbs",
    "verb_method",
    type=click.Choice(["auto", "spacy", "simple"]),
    default="auto",
    show_default=True,
    help="Verb-noun analysis: spaCy's parser (auto: when installed) or a plain leading-word count.",
)
@click.option(
    "--license",
    "license_id",
    default=None,
    help="License id for the dataset card (default: the teacher's when known, else 'other').",
)
@click.option(
    "--no-map",
    is_flag=True,
    help="Skip the diversity map (it embeds the kept instructions; cached in the run's cache/embeddings).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the computed figures as JSON.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def report(
    run_dir: str,
    out: str | None,
    seeds: str | None,
    sample: int,
    verb_method: str,
    license_id: str | None,
    no_map: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Write RUN_DIR/report.html (self-contained) and RUN_DIR/README.md (a Hugging Face dataset card).

    The report shows the funnel, rejection reasons with examples, novelty against the seeds, lengths,
    task types, verbs and their objects, a diversity map (clusters of the embedded instructions against
    the seeds), the teacher's work per round and a sample of kept tasks.
    """
    from pipeline.report.build import write_report

    figures, paths = write_report(
        run_dir,
        out,
        seeds=seeds,
        sample=sample,
        verb_method=verb_method,
        license_id=license_id,
        quiet=quiet,
        diversity_map=not no_map,
    )
    if as_json:
        figures = {**figures, "outputs": {k: str(v) for k, v in paths.items()}}
        click.echo(json.dumps(figures, indent=2, ensure_ascii=False))
        return
    for note in figures["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
    click.echo(f"report: {paths['report']}")
    click.echo(f"dataset card: {paths['card']}")
