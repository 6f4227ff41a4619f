"""Dedup benchmark: the Alpaca method vs ours on the same lines, then ours at Alpaca scale.

Runs in one process on ../shared/bench/instructions_52k.jsonl (greedy, threshold 0.7, each line
against every line kept before it):
  1. baseline: stanford_alpaca's generate_instruction.py loop — rouge-score tokens, `_score_lcs` per
     pair mapped over a `multiprocessing.Pool` opened per candidate, top-10 by `np.argsort`, mean by
     `np.mean` — on the first 2,000 lines;
  2. ours (`RougeIndex`) on the same lines, asserting identical keep/drop decisions and bit-identical
     max scores, and the speed ratio;
  3. ours on all 52,000 lines: wall time, pairs scored vs pruned.
Timings on a shared machine are noisy; the ratio is measured within one run.

usage: python bench/dedup.py [--lines 2000] [--cpus N] [--no-stats-52k]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from rouge_score import rouge_scorer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.quality.dedup import DedupConfig, RougeIndex  # noqa: E402

DATA = ROOT.parent / "shared" / "bench" / "instructions_52k.jsonl"
THRESHOLD = 0.7


def load(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["instruction"] for line in handle if line.strip()]


def alpaca_baseline(
    texts: list[str], cpus: int
) -> tuple[list[bool], list[float], list[float], list[list[float]]]:
    """stanford_alpaca's dedup loop, unchanged in substance (an empty pool keeps the first line)."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    all_instructions: list[str] = []
    all_tokens: list[list[str]] = []
    kept, max_scores, means, tops = [], [], [], []
    for text in texts:
        new_tokens = scorer._tokenizer.tokenize(text)
        with Pool(cpus) as pool:
            scores = pool.map(partial(rouge_scorer._score_lcs, new_tokens), all_tokens)
        scores = [score.fmeasure for score in scores]
        best = max(scores) if scores else 0.0
        max_scores.append(best)
        tops.append(sorted(scores, reverse=True)[:10])
        if best > THRESHOLD:
            kept.append(False)
            means.append(0.0)
            continue
        kept.append(True)
        means.append(float(np.mean(scores)) if scores else 0.0)
        _most_similar = {all_instructions[i]: scores[i] for i in np.argsort(scores)[-10:][::-1]}
        all_instructions.append(text)
        all_tokens.append(new_tokens)
    return kept, max_scores, means, tops


def ours(texts: list[str], stats: bool) -> tuple[float, RougeIndex, list]:
    index = RougeIndex(DedupConfig(threshold=THRESHOLD, similarity_stats=stats))
    start = time.perf_counter()
    results = index.offer_many(texts)
    return time.perf_counter() - start, index, results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--lines", type=int, default=2000, help="lines for the baseline comparison")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="baseline Pool size")
    parser.add_argument("--no-stats-52k", action="store_true", help="skip the full run with similarity stats")
    args = parser.parse_args()

    texts = load(args.data)
    head = texts[: args.lines]
    print(f"data: {args.data} ({len(texts):,} lines); machine: {os.cpu_count()} cores; threshold {THRESHOLD}")

    # 1. baseline
    start = time.perf_counter()
    ref_kept, ref_max, ref_mean, ref_top = alpaca_baseline(head, args.cpus)
    baseline_s = time.perf_counter() - start
    print(
        f"[1] alpaca baseline, {len(head):,} lines (Pool({args.cpus}) per candidate): {baseline_s:.2f}s, "
        f"kept {sum(ref_kept):,}"
    )

    # 2. ours on the same lines: decisions, max scores, top-10 scores and means must agree
    timings = []
    for _ in range(3):
        seconds, index, results = ours(head, stats=True)
        timings.append(seconds)
    ours_s = statistics.median(timings)
    decisions = [r.kept for r in results]
    assert decisions == ref_kept, "keep/drop decisions differ from the Alpaca baseline"
    assert [r.max_score for r in results] == ref_max, "max scores are not bit-identical"
    for r, top, mean in zip(results, ref_top, ref_mean, strict=True):
        if r.kept:
            assert list(r.most_similar.values()) == top[: len(r.most_similar)], "top-10 scores differ"
            assert abs(r.avg_similarity - mean) <= 1e-12, "mean similarity differs"
    fast_s, fast_index, fast_results = ours(head, stats=False)
    assert [r.kept for r in fast_results] == ref_kept
    print(
        f"[2] ours, same {len(head):,} lines: {ours_s * 1000:.1f} ms with similarity stats "
        f"(median of 3), {fast_s * 1000:.1f} ms decisions only; identical decisions, bit-identical max "
        f"scores, same top-10 scores and means"
    )
    print(
        f"    speed-up: {baseline_s / ours_s:,.0f}x (with stats), {baseline_s / fast_s:,.0f}x (decisions only)"
    )

    # 3. ours at Alpaca scale
    seconds, index, results = ours(texts, stats=False)
    s = index.stats
    total = s["pairs_scored"] + s["pairs_pruned"]
    print(
        f"[3] ours, all {len(texts):,} lines, decisions only: {seconds:.2f}s, kept {len(index):,}; "
        f"pairs scored {s['pairs_scored']:,} vs pruned {s['pairs_pruned']:,} "
        f"({s['pairs_pruned'] / max(total, 1):.2%} of {total:,} pruned)"
    )
    if not args.no_stats_52k:
        full_s, full_index, full_results = ours(texts, stats=True)
        same = [r.kept for r in full_results] == [r.kept for r in results]
        print(
            f"    with similarity stats (top-10 + mean for every kept line): {full_s:.2f}s, "
            f"{full_index.stats['pairs_described']:,} pairs described; same decisions: {same}"
        )
        assert same
    return 0


if __name__ == "__main__":
    sys.exit(main())
