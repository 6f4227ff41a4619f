"""`selfinstruct review RUN`: people review a sample of the run's tasks, or compare base and student blind."""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path

import click

from pipeline.core.console import console
from pipeline.core.errors import UserError


def default_reviewer() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "reviewer"


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "--pairwise",
    "eval_path",
    type=click.Path(),
    default=None,
    help="Blind A/B of base vs student: an `evaluate --out` folder or its eval.json.",
)
@click.option(
    "--summary", is_flag=True, help="Print what the labels say (the paper's table, agreement, judges)."
)
@click.option(
    "--import",
    "import_file",
    type=click.Path(),
    default=None,
    help="Add labels made elsewhere: JSONL with task_id, valid_instruction, input_ok, output_ok, reviewer "
    "and optional instance.",
)
@click.option(
    "--reviewer",
    "reviewers",
    multiple=True,
    help="Who reviews; repeat it for several reviewers, each with a queue of their own (default: $USER).",
)
@click.option(
    "--sample", type=click.IntRange(min=1), default=60, show_default=True, help="Tasks in each queue."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the sample and of the order shown."
)
@click.option(
    "--overlap",
    type=click.FloatRange(0.0, 1.0),
    default=0.2,
    show_default=True,
    help="With several reviewers: the share of each queue every reviewer gets, to measure agreement.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve the page on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free)."
)
@click.option(
    "--token",
    envvar="SELFINSTRUCT_REVIEW_TOKEN",
    default=None,
    help="Token the page must carry; made up for you when --host is beyond loopback.",
)
@click.option(
    "--target-precision",
    type=click.FloatRange(0.0, 1.0),
    default=0.8,
    show_default=True,
    help="--summary: name the smallest judge --min-score whose kept tasks reach this precision.",
)
@click.option("--quiet", is_flag=True, help="Print only the URL(s).")
@click.option("--json", "as_json", is_flag=True, help="--summary and --import: print the result as JSON.")
def review(
    run_dir: str,
    eval_path: str | None,
    summary: bool,
    import_file: str | None,
    reviewers: tuple[str, ...],
    sample: int,
    seed: int,
    overlap: float,
    host: str,
    port: int,
    token: str | None,
    target_precision: float,
    quiet: bool,
    as_json: bool,
) -> None:
    """Review RUN_DIR as the Self-Instruct paper did: a seeded sample of kept tasks, one instance each,
    three yes/no questions, in a local web page driven from the keyboard. With --pairwise EVAL, rate the
    base model's and the student's answers blind (A-D each, then a preference).

    Every answer is saved to RUN_DIR/reviews.jsonl the moment it is given; rerun the command to continue
    where you stopped. --summary prints the figures; --import adds labels made elsewhere.
    """
    from pipeline.review.summary import review_summary

    modes = [
        flag
        for flag, given in (("--import", import_file), ("--summary", summary), ("--pairwise", eval_path))
        if given
    ]
    if len(modes) > 1:
        raise UserError(f"{' and '.join(modes)} exclude each other: give one of them")
    if import_file is not None:
        from pipeline.review.importer import import_labels

        result = import_labels(run_dir, import_file)
        if as_json:
            click.echo(json.dumps(result))
        elif not quiet:
            console.print(
                f"{import_file}: {result['imported']} label(s) imported, {result['already_present']} already present"
            )
        return
    if summary:
        figures = review_summary(run_dir, target_precision)
        if as_json:
            click.echo(json.dumps(figures, indent=2, ensure_ascii=False))
        else:
            from pipeline.review.render import print_summary

            print_summary(figures, console)
        return
    serve(
        run_dir,
        eval_path,
        list(reviewers) or [default_reviewer()],
        sample,
        seed,
        overlap,
        host,
        port,
        token,
        quiet,
    )


def serve(
    run_dir: str,
    eval_path: str | None,
    reviewers: list[str],
    sample: int,
    seed: int,
    overlap: float,
    host: str,
    port: int,
    token: str | None,
    quiet: bool,
) -> None:
    """Build the session, check the address, serve until Ctrl-C, then print what was reviewed."""
    import uvicorn

    from pipeline.review.app import is_loopback, make_app
    from pipeline.review.sessions import PairReview, TaskReview

    if len(set(reviewers)) != len(reviewers):
        raise UserError(f"--reviewer: a name is given twice ({', '.join(reviewers)})")
    if eval_path is not None:
        session: TaskReview | PairReview = PairReview(Path(run_dir), Path(eval_path), reviewers, seed)
    else:
        session = TaskReview(Path(run_dir), reviewers, sample, seed, overlap)
    if not token and not is_loopback(host):
        token = secrets.token_urlsafe(16)
    port = _bind_check(host, port)
    if not quiet:
        _describe(session, reviewers)
    for reviewer in reviewers:
        query = f"?reviewer={reviewer}" + (f"&token={token}" if token else "")
        click.echo(f"review page for {reviewer}: http://{_url_host(host)}:{port}/{query}")
    if not quiet:
        console.print("every answer is saved as it is given; Ctrl-C stops the server")
    config = uvicorn.Config(
        make_app(session, token), host=host, port=port, log_level="warning", access_log=False
    )
    uvicorn.Server(config).run()
    if not quiet:
        _after(session, run_dir)


def _bind_check(host: str, port: int) -> int:
    """The port to serve on, checked free now: a clear error instead of uvicorn's traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"--host {host} --port {port}: cannot serve there ({exc.strerror}); pick another --port"
            ) from None
        return int(sock.getsockname()[1])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _describe(session, reviewers: list[str]) -> None:
    if session.mode == "pairs":
        console.print(
            f"blind comparison of {len(session.items)} tasks from {session.eval_path} "
            f"(answer order drawn per task from seed {session.seed})"
        )
        return
    for reviewer in reviewers:
        queue = session.queues[reviewer]
        shared = f", {queue.shared} shared with the other reviewers" if len(reviewers) > 1 else ""
        short = " (the run has fewer tasks than asked)" if queue.short else ""
        done = session.progress(reviewer)
        console.print(
            f"{reviewer}: {len(queue.task_ids)} tasks{shared}{short}; {done['labelled']} labelled so far "
            f"(sample of {session.pool} kept tasks, stratified by {session.strata}, seed {session.seed})"
        )


def _after(session, run_dir: str) -> None:
    from pipeline.review.render import print_pairwise, print_summary
    from pipeline.review.summary import review_summary

    figures = review_summary(run_dir)
    if session.mode == "pairs":
        session.write_human()
        for entry in figures["pairwise"]:
            if entry["eval_id"] == session.eval_id:
                print_pairwise(entry, console)
        console.print(f"written to {session.eval_path} under `human`")
    else:
        print_summary({**figures, "pairwise": []}, console)
