"""The report's diversity map: what the kept instructions cover, as clusters, a 2-D map and the seeds.

Clusters are k-means on the sentence embeddings (`pipeline.curate`), each named by its most central
instruction and its most common verb-noun pair (the same parse as the verb section). The map is a
PCA projection of tasks and seeds together (linear, so distances along its axes mean the same
everywhere; scikit-learn's), coloured by cluster and by the people's or the judge's verdict.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.curate.cache import EmbeddingCache, embed_texts
from pipeline.curate.clusters import cluster, top_share
from pipeline.curate.embedder import Embedder
from pipeline.curate.runview import run_embedder_config
from pipeline.run.judgments import judge_caution, read_judgments, task_digest
from pipeline.run.reader import Run
from pipeline.run.schemas import MachineTask, SeedTask

NEAR_SEED = 0.8
"""Cosine to the nearest seed above which a task circles that seed (a rewording or a close variant)."""
BEYOND_SEEDS = 0.5
"""Cosine to the nearest seed below which a task is somewhere its seeds are not."""


def verb_noun_pairs(instructions: list[str], method: str = "auto") -> list[str | None]:
    """'verb noun' (or the verb, or the leading word without a parser) of each instruction."""
    from pipeline.report.verbs import leading_word, load_spacy, verb_and_object

    nlp = load_spacy() if method != "simple" else None
    if nlp is None:
        return [leading_word(t) for t in instructions]
    out: list[str | None] = []
    for doc in nlp.pipe(instructions, batch_size=64):
        verb, noun = verb_and_object(doc)
        out.append(" ".join(w for w in (verb, noun) if w) or None)
    return out


def verdicts(run_dir: Path, tasks: list[MachineTask]) -> tuple[list[bool | None], str | None, str | None]:
    """Each task's verdict (fully valid or not): the people's where they reviewed it, else the judge's;
    with the source named and the judge's caution when it is the bundled model."""
    from pipeline.curate.labels import human_labels

    people = human_labels(run_dir, tasks)
    judged = read_judgments(run_dir)
    out: list[bool | None] = []
    used: Counter[str] = Counter()
    for task in tasks:
        j = judged.get(task.id)
        if task.id in people:
            out.append(people[task.id])
            used["people"] += 1
        elif j is not None and j.scored and j.task_digest == task_digest(task):
            out.append(j.all_valid)
            used["judge"] += 1
        else:
            out.append(None)
    source = " and ".join(f"{k} ({v})" for k, v in used.most_common()) or None
    caution = judge_caution(j.judge.model for j in judged.values()) if used["judge"] else None
    return out, source, caution


def diversity_figures(
    run_dir: str | Path,
    tasks: list[MachineTask],
    seeds: list[SeedTask],
    *,
    verb_method: str = "auto",
    on_embedded: Callable[[int], None] | None = None,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Clusters, map coordinates, seed coverage; None with fewer than 4 kept tasks."""
    if len(tasks) < 4:
        return None
    from sklearn.decomposition import PCA

    run = Run(run_dir)
    embedder = Embedder(run_embedder_config(run))
    cache = EmbeddingCache.for_run(run.path, embedder)
    texts = [t.instruction for t in tasks]
    vectors = embed_texts(embedder, texts, cache, on_embedded).vectors
    seed_vectors = embed_texts(embedder, [s.instruction for s in seeds], cache).vectors if seeds else None
    found = cluster(vectors, seed=seed)
    sizes = found.sizes()
    pairs = verb_noun_pairs(texts, verb_method)
    verdict, verdict_source, caution = verdicts(run.path, tasks)
    seed_cluster = found.assign(seed_vectors) if seed_vectors is not None else np.zeros(0, dtype=int)
    clusters = []
    for c in range(found.k):
        members = np.flatnonzero(found.labels == c)
        top = Counter(pairs[i] for i in members if pairs[i]).most_common(1)
        judged = [verdict[i] for i in members if verdict[i] is not None]
        clusters.append(
            {
                "id": c,
                "size": int(sizes[c]),
                "share": float(sizes[c]) / len(tasks),
                "name": texts[found.central[c]] if found.central[c] >= 0 else "",
                "pair": top[0][0] if top else None,
                "pair_count": top[0][1] if top else 0,
                "seeds": int((seed_cluster == c).sum()),
                "valid_share": (sum(judged) / len(judged)) if judged else None,
            }
        )
    order = sorted(range(found.k), key=lambda c: -clusters[c]["size"])
    both = vectors if seed_vectors is None else np.vstack([vectors, seed_vectors])
    xy = PCA(n_components=2, random_state=seed).fit_transform(both)
    figures: dict[str, Any] = {
        "embedder": embedder.identity,
        "tasks": len(tasks),
        "seeds": len(seeds),
        "k": found.k,
        "top10_clusters": max(1, math.ceil(found.k * 0.1)),
        "top10_share": top_share(sizes, 0.1),
        "clusters": [clusters[c] for c in order],
        "points": {
            "x": xy[: len(tasks), 0].round(4).tolist(),
            "y": xy[: len(tasks), 1].round(4).tolist(),
            "cluster": found.labels.tolist(),
            "verdict": verdict,
        },
        "seed_points": {
            "x": xy[len(tasks) :, 0].round(4).tolist(),
            "y": xy[len(tasks) :, 1].round(4).tolist(),
        },
        "verdict_source": verdict_source,
        "caution": caution,
    }
    figures.update(seed_coverage(vectors, seed_vectors))
    unseeded = [c for c in clusters if c["seeds"] == 0]
    figures["clusters_without_seeds"] = len(unseeded)
    figures["tasks_in_clusters_without_seeds"] = sum(c["size"] for c in unseeded)
    return figures


def seed_coverage(vectors: np.ndarray, seed_vectors: np.ndarray | None) -> dict[str, Any]:
    """Where the run went beyond its seeds and where it kept circling them."""
    if seed_vectors is None or not len(seed_vectors):
        return {"near_seeds": None, "beyond_seeds": None, "median_seed_similarity": None}
    nearest = (vectors @ seed_vectors.T).max(axis=1)
    seed_used = (seed_vectors @ vectors.T).max(axis=1)
    return {
        "median_seed_similarity": float(np.median(nearest)),
        "near_seeds": float((nearest > NEAR_SEED).mean()),
        "beyond_seeds": float((nearest < BEYOND_SEEDS).mean()),
        "seeds_left_alone": int((seed_used < BEYOND_SEEDS).sum()),
        "nearest_seed_histogram": np.histogram(nearest, bins=20, range=(0.0, 1.0))[0].tolist(),
        "near_seed_threshold": NEAR_SEED,
        "beyond_seed_threshold": BEYOND_SEEDS,
    }
