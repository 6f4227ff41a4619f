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

With `--size N` (e.g. 300000) it measures growth instead: a corpus of the 52K lines plus
paraphrase-like variants of them (`variants`: a few words swapped, dropped or inserted, so
near-duplicates stay realistic), shuffled with a fixed seed; on its first 52K, 100K and N lines (one
distribution at every size; each in a child
process, so its peak memory is its own `ru_maxrss`), the time and peak memory of the decisions, and of
the decisions with the similarity statistics where they fit (`--stats-up-to`); then the growth
exponent of the decisions' time (a log-log fit) against the 52K run measured here, and the targets
(N = 300K decisions in <= 60 s and < 4 GiB).

usage: python bench/dedup.py [--lines 2000] [--cpus N] [--no-stats-52k]
       python bench/dedup.py --size 300000 [--stats-up-to 52000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
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
from pipeline.quality.rouge import Vocabulary, fmeasure_array, lcs_matrix, tokenize  # noqa: E402

DATA = ROOT.parent / "shared" / "bench" / "instructions_52k.jsonl"
THRESHOLD = 0.7
SAMPLED_LINES = 300  # kept lines whose mean similarity the sampled estimate gives
SAMPLE_SIZE = 2000  # index entries it scores them against


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


def variants(texts: list[str], size: int, seed: int) -> list[str]:
    """The texts plus `size - len(texts)` paraphrase-like variants of randomly chosen ones, shuffled.

    A variant makes 1 to 6 edits to its source's words, each a swap of two neighbours, a dropped word or
    a word inserted from another text: one or two edits leave a near-duplicate (ROUGE-L above 0.7 for
    most lines), more make a new line that still shares most of its words."""
    rng = random.Random(seed)
    out = list(texts)
    words = [w for t in texts[:5000] for w in t.split()]
    while len(out) < size:
        tokens = rng.choice(texts).split()
        for _ in range(rng.randint(1, 6)):
            edit = rng.random()
            if edit < 0.4 and len(tokens) > 1:
                k = rng.randrange(len(tokens) - 1)
                tokens[k], tokens[k + 1] = tokens[k + 1], tokens[k]
            elif edit < 0.7 and len(tokens) > 2:
                del tokens[rng.randrange(len(tokens))]
            else:
                tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(words))
        out.append(" ".join(tokens))
    rng.shuffle(out)
    return out[:size]


def sampled_means(kept: list[str], lines: int, sample: int, seed: int) -> list[tuple[int, float, float]]:
    """Each of `lines` seeded kept lines' mean ROUGE-L against the lines kept before it, estimated on a
    seeded sample of `sample` of those (drawn for each line on its own, so the lines' errors are
    independent): (position, estimate, standard error with the finite-population correction).
    O(N + lines x sample) instead of O(kept^2)."""
    rng = random.Random(seed)
    vocab = Vocabulary()
    codes = [vocab.encode(tokenize(text)) for text in kept]
    lens = np.array([len(c) for c in codes], dtype=np.int64)
    out = []
    for p in sorted(rng.sample(range(2, len(kept)), min(lines, len(kept) - 2))):
        k = min(sample, p)
        pool = rng.sample(range(p), k)
        scores = fmeasure_array(
            lcs_matrix([codes[p]], [codes[j] for j in pool])[0], len(codes[p]), lens[pool]
        )
        se = float(scores.std(ddof=1)) / math.sqrt(k) * math.sqrt(max(0.0, 1 - k / p))
        out.append((p, float(scores.mean()), se))
    return out


def measure_one(args: argparse.Namespace) -> int:
    """Child process: decide (and with --stats describe) the first `--measure` lines of the corpus;
    then the sampled mean-similarity estimate (its time), checked against the exact means with --stats."""
    corpus = variants(load(args.data), max(args.size or 0, args.measure), args.seed)[: args.measure]
    seconds, index, results = ours(corpus, stats=args.with_stats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    row = {"lines": len(corpus), "kept": len(index), "seconds": seconds, "peak_bytes": peak}
    row["pairs_described"] = index.stats["pairs_described"]
    start = time.perf_counter()
    estimates = sampled_means(index.texts, SAMPLED_LINES, SAMPLE_SIZE, args.seed)
    row["sampled_s"] = time.perf_counter() - start
    row["sampled_mean"] = statistics.fmean(e for _, e, _ in estimates)
    row["sampled_mean_se"] = math.sqrt(sum(se * se for _, _, se in estimates)) / len(estimates)
    if args.with_stats:
        exact = [r.avg_similarity for r in results if r.kept]
        within = [abs(e - exact[p]) <= 2 * se + 1e-12 for p, e, se in estimates]
        row["sampled_within_2se"] = sum(within) / len(within)
        row["sampled_abs_error"] = statistics.fmean(abs(e - exact[p]) for p, e, _ in estimates)
        row["exact_mean"] = statistics.fmean(exact[p] for p, _, _ in estimates)
    print(json.dumps(row))
    return 0


def growth(args: argparse.Namespace) -> int:
    """The decisions (and the statistics, where they fit) at 52K, 100K and `--size` lines."""
    sizes = sorted({52_000, 100_000, args.size} - {s for s in (100_000,) if s >= args.size})
    print(
        f"corpus: {args.data} plus paraphrase-like variants (seed {args.seed}) up to {args.size:,} lines; "
        f"machine: {os.cpu_count()} cores; threshold {THRESHOLD}"
    )
    rows = []
    for size in sizes:
        for stats in (False, True):
            if stats and size > args.stats_up_to:
                continue
            command = [sys.executable, __file__, "--data", str(args.data), "--measure", str(size)]
            command += ["--size", str(args.size)]
            command += ["--seed", str(args.seed)] + (["--with-stats"] if stats else [])
            child = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(child.stdout.strip().splitlines()[-1]) | {"stats": stats}
            rows.append(row)
            what = "decisions + similarity stats" if stats else "decisions"
            print(
                f"  {size:>8,} lines, {what:28}: {row['seconds']:7.2f} s, peak {row['peak_bytes'] / 2**30:5.2f} GiB, "
                f"kept {row['kept']:,}",
                flush=True,
            )
            if not stats:
                print(
                    f"  {'':>8}  sampled mean similarity ({SAMPLED_LINES} kept lines x {SAMPLE_SIZE} entries, "
                    f"seed {args.seed}): {row['sampled_mean']:.4f} +- {row['sampled_mean_se']:.4f} (SE) in "
                    f"{row['sampled_s']:.2f} s",
                    flush=True,
                )
            else:
                print(
                    f"  {'':>8}  exact: {row['pairs_described']:,} pairs; the sampled estimate of the same lines' "
                    f"means: mean |error| {row['sampled_abs_error']:.4f}, {row['sampled_within_2se']:.0%} within "
                    f"2 SE (exact {row['exact_mean']:.4f}, sampled {row['sampled_mean']:.4f})",
                    flush=True,
                )
    decided = [r for r in rows if not r["stats"]]
    base, last = decided[0], decided[-1]
    exponent = math.log(last["seconds"] / base["seconds"]) / math.log(last["lines"] / base["lines"])
    print(
        f"growth of the decisions' time, {base['lines']:,} -> {last['lines']:,} lines: exponent {exponent:.2f} "
        f"({last['seconds'] / base['seconds']:.2f}x the time of the 52K baseline for "
        f"{last['lines'] / base['lines']:.2f}x the lines)"
    )
    described = [r for r in rows if r["stats"]]
    if described:
        exact = described[-1]
        stats_s = exact["seconds"] - next(r["seconds"] for r in decided if r["lines"] == exact["lines"])
        per_pair = stats_s / max(1, exact["pairs_described"])
        full_pairs = last["kept"] * (last["kept"] - 1) / 2
        exact_s = full_pairs * per_pair
        verdict = (
            "more than the decisions: past this size the mean is estimated on a seeded sample"
            if exact_s > last["seconds"]
            else "less than the decisions: the exact statistics still fit here; the sampled estimate is beside them"
        )
        print(
            f"exact statistics at {last['lines']:,} lines: ~{full_pairs:,.0f} pairs, ~{exact_s:,.0f} s at the "
            f"{exact['lines']:,}-line rate ({stats_s:.1f} s for {exact['pairs_described']:,} pairs), {verdict} "
            f"({last['sampled_s']:.2f} s, with its standard error) vs {last['seconds']:.1f} s for the decisions"
        )
    ok_time, ok_mem = last["seconds"] <= 60.0, last["peak_bytes"] < 4 * 2**30
    print(
        f"{last['lines']:,} decisions: {last['seconds']:.1f} s ({'meets' if ok_time else 'MISSES'} <= 60 s), "
        f"peak {last['peak_bytes'] / 2**30:.2f} GiB ({'meets' if ok_mem else 'MISSES'} < 4 GiB)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=None, help="measure growth up to this many lines")
    parser.add_argument("--stats-up-to", type=int, default=52_000, help="with --size: stats at these sizes")
    parser.add_argument("--seed", type=int, default=0, help="with --size: the variants' seed")
    parser.add_argument("--measure", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--with-stats", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--lines", type=int, default=2000, help="lines for the baseline comparison")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="baseline Pool size")
    parser.add_argument("--no-stats-52k", action="store_true", help="skip the full run with similarity stats")
    args = parser.parse_args()
    if args.measure is not None:
        return measure_one(args)
    if args.size is not None:
        if args.size < 52_000:
            parser.error("--size must be at least 52000")
        return growth(args)

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
