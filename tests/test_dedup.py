"""RougeIndex must make exactly the decisions of the straightforward rouge-score loop."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from rouge_score import rouge_scorer

from pipeline.quality.dedup import DedupConfig, DedupDisabledWarning, RougeIndex
from pipeline.quality.rouge import rouge_l

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BENCH = SHARED / "bench" / "instructions_52k.jsonl"
SEEDS = SHARED / "reference" / "self_instruct_seed_tasks.jsonl"

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def reference_dedup(pool: list[str], texts: list[str], threshold: float = 0.7):
    """Self-Instruct's loop, plainly: score against seeds + kept, reject when max > threshold.

    Tokens come from rouge-score's tokenizer once per text and pairs from its `_score_lcs`, exactly
    what `RougeScorer.score(text, other)` does, as Alpaca's loop calls it.
    """
    tokens = [SCORER._tokenizer.tokenize(text) for text in pool]
    out = []
    for text in texts:
        new = SCORER._tokenizer.tokenize(text)
        scores = [rouge_scorer._score_lcs(new, other).fmeasure for other in tokens]
        best = max(scores) if scores else 0.0
        kept = not best > threshold
        mean = float(np.mean(scores)) if scores else 0.0
        out.append((kept, best, sorted(scores, reverse=True)[:10], mean))
        if kept:
            tokens.append(new)
    return out


@pytest.fixture(scope="module")
def real_slice():
    with BENCH.open(encoding="utf-8") as handle:
        lines = [json.loads(line)["instruction"] for line in itertools.islice(handle, 400)]
    with SEEDS.open(encoding="utf-8") as handle:
        seeds = [json.loads(line)["instruction"] for line in handle if line.strip()][:30]
    return seeds, lines, reference_dedup(seeds, lines)


@pytest.mark.parametrize("stats", [True, False])
def test_identical_decisions_on_a_real_slice(real_slice, stats: bool) -> None:
    seeds, lines, expected = real_slice
    assert sum(not kept for kept, *_ in expected) > 10  # the slice really has near-duplicates
    index = RougeIndex(DedupConfig(similarity_stats=stats))
    index.add_many(seeds)
    results = index.offer_many(lines)
    assert [r.kept for r in results] == [kept for kept, *_ in expected]
    for result, (kept, best, top, mean) in zip(results, expected, strict=True):
        if not kept:
            assert result.max_score == best  # bit-identical
            assert list(result.most_similar.values())[0] == best
            assert all(score > 0.7 for score in result.most_similar.values())
        elif stats:
            assert result.max_score == best
            assert list(result.most_similar.values()) == top
            assert result.avg_similarity == pytest.approx(mean, rel=1e-12, abs=1e-15)
        else:
            assert result.max_score <= best
    assert len(index) == len(seeds) + sum(kept for kept, *_ in expected)
    s = index.stats
    assert s["pairs_scored"] + s["pairs_pruned"] == sum(
        len(seeds) + sum(k for k, *_ in expected[:i]) for i in range(len(lines))
    )
    assert s["pairs_pruned"] > 10 * s["pairs_scored"]


def test_one_at_a_time_equals_batch(real_slice) -> None:
    seeds, lines, expected = real_slice
    index = RougeIndex()
    for seed in seeds:
        index.add(seed)
    assert [index.offer(line).kept for line in lines] == [kept for kept, *_ in expected]


VOCAB = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
SMALL_TEXTS = st.lists(st.sampled_from(VOCAB), min_size=0, max_size=12).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(
    pool=st.lists(SMALL_TEXTS, max_size=6),
    texts=st.lists(SMALL_TEXTS, min_size=1, max_size=30),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0]),
    stats=st.booleans(),
)
def test_decisions_match_reference_on_generated_corpora(pool, texts, threshold, stats) -> None:
    # a tiny vocabulary makes near-duplicates and exact ties on the threshold common
    expected = reference_dedup(pool, texts, threshold)
    index = RougeIndex(DedupConfig(threshold=threshold, similarity_stats=stats))
    index.add_many(pool)
    results = index.offer_many(texts)
    assert [r.kept for r in results] == [kept for kept, *_ in expected]
    for result, (kept, best, _, mean) in zip(results, expected, strict=True):
        if not kept or stats:
            assert result.max_score == best
        if kept and stats:
            assert result.avg_similarity == pytest.approx(mean, rel=1e-12, abs=1e-15)


def test_threshold_tie_is_kept() -> None:
    a = "one two three four five six seven eight nine ten"
    b = "one two three four five six seven x y z"
    score = rouge_l(b, a)
    index = RougeIndex(DedupConfig(threshold=score))
    index.add(a)
    assert index.check(b).kept  # rejected only when strictly above
    index = RougeIndex(DedupConfig(threshold=np.nextafter(score, 0)))
    index.add(a)
    assert not index.check(b).kept


def test_check_offer_add() -> None:
    index = RougeIndex()
    index.add("give three tips for staying healthy")
    index.add("give three tips for staying healthy")  # add is unconditional
    assert len(index) == 2
    result = index.check("give three tips for staying healthy today")
    assert not result.kept and result.max_score > 0.7
    assert len(index) == 2
    kept = index.check("explain how a rainbow forms in the sky")
    assert kept.kept and len(index) == 2  # check never inserts
    assert index.offer("explain how a rainbow forms in the sky").kept
    assert len(index) == 3
    assert not index.offer("explain how a rainbow forms in the sky").kept
    assert index.texts[-1] == "explain how a rainbow forms in the sky"


def test_earlier_kept_candidates_count_within_a_batch() -> None:
    results = RougeIndex().offer_many(
        ["list five fruits that are red", "list five fruits that are red please", "name a famous painter"]
    )
    assert [r.kept for r in results] == [True, False, True]
    assert results[1].most_similar == {"list five fruits that are red": results[1].max_score}
    assert results[0].max_score == 0.0 and results[0].most_similar == {} and results[0].avg_similarity == 0.0


def test_most_similar_top_k_best_first_ties_to_earlier() -> None:
    index = RougeIndex(DedupConfig(top_k=2))
    index.add_many(["red apple pie", "green apple tart", "blue apple cake", "plain water"])
    result = index.check("apple pie recipe")
    assert result.kept
    assert list(result.most_similar) == ["red apple pie", "green apple tart"]
    assert list(result.most_similar.values()) == [
        rouge_l("apple pie recipe", "red apple pie"),
        rouge_l("apple pie recipe", "green apple tart"),
    ]
    assert result.avg_similarity == pytest.approx(
        np.mean([rouge_l("apple pie recipe", t) for t in index.texts]), rel=1e-12
    )
    assert RougeIndex(DedupConfig(top_k=0)).offer("anything at all").most_similar == {}


def test_wordless_texts_warn_once_and_unicode_tokenizer_dedups_them() -> None:
    chinese = ["写一首关于秋天的诗", "写一首关于秋天的诗", "解释光合作用的过程"]
    index = RougeIndex()
    with pytest.warns(DedupDisabledWarning, match="--tokenizer unicode"):
        results = index.offer_many(chinese)
    assert [r.kept for r in results] == [True, True, True]  # dedup silently off under rouge's tokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("error", DedupDisabledWarning)
        index.offer("再写一首诗")  # warned once per index
    assert index.stats["wordless_texts"] == 4
    unicode_index = RougeIndex(DedupConfig(tokenizer="unicode"))
    assert [r.kept for r in unicode_index.offer_many(chinese)] == [True, False, True]


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        DedupConfig(threshold=1.5)
    with pytest.raises(ValidationError):
        DedupConfig(tokenizer="bpe")
    with pytest.raises(ValidationError):
        DedupConfig(treshold=0.5)
    assert DedupConfig().model_dump() == {
        "threshold": 0.7,
        "tokenizer": "rouge",
        "top_k": 10,
        "similarity_stats": True,
    }
