"""A run as curation sees it: its kept tasks, their embeddings (through the run's cache), clusters,
quality from the best source, and the choices made on them (`select`, `--min-quality`)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import UserError
from pipeline.curate.cache import EmbeddingCache, embed_texts
from pipeline.curate.clusters import Clusters, cluster
from pipeline.curate.config import EmbedderConfig
from pipeline.curate.embedder import Embedder
from pipeline.curate.labels import human_labels
from pipeline.curate.quality import Quality, task_quality
from pipeline.curate.select import (
    Method,
    SubsetFigures,
    random_positions,
    select_positions,
    subset_figures,
)
from pipeline.run.judgments import judge_caution, read_judgments
from pipeline.run.reader import Run
from pipeline.run.schemas import MachineTask


def run_embedder_config(run: Run) -> EmbedderConfig:
    """The run's `embedder:` settings (config.yaml), else the bundled model."""
    settings = (run.read_config() or {}).get("embedder")
    if settings is None:
        return EmbedderConfig()
    try:
        return EmbedderConfig(**settings)
    except (TypeError, ValueError) as exc:
        raise UserError(f'{run.config_path}, field "embedder": {exc}') from None


@dataclass
class CurateView:
    run: Run
    tasks: list[MachineTask]
    vectors: np.ndarray
    embedded_now: int
    quality: Quality

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.tasks]


def load_view(
    run_dir: str | Path,
    *,
    embedder: EmbedderConfig | None = None,
    on_embedded: Callable[[int], None] | None = None,
    seed: int = 0,
) -> CurateView:
    run = Run.open(run_dir)
    tasks = run.committed_tasks()
    if not tasks:
        raise UserError(f"{run_dir}: the run has no kept tasks yet; run `selfinstruct generate` first")
    model = Embedder(embedder or run_embedder_config(run))
    done = embed_texts(
        model, [t.instruction for t in tasks], EmbeddingCache.for_run(run.path, model), on_embedded
    )
    labels = human_labels(run.path, tasks)
    judgments = read_judgments(run.path)
    quality = task_quality(tasks, done.vectors, labels, judgments, seed)
    counts = quality.counts()
    if counts.get("judge"):
        caution = judge_caution(j.judge.model for j in judgments.values())
        if caution:
            quality.notes.append(caution)
    return CurateView(run, tasks, done.vectors, done.computed, quality)


@dataclass(frozen=True)
class Selection:
    ids: list[str]
    picked: SubsetFigures
    random: SubsetFigures
    clusters: Clusters
    method: str
    quality_used: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": len(self.ids),
            "method": self.method,
            "quality_used": self.quality_used,
            "picked": self.picked.as_dict(),
            "random": self.random.as_dict(),
            "ids": self.ids,
        }


def choose(
    view: CurateView,
    size: int,
    *,
    among: Collection[str] | None = None,
    method: Method = "facility",
    quality_weight: float = 0.5,
    seed: int = 0,
) -> Selection:
    """The `size` tasks (of `among`, default all) that best combine quality and coverage, and the
    figures of that subset against a random one of the same size."""
    if size < 1:
        raise UserError(f"--size must be at least 1, got {size}")
    pool = [i for i, t in enumerate(view.tasks) if among is None or t.id in among]
    if not pool:
        raise UserError(f"{view.run.path}: no task to select from")
    vectors = view.vectors[pool]
    quality = view.quality.scores[pool] if view.quality.available else None
    clusters = cluster(vectors, seed=seed)
    picked = select_positions(
        vectors,
        size,
        quality,
        method=method,
        quality_weight=quality_weight,
        seed=seed,
        spread=clusters.k,
    )
    chance = random_positions(len(pool), len(picked), seed)
    return Selection(
        ids=[view.tasks[pool[i]].id for i in picked],
        picked=subset_figures(vectors, picked, clusters.labels, quality),
        random=subset_figures(vectors, chance, clusters.labels, quality),
        clusters=clusters,
        method=method,
        quality_used=quality is not None,
    )


def min_quality_ids(view: CurateView, threshold: float) -> tuple[set[str], str]:
    """Ids of tasks whose quality is at least `threshold`, and a line saying what was kept."""
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--min-quality must be in [0, 1], got {threshold}")
    if not view.quality.available:
        raise UserError(
            f"{view.run.path}: --min-quality needs a quality source: people's labels (`selfinstruct review`) "
            "to train the quality model from, or judge scores (`selfinstruct judge`)"
        )
    scores = view.quality.scores
    keep = {t.id for t, s in zip(view.tasks, scores, strict=True) if np.isfinite(s) and s >= threshold}
    unscored = int((~np.isfinite(scores)).sum())
    line = f"quality >= {threshold:g} kept {len(keep)} of {len(view.tasks)} tasks" + (
        f" ({unscored} without a quality score left out)" if unscored else ""
    )
    if not keep:
        raise UserError(f"{view.run.path}: no task has quality >= {threshold:g}")
    return keep, line
