"""The `semantic_duplicate` filter as a generation run uses it: embedder, the run's embedding cache and
the in-order index, seeded with the seeds and the committed pool."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.curate.cache import EmbeddingCache, embed_texts
from pipeline.curate.config import EmbedderConfig
from pipeline.curate.embedder import Embedder
from pipeline.curate.index import SemanticDedup, SemanticVerdict


class SemanticFilter:
    """Embeds candidates (through the run's cache) and decides them against everything kept so far;
    remembers each entry's text so a rejection can name its nearest kept task."""

    def __init__(self, embedder: Embedder, threshold: float, cache: EmbeddingCache | None = None):
        self.embedder = embedder
        self.cache = cache
        self.threshold = threshold
        self._dedup: SemanticDedup | None = None
        self._texts: dict[str, str] = {}

    @classmethod
    def for_run(cls, run_dir: str | Path, embedder: EmbedderConfig, threshold: float) -> SemanticFilter:
        model = Embedder(embedder)
        return cls(model, threshold, EmbeddingCache.for_run(run_dir, model))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return embed_texts(self.embedder, texts, self.cache).vectors

    def _index(self, dim: int) -> SemanticDedup:
        if self._dedup is None:
            self._dedup = SemanticDedup(dim, self.threshold)
        return self._dedup

    def add_texts(self, labels: Sequence[str], texts: Sequence[str]) -> None:
        """Kept unconditionally: the seeds and the committed pool."""
        if texts:
            self.add(self.embed(texts), labels, texts)

    def add(self, vectors: np.ndarray, labels: Sequence[str], texts: Sequence[str]) -> None:
        self._index(vectors.shape[-1]).add(vectors.reshape(len(labels), -1), labels)
        self._texts.update(zip(labels, texts, strict=True))

    def check(self, vector: np.ndarray) -> SemanticVerdict:
        return self._index(vector.shape[-1]).check(vector)

    def text_of(self, label: str | None) -> str:
        return self._texts.get(label or "", "")
