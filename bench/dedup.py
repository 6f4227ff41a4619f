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
distribution at every size; each run in a child process, so its peak memory is its own `ru_maxrss`):
  - the baseline, the same greedy decisions with every pair scored (`brute_force`: rapidfuzz `cdist`
    in blocks, both cores), on the 52K lines: decisions and max scores must hash the same as ours; at
    larger sizes its time is its measured rate times the pairs there;
  - the time and peak memory of our decisions, and of the decisions with the similarity statistics
    (top-10 and mean, the mean on a seeded sample past `dedup.stats_sample` entries), with the ratio
    against the baseline;
  - at 52K, the exact statistics (every pair), and how far the sampled means are from them in standard
    errors;
  - the growth exponents (log-log between 52K and N) and the targets (N = 300K decisions in <= 60 s
    and < 4 GiB).
The CPU capability heads the printout.

usage: python bench/dedup.py [--lines 2000] [--cpus N] [--no-stats-52k]
       python bench/dedup.py --size 300000 [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from rouge_score import rouge_scorer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.quality.config import STATS_SAMPLE  # noqa: E402
from pipeline.quality.dedup import DedupConfig, RougeIndex  # noqa: E402
from pipeline.quality.rouge import Vocabulary, fmeasure_array, lcs_matrix, tokenize  # noqa: E402

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


def cpu_capability() -> str:
    """The vector instructions numpy and rapidfuzz can use here, from /proc/cpuinfo (importing torch for
    `get_cpu_capability` would cost more than some of the runs it labels)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(
        next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    )
    model = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?"
    )
    best = "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "DEFAULT"
    marks = ", ".join(
        f"{flag} {'yes' if flag in flags else 'no'}"
        for flag in ("avx2", "avx512f", "avx512_bf16", "amx_tile")
    )
    return f"{best} ({model}; {marks}; {os.cpu_count()} cores)"


def brute_force(texts: list[str], block: int = 128) -> tuple[list[bool], list[float], int]:
    """The same greedy decisions with every pair scored, as directly as rapidfuzz allows: a block of
    lines against every line kept before the block in one multi-core `cdist` (C, bit-parallel LCS),
    then, in order, against the lines of the block kept before them. No bounds, no index."""
    vocab = Vocabulary()
    codes = [vocab.encode(tokenize(text)) for text in texts]
    lens = np.array([len(code) for code in codes], dtype=np.int64)
    kept_codes: list[str] = []
    kept_lens: list[int] = []
    kept, best_scores, pairs = [], [], 0
    for start in range(0, len(codes), block):
        part, part_lens = codes[start : start + block], lens[start : start + block]
        prior = np.zeros(len(part))
        if kept_codes:
            scores = fmeasure_array(
                lcs_matrix(part, kept_codes), part_lens[:, None], np.array(kept_lens)[None, :]
            )
            prior = scores.max(axis=1)
        inner = fmeasure_array(lcs_matrix(part, part), part_lens[:, None], part_lens[None, :])
        here: list[int] = []
        for q, code in enumerate(part):
            best = float(prior[q])
            if here:
                best = max(best, float(inner[q, here].max()))
            pairs += len(kept_codes)
            best_scores.append(best)
            kept.append(not best > THRESHOLD)
            if kept[-1]:
                here.append(q)
                kept_codes.append(code)
                kept_lens.append(len(code))
    return kept, best_scores, pairs


def digest(kept: list[bool], best: list[float]) -> str:
    """One hash of the keep/drop decisions and of the rejected lines' max scores (bit for bit)."""
    rejected = np.array([score for k, score in zip(kept, best, strict=True) if not k], dtype=np.float64)
    return hashlib.sha256(np.packbits(kept).tobytes() + rejected.tobytes()).hexdigest()[:16]


def measure_one(args: argparse.Namespace) -> int:
    """Child process (its peak memory is its own): one `--mode` on the first `--measure` lines."""
    corpus = variants(load(args.data), max(args.size or 0, args.measure), args.seed)[: args.measure]
    start = time.perf_counter()
    if args.mode == "brute":
        kept, best, pairs = brute_force(corpus)
        row = {"pairs": pairs, "kept": sum(kept)}
    else:
        sample = 10**12 if args.mode == "exact" else STATS_SAMPLE
        config = DedupConfig(threshold=THRESHOLD, similarity_stats=args.mode != "decide", stats_sample=sample)
        index = RougeIndex(config)
        results = index.offer_many(corpus)
        kept, best = [r.kept for r in results], [r.max_score for r in results]
        s = index.stats
        row = {"pairs": s["pairs_scored"] + s["pairs_pruned"], "kept": len(index)}
        row |= {"pairs_scored": s["pairs_scored"], "pairs_described": s["pairs_described"]}
        if args.mode != "decide":
            means = [(r.avg_similarity, r.avg_similarity_se or 0.0) for r in results if r.kept]
            np.save(args.save, np.array(means))
            row["sampled"] = sum(1 for r in results if r.kept and r.avg_similarity_sample)
    row |= {"seconds": time.perf_counter() - start, "digest": digest(kept, best)}
    row["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(row))
    return 0


def child(args: argparse.Namespace, size: int, mode: str, save: Path) -> dict:
    command = [sys.executable, __file__, "--data", str(args.data), "--measure", str(size), "--mode", mode]
    command += ["--size", str(args.size), "--seed", str(args.seed), "--save", str(save)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1]) | {"lines": size, "mode": mode}


def exponent(rows: list[dict]) -> float:
    """Slope of log(time) against log(lines) between the smallest and the largest size."""
    return math.log(rows[-1]["seconds"] / rows[0]["seconds"]) / math.log(rows[-1]["lines"] / rows[0]["lines"])


def growth(args: argparse.Namespace) -> int:
    """Decisions, and decisions with the similarity statistics, at 52K, 100K and `--size` lines; the
    brute-force baseline (every pair scored) measured on the 52K lines of the same run."""
    sizes = sorted({52_000, 100_000, args.size} - {s for s in (100_000,) if s >= args.size})
    print(
        f"corpus: {args.data} plus paraphrase-like variants (seed {args.seed}) up to {args.size:,} lines; "
        f"threshold {THRESHOLD}; CPU capability: {cpu_capability()}"
    )
    scratch = Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    base = child(args, sizes[0], "brute", scratch / "brute.npy")
    rate = base["seconds"] / base["pairs"]
    print(
        f"  baseline, every pair scored (rapidfuzz cdist in blocks), {sizes[0]:,} lines: {base['seconds']:.2f} s, "
        f"{base['pairs']:,} pairs ({rate * 1e9:.1f} ns a pair), kept {base['kept']:,}",
        flush=True,
    )
    decided, described = [], []
    for size in sizes:
        for mode, rows in (("decide", decided), ("stats", described)):
            row = child(args, size, mode, scratch / f"{mode}-{size}.npy")
            rows.append(row)
            if size == sizes[0]:
                assert row["digest"] == base["digest"], "decisions or max scores differ from the baseline"
            brute_s = rate * row["pairs"]
            vs = f"{brute_s / row['seconds']:6.1f}x the baseline ({'measured' if size == sizes[0] else 'its rate x pairs'}: {brute_s:,.0f} s)"
            what = "decisions" if mode == "decide" else f"decisions + stats (sample past {STATS_SAMPLE:,})"
            print(
                f"  {size:>8,} lines, {what:38}: {row['seconds']:7.2f} s, peak {row['peak_bytes'] / 2**30:5.2f} GiB, "
                f"kept {row['kept']:,}; {vs}",
                flush=True,
            )
    sampled_check(args, sizes[0], scratch)
    print(
        f"growth, {sizes[0]:,} -> {sizes[-1]:,} lines ({sizes[-1] / sizes[0]:.2f}x): decisions exponent "
        f"{exponent(decided):.2f} ({decided[-1]['seconds'] / decided[0]['seconds']:.2f}x the time), "
        f"decisions + stats exponent {exponent(described):.2f} "
        f"({described[-1]['seconds'] / described[0]['seconds']:.2f}x); every pair: exponent "
        f"{math.log(decided[-1]['pairs'] / decided[0]['pairs']) / math.log(sizes[-1] / sizes[0]):.2f}"
    )
    last = decided[-1]
    ok_time, ok_mem = last["seconds"] <= 60.0, last["peak_bytes"] < 4 * 2**30
    print(
        f"{last['lines']:,} decisions: {last['seconds']:.1f} s ({'meets' if ok_time else 'MISSES'} <= 60 s), "
        f"peak {last['peak_bytes'] / 2**30:.2f} GiB ({'meets' if ok_mem else 'MISSES'} < 4 GiB)"
    )
    return 0


def sampled_check(args: argparse.Namespace, size: int, scratch: Path) -> None:
    """The sampled means of the `size`-line run against the exact ones (every pair, same lines)."""
    exact_row = child(args, size, "exact", scratch / "exact.npy")
    exact = np.load(scratch / "exact.npy")[:, 0]
    sampled, se = np.load(scratch / f"stats-{size}.npy").T
    on = se > 0
    z = (sampled[on] - exact[on]) / se[on]
    print(
        f"  {size:>8,} lines, exact stats (every pair, {exact_row['pairs_described']:,} scored): "
        f"{exact_row['seconds']:.2f} s; the {int(on.sum()):,} sampled means vs these: mean |error| "
        f"{np.abs(sampled[on] - exact[on]).mean():.4f}, {np.mean(np.abs(z) <= 2):.0%} within 2 SE, "
        f"{np.mean(np.abs(z) <= 3):.1%} within 3 SE (mean SE {se[on].mean():.4f})",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=None, help="measure growth up to this many lines")
    parser.add_argument("--seed", type=int, default=0, help="with --size: the variants' seed")
    parser.add_argument("--measure", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["decide", "stats", "exact", "brute"], help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
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
    print(
        f"data: {args.data} ({len(texts):,} lines); threshold {THRESHOLD}; CPU capability: {cpu_capability()}"
    )

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
