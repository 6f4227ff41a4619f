"""k-means clusters of instruction embeddings: what the data covers, for the map and for `select`'s
'clusters covered'. scikit-learn's KMeans (MiniBatchKMeans past 10,000 points) on the normalised
vectors; k defaults to sqrt(n/2), between 2 and 40, so a cluster is a topic a person can name."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MINIBATCH_FROM = 10_000


def default_k(n: int) -> int:
    return max(2, min(40, round(math.sqrt(n / 2)))) if n >= 4 else max(1, n)


@dataclass(frozen=True)
class Clusters:
    """labels[i] is point i's cluster; central[c] the point nearest cluster c's centre."""

    labels: np.ndarray
    centroids: np.ndarray
    central: list[int]

    @property
    def k(self) -> int:
        return len(self.centroids)

    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.k)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """The nearest centre of other points (seeds, a subset) by cosine."""
        return np.argmax(vectors @ self.centroids.T, axis=1) if len(vectors) else np.zeros(0, dtype=int)


def cluster(vectors: np.ndarray, k: int | None = None, seed: int = 0) -> Clusters:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = len(vectors)
    k = min(k or default_k(n), n)
    if n >= MINIBATCH_FROM:
        fitted = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=2048).fit(vectors)
    else:
        fitted = KMeans(n_clusters=k, random_state=seed, n_init=4).fit(vectors)
    labels = fitted.labels_.astype(int)
    centroids = fitted.cluster_centers_.astype(np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    central = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if members.size == 0:
            central.append(-1)
            continue
        central.append(int(members[np.argmax(vectors[members] @ centroids[c])]))
    return Clusters(labels, centroids, central)


def top_share(sizes: np.ndarray, fraction: float = 0.1) -> float:
    """The share of points in the largest `fraction` of clusters (at least one cluster)."""
    total = int(sizes.sum())
    if total == 0:
        return 0.0
    top = max(1, math.ceil(len(sizes) * fraction))
    return float(np.sort(sizes)[::-1][:top].sum()) / total
