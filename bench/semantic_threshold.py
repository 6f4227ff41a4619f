"""Where dedup.semantic_threshold comes from, and what semantic dedup adds to ROUGE-L on a real run.

1. bench/data/semantic_pairs.jsonl: 24 pairs of instructions asking for the same task in other words
   and 24 pairs of different tasks sharing words (our own writing). For each threshold: paraphrases
   caught, distinct tasks wrongly dropped, and the ROUGE-L of the pairs (what the paper's filter sees).
2. With --run RUN: the run's kept tasks replayed in their order against the seeds and every earlier
   kept task, as `semantic_duplicate` would decide them after ROUGE-L: how many it drops, with 10 quoted
   (the drop, its nearest kept instruction, cosine, ROUGE-L). A run made with the filter on would then
   have prompted with other pool tasks, so later rounds would differ; this counts the first-order effect.

usage: python bench/semantic_threshold.py [--run runs/default] [--threshold 0.88] [--quote 10]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.curate.embedder import Embedder  # noqa: E402
from pipeline.curate.index import SemanticDedup  # noqa: E402
from pipeline.quality.config import SEMANTIC_THRESHOLD  # noqa: E402
from pipeline.quality.rouge import rouge_l  # noqa: E402
from pipeline.run.reader import Run  # noqa: E402

PAIRS = ROOT / "bench" / "data" / "semantic_pairs.jsonl"


def pairs_table(embedder: Embedder) -> None:
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    a = embedder.encode([r["a"] for r in rows])
    b = embedder.encode([r["b"] for r in rows])
    cos = (a * b).sum(axis=1)
    same = np.array([r["same_task"] for r in rows])
    rl = np.array([rouge_l(r["a"], r["b"]) for r in rows])
    print(
        f"{len(rows)} labelled pairs: {same.sum()} same task reworded, {(~same).sum()} different tasks sharing words"
    )
    print(
        f"  cosine: same task {np.median(cos[same]):.3f} median (min {cos[same].min():.3f}), different tasks "
        f"{np.median(cos[~same]):.3f} median (max {cos[~same].max():.3f})"
    )
    print(
        f"  ROUGE-L > 0.7 (the paper's filter): catches {(rl[same] > 0.7).sum()} of the reworded pairs, "
        f"drops {(rl[~same] > 0.7).sum()} of the different tasks"
    )
    print("  threshold  paraphrases caught  distinct tasks dropped")
    for t in np.arange(0.80, 0.951, 0.01):
        print(
            f"  {t:9.2f}  {(cos[same] > t).sum():>8d} of {same.sum():<8d}  {(cos[~same] > t).sum():>6d} of {(~same).sum()}"
        )
    safe = min(t for t in np.arange(0.80, 0.951, 0.01) if (cos[~same] > t).sum() == 0)
    print(f"  lowest threshold dropping no distinct task: {safe:.2f}")


def replay(run_dir: Path, embedder: Embedder, threshold: float, quote: int, seed: int) -> None:
    run = Run.open(run_dir)
    tasks = run.committed_tasks()
    _, seeds = run.seeds()
    summary = run.summary()
    rouge_drops = summary.totals.rejected_by_reason.get("rouge_l_duplicate", 0)
    dedup = SemanticDedup(384, threshold)
    seed_texts = [s.instruction for s in seeds]
    dedup.add(embedder.encode(seed_texts), [f"seed:{s.id}" for s in seeds])
    texts = {f"seed:{s.id}": s.instruction for s in seeds} | {t.id: t.instruction for t in tasks}
    verdicts = dedup.offer_many(embedder.encode([t.instruction for t in tasks]), [t.id for t in tasks])
    drops = [(t, v) for t, v in zip(tasks, verdicts, strict=True) if not v.kept]
    print(
        f"\n{run_dir}: {summary.totals.candidates} candidates, "
        f"{len(tasks)} kept by ROUGE-L (it dropped {rouge_drops} as rouge_l_duplicate)"
    )
    on_seeds = sum(v.nearest.label.startswith("seed:") for _, v in drops)
    print(
        f"ROUGE-L plus semantic_duplicate at {threshold}: drops {len(drops)} more ({len(drops) / len(tasks):.1%} of "
        f"the kept; {on_seeds} near a seed, {len(drops) - on_seeds} near an earlier kept task), keeps {len(tasks) - len(drops)}"
    )
    for t in np.arange(0.80, 0.96, 0.05):
        fresh = SemanticDedup(384, float(t))
        fresh.add(embedder.encode(seed_texts), ["s"] * len(seed_texts))
        n = sum(
            not v.kept
            for v in fresh.offer_many(embedder.encode([x.instruction for x in tasks]), [x.id for x in tasks])
        )
        print(f"  at {t:.2f}: {n} dropped")
    shown = random.Random(seed).sample(drops, min(quote, len(drops)))
    print(
        f"\n{len(shown)} of its drops (random, seed {seed}): cosine, ROUGE-L, the drop <- its nearest kept instruction"
    )
    for task, verdict in sorted(shown, key=lambda d: -d[1].nearest.similarity):
        near = texts[verdict.nearest.label]
        print(
            f"  {verdict.nearest.similarity:.3f}  {rouge_l(task.instruction, near):.2f}  {task.id}: {task.instruction!r}\n"
            f"{'':16s}<- {verdict.nearest.label}: {near!r}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path)
    parser.add_argument("--threshold", type=float, default=SEMANTIC_THRESHOLD)
    parser.add_argument("--quote", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    embedder = Embedder()
    pairs_table(embedder)
    if args.run is not None:
        replay(args.run, embedder, args.threshold, args.quote, args.seed)


if __name__ == "__main__":
    main()
