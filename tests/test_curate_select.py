"""`select`, the learned quality model and `--min-quality`, on constructed data with known answers.

Vectors are either synthetic clusters (for the algorithms) or real all-MiniLM-L6-v2 embeddings of a
constructed run with one topic holding 80% of the tasks (tests/curate_runs.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from curate_runs import SMALL_TOPICS, write_topic_run

from pipeline.cli import main
from pipeline.curate.filters import QualityFilter
from pipeline.curate.quality import fit_quality_model
from pipeline.curate.runview import choose, load_view
from pipeline.curate.select import facility_location, k_center, subset_figures
from pipeline.run.export import task_examples
from pipeline.run.reader import Run
from tuning.data import load_splits, selected_training


def clustered(
    sizes: list[int], dim: int = 64, noise: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    points = centres[labels] / np.sqrt(dim) + noise * rng.normal(size=(len(labels), dim)) / np.sqrt(dim) * 3
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), labels


@pytest.mark.parametrize("size", [5, 10])
def test_facility_location_covers_every_cluster_when_one_holds_80_percent(size):
    vectors, labels = clustered([400, 25, 25, 25, 25])
    picked = facility_location(vectors, size, spread=5)
    assert len(picked) == len(set(picked)) == size
    assert set(labels[picked]) == {0, 1, 2, 3, 4}
    # a random subset of the same size, by contrast, mostly lands in the big cluster
    rng = np.random.default_rng(1)
    hits = [len(set(labels[rng.choice(500, size, replace=False)])) for _ in range(50)]
    assert np.mean(hits) < 4
    assert set(labels[k_center(vectors, size)]) == {0, 1, 2, 3, 4}


def test_quality_weight_trades_coverage_for_quality():
    vectors, labels = clustered([80, 20])
    quality = np.where(labels == 1, 1.0, 0.0)
    coverage_only = facility_location(vectors, 10)
    quality_first = facility_location(vectors, 10, quality, quality_weight=0.9)
    assert (labels[quality_first] == 1).sum() > (labels[coverage_only] == 1).sum()
    assert set(labels[coverage_only]) == {0, 1}
    figures = subset_figures(vectors, quality_first, labels, quality)
    assert figures.mean_quality == pytest.approx(quality[quality_first].mean())
    assert figures.clusters_total == 2 and figures.size == 10


def test_learned_model_cross_validation_on_constructed_labels():
    vectors, topic = clustered([60, 60], noise=0.6, seed=3)
    model = fit_quality_model(vectors, topic == 1, seed=0)
    assert model is not None and model.folds == 5 and model.labels == 120
    assert model.accuracy >= 0.9 and model.auc >= 0.95
    assert model.majority_accuracy == 0.5
    # labels unrelated to the vectors: the cross-validated figures must not claim skill
    noise = np.random.default_rng(7).permutation(topic)
    blind = fit_quality_model(vectors, noise == 1, seed=0)
    assert blind is not None and blind.auc < 0.75 and blind.accuracy < 0.7
    assert "cross-validated accuracy" in blind.describe()
    # too few labels, or too few of one answer: no model
    assert fit_quality_model(vectors[:8], topic[:8] == 1) is None
    assert fit_quality_model(vectors[:62], topic[:62] == 1) is None  # only 2 positives


@pytest.fixture(scope="module")
def topic_run(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("curate")
    topics = write_topic_run(root / "run", root / "seeds.jsonl")
    load_view(root / "run")  # embed once; later tests reuse the run's cache
    return root / "run", topics


def test_select_covers_every_topic_of_a_skewed_run(topic_run, tmp_path):
    run_dir, topics = topic_run
    assert sum(t == "cooking" for t in topics.values()) / len(topics) == 0.8
    out = tmp_path / "picked.jsonl"
    result = CliRunner().invoke(main, ["select", str(run_dir), "--size", "10", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "picked for coverage alone" in result.output or "for coverage alone" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    picked = {row["task_id"] for row in rows}
    assert len(picked) == 10
    assert {topics[i] for i in picked} == {"cooking", *SMALL_TOPICS}
    for label in ("mean quality", "clusters covered", "mean nearest-neighbour sim", "selected", "random"):
        assert label in result.output
    info = json.loads(
        CliRunner()
        .invoke(main, ["select", str(run_dir), "-n", "10", "-o", str(tmp_path / "b.jsonl"), "--json"])
        .stdout
    )
    assert info["quality_used"] is False and info["embedded_now"] == 0
    assert info["picked"]["clusters_covered"] == info["picked"]["clusters_total"]
    assert info["picked"]["clusters_covered"] >= info["random"]["clusters_covered"]
    assert info["picked"]["mean_nn_similarity"] < info["random"]["mean_nn_similarity"]
    assert set(info["ids"]) == picked


def labelled_copy(run_dir: Path, root: Path, topics: dict[str, str], good: set[str]) -> Path:
    """A copy of the run (embeddings cache included) with people's labels imported through
    `selfinstruct review --import`: every small-topic task and every other cooking task."""
    copy = root / "labelled"
    shutil.copytree(run_dir, copy)
    rows = []
    for k, (task_id, topic) in enumerate(sorted(topics.items())):
        if topic != "cooking" or k % 2 == 0:
            rows.append(
                {
                    "task_id": task_id,
                    "valid_instruction": True,
                    "input_ok": True,
                    "output_ok": topic in good,
                    "reviewer": "test",
                    "instance": 0,
                }
            )
    labels = root / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(main, ["review", str(copy), "--import", str(labels)])
    assert result.exit_code == 0, result.output
    return copy


def test_select_with_human_labels_trains_and_reports_the_model(topic_run, tmp_path):
    run_dir, topics = topic_run
    labelled = labelled_copy(run_dir, tmp_path, topics, good={"math", "code", "translation", "poetry"})
    out = tmp_path / "picked.json"
    result = CliRunner().invoke(
        main, ["select", str(labelled), "-n", "12", "-o", str(out), "--format", "alpaca", "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["model"]["cv_accuracy"] >= 0.9 and info["model"]["cv_auc"] >= 0.9
    labels = len((tmp_path / "labels.jsonl").read_text().splitlines())
    assert info["quality_sources"] == {"human": labels, "model": len(topics) - labels}
    assert info["picked"]["mean_quality"] > info["random"]["mean_quality"]
    assert info["embedded_now"] == 0, "the copied run's embeddings were reused"
    assert len(json.loads(out.read_text())) == 12
    result = CliRunner().invoke(main, ["select", str(labelled), "-n", "12", "-o", str(out)])
    assert "cross-validated accuracy" in result.output and "AUC" in result.output


def test_export_and_train_min_quality_keep_only_good_tasks(topic_run, tmp_path):
    run_dir, topics = topic_run
    labelled = labelled_copy(run_dir, tmp_path, topics, good={"math", "code"})
    out = tmp_path / "good.jsonl"
    result = CliRunner().invoke(
        main, ["export", str(labelled), "--format", "jsonl", "-o", str(out), "--min-quality", "0.5"]
    )
    assert result.exit_code == 0, result.output
    kept = {json.loads(line)["task_id"] for line in out.read_text().splitlines()}
    assert {topics[i] for i in kept} == {"math", "code"}
    assert (
        "quality filter (quality >= 0.5): kept 10 tasks; left out 90 below the minimum quality"
        in result.output
    )
    examples = task_examples(Run.open(labelled).committed_tasks())
    train, test, _ = load_splits(labelled, keep=[QualityFilter(min_quality=0.5, quiet=True)])
    assert {topics[e["task_id"]] for e in train} <= {"math", "code"}
    picked, note = selected_training(labelled, train, 4, quiet=True)
    assert len({e["task_id"] for e in picked}) == 4 and {topics[e["task_id"]] for e in picked} == {
        "math",
        "code",
    }
    assert "selection" in note and "for quality and coverage" in note
    held = {e["task_id"] for e in test}
    assert not held & {e["task_id"] for e in picked}, "select picks among the training side only"
    assert len(examples) == 100


def test_select_among_a_subset_and_without_quality(topic_run):
    run_dir, topics = topic_run
    view = load_view(run_dir)
    assert not view.quality.available and "coverage alone" in view.quality.notes[-1]
    among = {i for i, t in topics.items() if t != "poetry"}
    chosen = choose(view, 8, among=among)
    assert set(chosen.ids) <= among and {topics[i] for i in chosen.ids} == {
        "cooking",
        "math",
        "translation",
        "code",
    }


def test_min_quality_without_a_source_and_a_bad_output_are_exit_2(topic_run, tmp_path):
    run_dir, _ = topic_run
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(run_dir),
            "--format",
            "jsonl",
            "-o",
            str(tmp_path / "y.jsonl"),
            "--min-quality",
            "0.5",
        ],
    )
    assert result.exit_code == 2 and "--min-quality needs a quality source" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["select", str(run_dir), "-n", "3", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "is a directory" in result.output


def test_random_method_is_the_control(topic_run):
    run_dir, _ = topic_run
    view = load_view(run_dir)
    picked = choose(view, 10, method="random", seed=3)
    again = choose(view, 10, method="random", seed=3)
    assert picked.ids == again.ids and len(set(picked.ids)) == 10
    assert picked.picked == picked.random, "the control is the random subset itself"


def test_a_model_no_better_than_chance_is_not_used():
    from pipeline.curate.quality import task_quality
    from pipeline.run.schemas import MachineTask

    vectors, topic = clustered([60, 60], noise=0.6, seed=3)
    tasks = [
        MachineTask.model_construct(id=f"t{i}", instruction=f"task {i}", instances=[])
        for i in range(len(vectors))
    ]
    noise = np.random.default_rng(7).permutation(topic)
    human = {f"t{i}": bool(noise[i]) for i in range(0, 120, 2)}
    quality = task_quality(tasks, vectors, human, {})
    assert quality.model is not None and quality.model.auc < 0.6
    assert any("no better than chance" in note for note in quality.notes)
    assert quality.counts() == {"human": 60, "none": 60}
    useful = task_quality(tasks, vectors, {f"t{i}": bool(topic[i]) for i in range(0, 120, 2)}, {})
    assert useful.counts() == {"human": 60, "model": 60}
    assert (useful.scores[1::2][topic[1::2] == 1] > 0.5).mean() > 0.9


def test_lazy_greedy_makes_the_textbook_greedy_choices():
    """Facility location's lazy evaluation changes the cost, not the picks (on data without near-ties)."""
    vectors, _ = clustered([40, 30, 20, 10], noise=0.8, seed=5)
    vectors = vectors.astype(np.float64)
    sims = np.maximum(vectors @ vectors.T, 0.0)
    best = np.zeros(len(vectors))
    textbook: list[int] = []
    for _ in range(12):
        gains = np.maximum(sims - best, 0.0).sum(axis=1)
        gains[textbook] = -1.0
        textbook.append(int(np.argmax(gains)))
        best = np.maximum(best, sims[textbook[-1]])
    assert facility_location(vectors, 12) == textbook
