"""Small statistics the judge and the people's review need and the project's environment has no library for
(no scipy or scikit-learn): Cohen's kappa for agreement with labels, a percentile bootstrap interval, and the
win rate of a pairwise comparison (ties counted half) that `evaluate --judge` and `review --pairwise` share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Agreement of two raters beyond chance: (p_observed - p_chance) / (1 - p_chance).

    None when it is undefined: no items, or both raters always gave one and the same label.
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs two equally long sequences, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    chance = sum(count_a[k] * count_b[k] for k in count_a) / (n * n)
    if chance == 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values` (resampled with replacement, seeded)."""
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def outcome_of(points: float) -> str:
    """A task's outcome for the student from its points (1 win, 1/2 tie, 0 loss, averaged over verdicts)."""
    return "win" if points > 0.5 else "loss" if points < 0.5 else "tie"


def win_rate(task_points: Sequence[float], *, seed: int = 0) -> dict[str, Any]:
    """Win / tie / loss over tasks, the win rate with ties counted half, and its 95% bootstrap interval."""
    outcomes = Counter(outcome_of(p) for p in task_points)
    interval = bootstrap_ci(list(task_points), seed=seed)
    return {
        "win": outcomes.get("win", 0),
        "tie": outcomes.get("tie", 0),
        "loss": outcomes.get("loss", 0),
        "win_rate": sum(task_points) / len(task_points) if task_points else None,
        "ci95": list(interval) if interval is not None else None,
    }
