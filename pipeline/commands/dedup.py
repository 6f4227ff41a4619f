"""`selfinstruct dedup`: drop near-duplicate records of a JSONL file by exact ROUGE-L, keeping the first."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from pipeline.core.console import console
from pipeline.core.warncapture import capture_warnings
from pipeline.quality.config import STATS_SAMPLE


def _read_texts(path: str, field: str, fallback: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Records and their text field; every bad line is reported at once, with its number and field."""
    from pipeline.core.errors import InputFileError
    from pipeline.core.jsonio import iter_jsonl

    records: list[dict[str, Any]] = []
    texts: list[str] = []
    problems: list[str] = []
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            problems.append(f"line {lineno}: expected a JSON object, got {type(obj).__name__}")
            continue
        name = field if field in obj or fallback is None or fallback not in obj else fallback
        if name not in obj:
            problems.append(f'line {lineno}, field "{field}": missing field')
            continue
        value = obj[name]
        if not isinstance(value, str):
            problems.append(f'line {lineno}, field "{name}": expected a string, got {type(value).__name__}')
            continue
        records.append(obj)
        texts.append(value)
    if problems:
        raise InputFileError(path, problems)
    return records, texts


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def check_outputs(input_path: str, against: tuple[str, ...], output: str, rejected: str | None) -> None:
    """Before any work: each output can be written, and none of them is an input (it would be lost)."""
    from pipeline.core.errors import UserError
    from pipeline.core.outputs import check_output_file

    inputs = {
        Path(p).resolve(): flag for p, flag in [(input_path, "INPUT"), *((a, "--against") for a in against)]
    }
    outputs = [(output, "-o")] + ([(rejected, "--rejected")] if rejected is not None else [])
    for path, flag in outputs:
        if Path(path).resolve() in inputs:
            raise UserError(
                f"{flag} {path} is also the {inputs[Path(path).resolve()]} file; writing it would replace "
                "the input: give another output path"
            )
        check_output_file(path, flag)
    if rejected is not None and Path(rejected).resolve() == Path(output).resolve():
        raise UserError(f"--rejected {rejected} is also the -o file: give two different paths")


def _stats_fields(result: Any) -> dict[str, Any]:
    """What a kept record gains: its neighbours and mean similarity, and how that mean was sampled."""
    fields = {"most_similar": result.most_similar, "avg_similarity": result.avg_similarity}
    if result.avg_similarity_sample is not None:
        fields["avg_similarity_se"] = result.avg_similarity_se
        fields["avg_similarity_sample"] = result.avg_similarity_sample
    return fields


@click.command()
@click.argument("input_path", metavar="INPUT.jsonl", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Kept records (JSONL).")
@click.option("--field", default="instruction", show_default=True, help="The text field to compare.")
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    default=0.7,
    show_default=True,
    help="Drop a record whose ROUGE-L F1 with an earlier kept one (or an --against text) is above this.",
)
@click.option(
    "--against",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="JSONL whose texts (--field, else 'instruction', so seed files work) are in the pool first. Repeatable.",
)
@click.option(
    "--tokenizer",
    type=click.Choice(["rouge", "unicode"]),
    default="rouge",
    show_default=True,
    help="rouge: rouge-score's tokenizer (ASCII words only, as the originals); unicode: any language.",
)
@click.option(
    "--rejected", "rejected_path", type=click.Path(dir_okay=False), help="Write dropped records here."
)
@click.option(
    "--top-k", type=click.IntRange(0), default=10, show_default=True, help="Most similar texts kept."
)
@click.option(
    "--stats-sample",
    type=click.IntRange(2),
    default=STATS_SAMPLE,
    show_default=True,
    help="Past this many texts in the pool, a kept record's avg_similarity is the mean over a seeded sample "
    "of this many, written with avg_similarity_se and avg_similarity_sample.",
)
@click.option(
    "--no-stats",
    is_flag=True,
    help="Only decide (same decisions, faster): kept records get no most_similar/avg_similarity.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def dedup(
    input_path: str,
    output: str,
    field: str,
    threshold: float,
    against: tuple[str, ...],
    tokenizer: str,
    rejected_path: str | None,
    top_k: int,
    stats_sample: int,
    no_stats: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Keep the first of every group of near-duplicates in INPUT.jsonl, in input order.

    Exact Self-Instruct/Alpaca semantics: a record is dropped when its ROUGE-L F-measure (rouge-score's,
    to the last bit) against the --against texts or any record kept before it is above --threshold.
    Kept records are written unchanged plus "most_similar" and "avg_similarity" (past --stats-sample
    pool texts, a sampled mean, with "avg_similarity_se" and "avg_similarity_sample").
    """
    from pipeline.core.console import make_progress
    from pipeline.core.jsonio import write_text_atomic
    from pipeline.quality.dedup import DedupConfig, DedupDisabledWarning, RougeIndex

    check_outputs(input_path, against, output, rejected_path)
    started = time.perf_counter()
    records, texts = _read_texts(input_path, field)
    pool: list[str] = []
    for path in against:
        pool.extend(_read_texts(path, field, fallback="instruction")[1])

    config = DedupConfig(
        threshold=threshold,
        tokenizer=tokenizer,
        top_k=top_k,
        similarity_stats=not no_stats,
        stats_sample=stats_sample,
    )
    index = RougeIndex(config)
    with capture_warnings(DedupDisabledWarning) as caught:
        index.add_many(pool)
        with make_progress(quiet=quiet or len(texts) < 2000) as progress:
            task = progress.add_task("dedup", total=len(texts))
            results = index.offer_many(texts, on_progress=lambda n: progress.advance(task, n))
    for warning in caught:
        console.print(f"[yellow]warning:[/] {warning.message}")

    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for record, result in zip(records, results, strict=True):
        if result.kept:
            extra = {} if no_stats else _stats_fields(result)
            kept.append({**record, **extra})
        else:
            dropped.append(
                {
                    **record,
                    "reasons": ["rouge_l_duplicate"],
                    "max_score": result.max_score,
                    "most_similar": result.most_similar,
                }
            )
    write_text_atomic(output, _jsonl(kept))
    if rejected_path is not None:
        write_text_atomic(rejected_path, _jsonl(dropped))

    stats = index.stats
    summary = {
        "input": str(Path(input_path)),
        "records": len(records),
        "against": len(pool),
        "kept": len(kept),
        "rejected": len(dropped),
        "threshold": threshold,
        "tokenizer": tokenizer,
        "pairs_scored": stats["pairs_scored"],
        "pairs_pruned": stats["pairs_pruned"],
        "wordless_texts": stats["wordless_texts"],
        "seconds": round(time.perf_counter() - started, 3),
        "output": str(Path(output)),
        "rejected_output": rejected_path,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"kept {len(kept):,} of {len(records):,} records, dropped {len(dropped):,} near-duplicates "
        f"(ROUGE-L > {threshold:g}; pool {len(pool):,} --against texts) in {summary['seconds']:.2f}s; "
        f"pairs scored {stats['pairs_scored']:,}, pruned {stats['pairs_pruned']:,} -> {output}"
    )
