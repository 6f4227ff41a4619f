"""`--min-quality P` and `select --size N` as `TaskFilter`s (pipeline/run/filtering.py), so export and
train apply them like the judge's and the people's filters, after those and in the same way."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.curate.runview import CurateView, Selection, choose
from pipeline.curate.select import Method
from pipeline.run.schemas import MachineTask


@dataclass
class _ViewCache:
    quiet: bool = False
    seed: int = 0
    _view: CurateView | None = field(default=None, repr=False)

    def view(self, run_dir: str | Path) -> CurateView:
        if self._view is None:
            from pipeline.curate.progress import open_view

            self._view = open_view(run_dir, quiet=self.quiet, seed=self.seed)
        return self._view


@dataclass
class QualityFilter(_ViewCache):
    """Tasks whose quality (people's label, else judge score, else the learned model) is >= min_quality."""

    min_quality: float | None = None
    key: str = "quality_filter"
    label: str = "quality filter"

    @property
    def active(self) -> bool:
        return self.min_quality is not None

    def describe(self) -> str:
        return f"quality >= {self.min_quality:g}"

    def select(
        self, run_dir: str | Path, tasks: list[MachineTask]
    ) -> tuple[list[MachineTask], dict[str, int]]:
        from pipeline.curate.runview import min_quality_ids

        view = self.view(run_dir)
        passing, _ = min_quality_ids(view, float(self.min_quality or 0.0))
        scores = dict(zip(view.ids, view.quality.scores, strict=True))
        kept = [t for t in tasks if t.id in passing]
        unscored = sum(1 for t in tasks if not np.isfinite(scores.get(t.id, np.nan)))
        counts = {"kept": len(kept), "below_min_quality": len(tasks) - len(kept) - unscored}
        if unscored:
            counts["no_quality_score"] = unscored
        return kept, counts


@dataclass
class SelectionFilter(_ViewCache):
    """The `size` tasks `select` picks among those that reached it (and `among`, when given)."""

    size: int | None = None
    method: Method = "facility"
    quality_weight: float = 0.5
    among: Collection[str] | None = None
    key: str = "selection"
    label: str = "selection"
    result: Selection | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.size is not None

    def describe(self) -> str:
        if self.method == "random":
            return f"a uniform random {self.size} (seed {self.seed})"
        return f"select {self.size} by quality and coverage ({self.method})"

    def select(
        self, run_dir: str | Path, tasks: list[MachineTask]
    ) -> tuple[list[MachineTask], dict[str, Any]]:
        ids = {t.id for t in tasks}
        if self.among is not None:
            ids &= set(self.among)
        self.result = choose(
            self.view(run_dir),
            int(self.size or 0),
            among=ids,
            method=self.method,
            quality_weight=self.quality_weight,
            seed=self.seed,
        )
        picked = set(self.result.ids)
        kept = [t for t in tasks if t.id in picked]
        return kept, {"kept": len(kept), "not_selected": len(tasks) - len(kept)}
