"""Pick the N tasks that best combine quality and coverage.

Coverage is facility location: F(S) = sum_j w_j max_{i in S} sim(i, j) / sum_j w_j, the share of the
data that has a close representative in S. It is submodular, so the greedy choice is within 1-1/e of
the best, and lazy evaluation (a gain can only shrink) makes it fast. The targets j are all points up
to `EXACT_TARGETS`, past that k-means centres weighted by their cluster's size, so memory stays n x m.
With quality q_i in [0, 1], each pick's gain is (1-a)*coverage gain + a*q_i/N (a = `quality_weight`).
Facility location spends picks where the mass is, so a topic of 5 tasks beside one of 80 can get none:
the first k picks (k = the number of k-means clusters) are therefore k-center's farthest-first ones,
which reach every far-apart region however small, and facility location then fills in by mass.
`kcenter` is the alternative: farthest-first traversal, each distance scaled by the point's quality.
No library ships a weighted, lazy facility location over a vector index, so this is ours (numpy).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Literal

import numpy as np

Method = Literal["facility", "kcenter", "random"]
"""random: a uniform sample, the control every curated subset is compared with."""
EXACT_TARGETS = 4096
CENTRE_TARGETS = 1024


def known_or_prior(quality: np.ndarray) -> np.ndarray:
    """Quality with the unknown ones (NaN) at the mean of the known: an unlabelled task is neither
    rewarded nor punished against the labelled ones."""
    known = quality[np.isfinite(quality)]
    return np.where(np.isfinite(quality), quality, float(known.mean()) if known.size else 0.0)


def _targets(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if len(vectors) <= EXACT_TARGETS:
        return vectors, np.ones(len(vectors))
    from pipeline.curate.clusters import cluster

    found = cluster(vectors, k=CENTRE_TARGETS, seed=seed)
    return found.centroids, found.sizes().astype(float)


def facility_location(
    vectors: np.ndarray,
    n: int,
    quality: np.ndarray | None = None,
    quality_weight: float = 0.5,
    seed: int = 0,
    spread: int = 0,
) -> list[int]:
    """Lazy greedy maximisation of (1-a)*coverage + a*mean quality; positions in pick order. The
    first `spread` picks are k-center's (farthest first), so far-apart small topics are in."""
    n = min(n, len(vectors))
    targets, weights = _targets(vectors, seed)
    weights = weights / weights.sum()
    sims = np.maximum(vectors @ targets.T, 0.0).astype(np.float32)
    a = quality_weight if quality is not None else 0.0
    q = known_or_prior(quality) if quality is not None else np.zeros(len(vectors))
    bonus = a * q / max(n, 1)
    best = np.zeros(len(targets), dtype=np.float32)
    picked: list[int] = []
    if spread:
        picked = k_center(vectors, min(spread, n), quality, quality_weight)
        for i in picked:
            np.maximum(best, sims[i], out=best)
    bounds = (1 - a) * (np.maximum(sims - best, 0.0) @ weights) + bonus
    taken = set(picked)
    heap = [(-float(g), i) for i, g in enumerate(bounds) if i not in taken]
    heapq.heapify(heap)
    while heap and len(picked) < n:
        _, i = heapq.heappop(heap)
        gain = (1 - a) * float(np.maximum(sims[i] - best, 0.0) @ weights) + bonus[i]
        if heap and gain < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-gain, i))
            continue
        picked.append(i)
        np.maximum(best, sims[i], out=best)
    return picked


def k_center(
    vectors: np.ndarray, n: int, quality: np.ndarray | None = None, quality_weight: float = 0.5
) -> list[int]:
    """Farthest-first: start at the best (or first) point, then the point farthest from all picked,
    its cosine distance scaled by (1-a) + a*quality."""
    n = min(n, len(vectors))
    scale = np.ones(len(vectors))
    if quality is not None:
        scale = (1 - quality_weight) + quality_weight * known_or_prior(quality)
    first = int(np.argmax(scale))
    picked = [first]
    distance = 1.0 - vectors @ vectors[first]
    while len(picked) < n:
        score = distance * scale
        score[picked] = -np.inf
        i = int(np.argmax(score))
        picked.append(i)
        np.minimum(distance, 1.0 - vectors @ vectors[i], out=distance)
    return picked


def select_positions(
    vectors: np.ndarray,
    n: int,
    quality: np.ndarray | None = None,
    *,
    method: Method = "facility",
    quality_weight: float = 0.5,
    seed: int = 0,
    spread: int = 0,
) -> list[int]:
    if method == "kcenter":
        return k_center(vectors, n, quality, quality_weight)
    if method == "random":
        return random_positions(len(vectors), n, seed)
    return facility_location(vectors, n, quality, quality_weight, seed, spread)


@dataclass(frozen=True)
class SubsetFigures:
    """What a subset is like: mean quality (None without one), clusters it touches, mean similarity of
    each member to its nearest other member (lower: less redundant), and facility-location coverage."""

    size: int
    mean_quality: float | None
    clusters_covered: int
    clusters_total: int
    mean_nn_similarity: float
    coverage: float

    def as_dict(self) -> dict[str, float | int | None]:
        return self.__dict__.copy()


def subset_figures(
    vectors: np.ndarray, positions: list[int], labels: np.ndarray, quality: np.ndarray | None
) -> SubsetFigures:
    sub = vectors[positions]
    if len(positions) > 1:
        inner = sub @ sub.T
        np.fill_diagonal(inner, -np.inf)
        nn = float(inner.max(axis=1).mean())
    else:
        nn = 0.0
    mean_q = None
    if quality is not None:
        picked_q = quality[positions]
        picked_q = picked_q[np.isfinite(picked_q)]
        mean_q = float(picked_q.mean()) if picked_q.size else None
    coverage = 0.0
    if len(positions):
        step = 4096
        total = 0.0
        for start in range(0, len(vectors), step):
            total += float(np.maximum(vectors[start : start + step] @ sub.T, 0).max(axis=1).sum())
        coverage = total / len(vectors)
    return SubsetFigures(
        size=len(positions),
        mean_quality=mean_q,
        clusters_covered=len(set(labels[positions].tolist())),
        clusters_total=len(set(labels.tolist())),
        mean_nn_similarity=nn,
        coverage=coverage,
    )


def random_positions(count: int, n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(count, size=min(n, count), replace=False).tolist())
