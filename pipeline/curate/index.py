"""Nearest kept instruction by cosine similarity, and the `semantic_duplicate` decision built on it.

Below `exact_limit` vectors the index is a numpy matrix searched by brute force (one matrix product:
exact, and faster than any graph at that size, see bench/select.py); past it the vectors also go into
a FAISS HNSW graph (inner product on normalised vectors = cosine), which answers in sublinear time
at the price of rarely missing the true nearest neighbour. FAISS is the well-kept library for this;
only the switch between the two and the in-order greedy decision are ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 20_000
HNSW_NEIGHBOURS = 32


@dataclass(frozen=True)
class Nearest:
    """The most similar indexed entry (its label and cosine similarity); label None when empty."""

    similarity: float
    label: str | None


class VectorIndex:
    """Normalised vectors with a label each (a task id or the text); add-only."""

    def __init__(self, dim: int, exact_limit: int = EXACT_LIMIT):
        self.dim = dim
        self.exact_limit = exact_limit
        self._data = np.zeros((256, dim), dtype=np.float32)
        self._size = 0
        self.labels: list[str] = []
        self._graph = None

    def __len__(self) -> int:
        return self._size

    @property
    def exact(self) -> bool:
        return self._graph is None

    def add(self, vectors: np.ndarray, labels: Sequence[str]) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        need = self._size + len(vectors)
        if need > len(self._data):
            grown = np.zeros((max(need, 2 * len(self._data)), self.dim), dtype=np.float32)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : need] = vectors
        self._size = need
        self.labels.extend(labels)
        if self._graph is not None:
            self._graph.add(vectors)
        elif self._size > self.exact_limit:
            self._build_graph()

    def _build_graph(self) -> None:
        import faiss

        graph = faiss.IndexHNSWFlat(self.dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efSearch = 64
        graph.add(self._data[: self._size])
        self._graph = graph

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, positions) of the k nearest entries per query row; position -1 when empty."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self._size == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        if self._graph is not None:
            sims, pos = self._graph.search(queries, k)
            return sims, pos.astype(np.int64)
        scores = queries @ self._data[: self._size].T
        k_eff = min(k, self._size)
        pos = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        sims = np.take_along_axis(scores, pos, axis=1)
        order = np.argsort(-sims, axis=1, kind="stable")
        pos, sims = np.take_along_axis(pos, order, 1), np.take_along_axis(sims, order, 1)
        if k_eff < k:
            pad = k - k_eff
            sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
            pos = np.pad(pos, ((0, 0), (0, pad)), constant_values=-1)
        return sims, pos

    def nearest(self, vector: np.ndarray) -> Nearest:
        sims, pos = self.search(vector, 1)
        if pos[0, 0] < 0:
            return Nearest(0.0, None)
        return Nearest(float(sims[0, 0]), self.labels[int(pos[0, 0])])


@dataclass(frozen=True)
class SemanticVerdict:
    kept: bool
    nearest: Nearest


class SemanticDedup:
    """Greedy in order, like the ROUGE-L filter: a candidate is a `semantic_duplicate` when its cosine
    similarity to something kept before it (seeds, the pool, earlier candidates) is above `threshold`."""

    def __init__(self, dim: int, threshold: float, exact_limit: int = EXACT_LIMIT):
        self.threshold = threshold
        self.index = VectorIndex(dim, exact_limit)

    def add(self, vectors: np.ndarray, labels: Sequence[str]) -> None:
        """Entries kept unconditionally (seeds, the committed pool)."""
        self.index.add(vectors, labels)

    def check(self, vector: np.ndarray) -> SemanticVerdict:
        nearest = self.index.nearest(vector)
        return SemanticVerdict(not nearest.similarity > self.threshold, nearest)

    def offer_many(
        self, vectors: np.ndarray, labels: Sequence[str], chunk: int = 2048
    ) -> list[SemanticVerdict]:
        """Decide each row in order, adding the kept ones, a chunk at a time: one index search per
        chunk, then the chunk against its own earlier kept rows."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        out: list[SemanticVerdict] = []
        for start in range(0, len(vectors), chunk):
            out.extend(self._offer_chunk(vectors[start : start + chunk], labels[start : start + chunk]))
        return out

    def _offer_chunk(self, vectors: np.ndarray, labels: Sequence[str]) -> list[SemanticVerdict]:
        if len(vectors) == 0:
            return []
        sims, pos = self.index.search(vectors, 1)
        inside = vectors @ vectors.T
        kept_rows: list[int] = []
        out: list[SemanticVerdict] = []
        for i in range(len(vectors)):
            best = (
                Nearest(float(sims[i, 0]), self.index.labels[int(pos[i, 0])])
                if pos[i, 0] >= 0
                else Nearest(0.0, None)
            )
            if kept_rows:
                row = inside[i, kept_rows]
                j = int(np.argmax(row))
                if float(row[j]) > best.similarity:
                    best = Nearest(float(row[j]), labels[kept_rows[j]])
            kept = not best.similarity > self.threshold
            if kept:
                kept_rows.append(i)
            out.append(SemanticVerdict(kept, best))
        if kept_rows:
            self.index.add(vectors[kept_rows], [labels[i] for i in kept_rows])
        return out
