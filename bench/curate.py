"""Curation benchmark: embed and select 50,000 instructions (../shared/bench/instructions_52k.jsonl).

In one process, each step against a baseline measured in the same run:
  1. embedding: sentence-transformers' own `encode` (its defaults: batch 32) vs ours (`Embedder`:
     batch 64, normalised, in chunks for progress) on the first 2,000 lines, then ours on all 50,000;
  2. selection: plain greedy facility location (every gain recomputed at every step) vs our lazy greedy
     on the first 4,000 vectors (asserting the same picks), then ours on all 50,000 (k-means centres as
     targets), N = 1,000;
  3. the semantic-duplicate index: brute force (exact) vs FAISS HNSW for greedy in-order dedup of the
     50,000 at the curated threshold, with the decisions that differ: where EXACT_LIMIT comes from.
Timings on a shared machine are noisy; ratios are measured within one run.

Not named bench/select.py: a script's own folder comes first on sys.path, so a select.py there would stand
in for the standard library's `select` module in every bench script (subprocess, selectors and torch
import it).

usage: python bench/curate.py [--lines 50000] [--size 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.curate.embedder import Embedder  # noqa: E402
from pipeline.curate.index import SemanticDedup  # noqa: E402
from pipeline.curate.select import facility_location  # noqa: E402
from pipeline.quality.config import SEMANTIC_THRESHOLD  # noqa: E402

DATA = ROOT.parent / "shared" / "bench" / "instructions_52k.jsonl"


def load(path: Path, limit: int) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        texts = [json.loads(line)["instruction"] for line in handle if line.strip()]
    return texts[:limit]


def naive_facility(vectors: np.ndarray, n: int) -> list[int]:
    """Textbook greedy: every candidate's gain recomputed at every step (the baseline)."""
    sims = np.maximum(vectors @ vectors.T, 0.0)
    best = np.zeros(len(vectors), dtype=np.float32)
    picked: list[int] = []
    for _ in range(n):
        gains = np.maximum(sims - best, 0.0).sum(axis=1)
        gains[picked] = -1.0
        i = int(np.argmax(gains))
        picked.append(i)
        np.maximum(best, sims[i], out=best)
    return picked


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def cpu_line() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return (
        f"cpu capability: {torch.backends.cpu.get_cpu_capability()}; avx512_bf16: "
        f"{'yes' if 'avx512_bf16' in flags else 'no'}; {os.cpu_count()} cores; torch threads "
        f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--baseline-lines", type=int, default=2000)
    args = parser.parse_args()
    print(cpu_line())
    texts = load(DATA, args.lines)
    print(f"{len(texts):,} instructions from {DATA.name}")

    embedder = Embedder()
    model = embedder._load()
    small = texts[: args.baseline_lines]
    embedder.encode(small[:64])  # warm-up
    base, t_base = timed(model.encode, small, convert_to_numpy=True)
    ours, t_ours = timed(embedder.encode, small)
    base = base / np.linalg.norm(base, axis=1, keepdims=True)
    print(
        f"embed {len(small):,}: sentence-transformers encode {t_base:.1f}s, ours {t_ours:.1f}s "
        f"({t_base / t_ours:.2f}x; max |diff| {np.abs(base - ours).max():.1e})"
    )
    vectors, t_all = timed(embedder.encode, texts)
    print(f"embed {len(texts):,}: {t_all:.1f}s ({len(texts) / t_all:,.0f} instructions/s)")

    few = vectors[:4000]
    naive, t_naive = timed(naive_facility, few, args.size // 4)
    lazy, t_lazy = timed(facility_location, few, args.size // 4)

    def coverage(picked: list[int]) -> float:
        return float(np.maximum(few @ few[picked].T, 0.0).max(axis=1).mean())

    same = sum(a == b for a, b in zip(naive, lazy, strict=True))
    print(
        f"facility location, 4,000 -> {args.size // 4}: plain greedy {t_naive:.1f}s, lazy greedy {t_lazy:.2f}s "
        f"({t_naive / t_lazy:.0f}x); coverage {coverage(naive):.4f} vs {coverage(lazy):.4f}; the first "
        f"{next((k for k, (a, b) in enumerate(zip(naive, lazy, strict=True)) if a != b), len(lazy))} picks "
        f"identical, {same} in the same place (float32 near-ties; tests/test_curate_select.py checks the "
        "picks are the textbook greedy's in float64)"
    )
    picked, t_sel = timed(facility_location, vectors, args.size, spread=40)
    print(
        f"select {len(texts):,} -> {len(picked):,} (1,024 k-means centres, 40 k-center seeds): {t_sel:.1f}s"
    )
    print(f"embed + select {len(texts):,}: {t_all + t_sel:.1f}s")

    labels = [str(i) for i in range(len(vectors))]
    exact, t_exact = timed(
        SemanticDedup(vectors.shape[1], SEMANTIC_THRESHOLD, exact_limit=10**9).offer_many, vectors, labels
    )
    graph, t_graph = timed(
        SemanticDedup(vectors.shape[1], SEMANTIC_THRESHOLD, exact_limit=0).offer_many, vectors, labels
    )
    differ = sum(a.kept != b.kept for a, b in zip(exact, graph, strict=True))
    print(
        f"semantic dedup of {len(texts):,} at {SEMANTIC_THRESHOLD}: brute force {t_exact:.1f}s "
        f"({sum(not v.kept for v in exact):,} dropped), HNSW {t_graph:.1f}s ({t_exact / t_graph:.2f}x; "
        f"{differ} decisions differ)"
    )
    for size in (5_000, 20_000):
        sub, sub_labels = vectors[:size], labels[:size]
        _, te = timed(
            SemanticDedup(vectors.shape[1], SEMANTIC_THRESHOLD, exact_limit=10**9).offer_many, sub, sub_labels
        )
        _, tg = timed(
            SemanticDedup(vectors.shape[1], SEMANTIC_THRESHOLD, exact_limit=0).offer_many, sub, sub_labels
        )
        print(f"  first {size:,}: brute force {te:.2f}s, HNSW {tg:.2f}s ({te / tg:.2f}x)")


if __name__ == "__main__":
    main()
