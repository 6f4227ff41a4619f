"""`selfinstruct push RUN_DIR REPO_ID`: the run's dataset, card and report to a Hub dataset repo."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path())
@click.argument("repo_id")
@click.option(
    "--private", is_flag=True, help="Create the dataset repo as private (an existing repo keeps its own)."
)
@click.option(
    "--license",
    "license_id",
    default=None,
    help="License id for the card, one of the Hub's (default: the teacher's when known, else 'other').",
)
@click.option(
    "--test-size", type=float, default=0.05, show_default=True, help="Share of tasks in the test split."
)
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the train/test split.")
@click.option("--json", "as_json", is_flag=True, help="Print what was sent as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def push(
    run_dir: str,
    repo_id: str,
    private: bool,
    license_id: str | None,
    test_size: float,
    seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Publish RUN_DIR to the Hub dataset repo REPO_ID (USER/NAME): the kept tasks as Parquet
    (data/train-*.parquet, data/test-*.parquet), the dataset card README.md and report.html.

    The card is checked offline first (huggingface_hub's DatasetCard, the Hub's license ids, files named
    by its configs). The token is huggingface_hub's (HF_TOKEN or `hf auth login`); HF_ENDPOINT picks
    another Hub. Nothing is sent by any other command.
    """
    from pipeline.publish.card import check_card
    from pipeline.publish.hub import check_access, check_online, check_repo_id, upload
    from pipeline.report.build import write_report
    from pipeline.report.licenses import check_license
    from pipeline.run.export import export_run
    from pipeline.run.reader import Run

    check_online()
    check_repo_id(repo_id)
    if license_id is not None:
        license_id = check_license(license_id)
    Run.open(run_dir)
    check_access()  # a missing token or an unreachable Hub is said before the work
    with tempfile.TemporaryDirectory(prefix="selfinstruct-push-") as tmp:
        stage = Path(tmp) / "repo"
        info = export_run(run_dir, "parquet", stage, test_size=test_size, seed=seed)
        _, paths = write_report(run_dir, stage, license_id=license_id, repo_id=repo_id, quiet=quiet)
        files = [p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()]
        check_card(paths["card"].read_text(encoding="utf-8"), files)
        sent = upload(stage, repo_id, private=private, message=f"selfinstruct push of {Path(run_dir).name}")
    sent.update(tasks=info["tasks"], examples=info["examples"], train=info["train"], test=info["test"])
    if as_json:
        click.echo(json.dumps(sent, indent=2))
        return
    click.echo(
        f"pushed {info['examples']} examples ({info['train']} train, {info['test']} test) from {info['tasks']} "
        f"tasks, the card and the report to {sent['url']} (commit {sent['commit'][:12]})"
    )
