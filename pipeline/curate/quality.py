"""How good each task is, on one 0-1 scale, from the best source the run has.

Per task: a human label (1 or 0) where a person reviewed it; else the judge's score ((score-1)/4) where
a judge scored this very text; else the learned model's probability that a person would find it fully
valid (logistic regression on the embeddings, trained on the run's human labels and cross-validated:
`fit_quality_model`). A run with no labels and no judgments has no quality at all: selection then
says so and picks for coverage alone. The classifier is scikit-learn's; only the fallback order is ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.run.judgments import Judgment, task_digest
from pipeline.run.schemas import MachineTask

MIN_LABELS = 10
"""Fewer labels than this (or fewer than MIN_PER_CLASS of either answer) train no model."""
MIN_PER_CLASS = 3
MIN_MODEL_AUC = 0.6
"""A learned model whose cross-validated AUC is below this is no better than chance on this run: its
scores are not used (said so), and unlabelled tasks get no quality rather than noise."""


@dataclass(frozen=True)
class QualityModel:
    """A fitted classifier and its honest, cross-validated figures."""

    model: object
    labels: int
    positives: int
    folds: int
    accuracy: float
    auc: float
    majority_accuracy: float

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(vectors)[:, 1]  # type: ignore[attr-defined]

    def describe(self) -> str:
        return (
            f"learned quality model (logistic regression on embeddings, {self.labels} human labels, "
            f"{self.positives} fully valid): {self.folds}-fold cross-validated accuracy {self.accuracy:.3f} "
            f"(always guessing the majority answer: {self.majority_accuracy:.3f}), AUC {self.auc:.3f}"
        )


def fit_quality_model(vectors: np.ndarray, labels: np.ndarray, seed: int = 0) -> QualityModel | None:
    """Cross-validate, then fit on all labels; None when there are too few labels to learn from."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = np.asarray(labels, dtype=int)
    positives = int(labels.sum())
    minority = min(positives, len(labels) - positives)
    if len(labels) < MIN_LABELS or minority < MIN_PER_CLASS:
        return None
    folds = min(5, minority)

    def make() -> LogisticRegression:
        return LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probs = cross_val_predict(make(), vectors, labels, cv=splitter, method="predict_proba")[:, 1]
    model = make().fit(vectors, labels)
    return QualityModel(
        model=model,
        labels=len(labels),
        positives=positives,
        folds=folds,
        accuracy=float(accuracy_score(labels, probs >= 0.5)),
        auc=float(roc_auc_score(labels, probs)),
        majority_accuracy=max(positives, len(labels) - positives) / len(labels),
    )


@dataclass
class Quality:
    """Scores in task order (NaN where no source has one), each task's source, and the model if any."""

    scores: np.ndarray
    sources: list[str]
    model: QualityModel | None = None  # fitted, whether or not good enough to be used
    notes: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return bool(np.isfinite(self.scores).any())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for source in self.sources:
            out[source] = out.get(source, 0) + 1
        return out


def task_quality(
    tasks: list[MachineTask],
    vectors: np.ndarray,
    human: dict[str, bool],
    judgments: dict[str, Judgment],
    seed: int = 0,
) -> Quality:
    """Human label, else judge score, else the learned model, per task (see the module docstring)."""
    scores = np.full(len(tasks), np.nan)
    sources = ["none"] * len(tasks)
    notes: list[str] = []
    labelled = [i for i, t in enumerate(tasks) if t.id in human]
    model = None
    if labelled:
        y = np.array([human[tasks[i].id] for i in labelled], dtype=int)
        model = fit_quality_model(vectors[labelled], y, seed)
        if model is None:
            notes.append(
                f"{len(labelled)} human labels ({int(y.sum())} fully valid): too few to train a quality "
                f"model (need {MIN_LABELS}, with {MIN_PER_CLASS} of each answer)"
            )
        else:
            notes.append(model.describe())
            if model.auc < MIN_MODEL_AUC:
                notes.append(
                    f"its AUC is below {MIN_MODEL_AUC}: no better than chance here, so its scores are not "
                    "used; only the labelled tasks have a quality"
                )
    usable = model is not None and model.auc >= MIN_MODEL_AUC
    predicted = model.predict(vectors) if usable and model is not None else None
    for i, task in enumerate(tasks):
        judgment = judgments.get(task.id)
        if task.id in human:
            scores[i], sources[i] = float(human[task.id]), "human"
        elif judgment is not None and judgment.scored and judgment.task_digest == task_digest(task):
            scores[i], sources[i] = ((judgment.score or 1) - 1) / 4, "judge"
        elif predicted is not None:
            scores[i], sources[i] = float(predicted[i]), "model"
    if not np.isfinite(scores).any():
        notes.append("no human labels and no judge scores: no quality model, selection is for coverage alone")
    return Quality(scores, sources, model, notes)
