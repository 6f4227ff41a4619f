"""Embeddings cached in the run directory, one file per embedder, keyed by the digest of the text.

`cache/embeddings/<embedder identity>.jsonl` holds one line per batch embedded: the batch's text
digests and its vectors (float32, base64). Appends are durable and a torn last line is skipped, so a
killed process loses at most its last batch, and a grown run embeds only the instructions it has not
seen (the key is the text, so an edited task is embedded anew).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.jsonio import append_jsonl, iter_jsonl
from pipeline.curate.embedder import Embedder

EMBEDDINGS_DIR = "cache/embeddings"


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class Embedded:
    """Vectors in the order of the texts asked for, and how many of them had to be computed now."""

    vectors: np.ndarray
    computed: int
    cached: int


class EmbeddingCache:
    """The cache of one embedder in one run directory (or any folder)."""

    def __init__(self, folder: str | Path, identity: str):
        self.path = Path(folder) / EMBEDDINGS_DIR / f"{identity}.jsonl"

    @classmethod
    def for_run(cls, run_dir: str | Path, embedder: Embedder) -> EmbeddingCache:
        return cls(run_dir, embedder.identity)

    def load(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            return {}
        found: dict[str, np.ndarray] = {}
        for lineno, row in iter_jsonl(self.path, skip_torn_tail=True):
            try:
                digests, dim = row["digests"], int(row["dim"])
                matrix = np.frombuffer(base64.b64decode(row["vectors"]), dtype=np.float32)
                matrix = matrix.reshape(len(digests), dim)
            except (KeyError, TypeError, ValueError) as exc:
                raise UserError(f"{self.path}, line {lineno}: not an embedding batch ({exc})") from None
            for digest, vector in zip(digests, matrix, strict=True):
                found[digest] = vector
        return found

    def append(self, digests: list[str], vectors: np.ndarray) -> None:
        if not digests:
            return
        payload = base64.b64encode(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).decode("ascii")
        append_jsonl(self.path, [{"digests": digests, "dim": int(vectors.shape[1]), "vectors": payload}])


def embed_texts(
    embedder: Embedder,
    texts: Sequence[str],
    cache: EmbeddingCache | None = None,
    on_done: Callable[[int], None] | None = None,
) -> Embedded:
    """Embeddings of `texts`, computing (and caching) only the distinct texts the cache lacks."""
    digests = [text_digest(t) for t in texts]
    known = cache.load() if cache is not None else {}
    missing: dict[str, str] = {}
    for digest, text in zip(digests, texts, strict=True):
        if digest not in known and digest not in missing:
            missing[digest] = text
    if on_done is not None and len(texts) - len(missing):
        on_done(len(texts) - len(missing))  # the cached ones count as done
    if missing:
        fresh = embedder.encode(list(missing.values()), on_done=on_done)
        if cache is not None:
            cache.append(list(missing), fresh)
        known.update(zip(missing, fresh, strict=True))
    if not texts:
        return Embedded(np.zeros((0, 0), dtype=np.float32), 0, 0)
    vectors = np.stack([known[d] for d in digests]).astype(np.float32, copy=False)
    return Embedded(vectors, computed=len(missing), cached=len(texts) - len(missing))
