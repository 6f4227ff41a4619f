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

from pipeline.quality.dedup import DedupConfig, DedupDisabledWarning, RougeIndex, _Bounds
from pipeline.quality.rouge import Vocabulary, fmeasure_array, lcs_matrix, rouge_l, tokenize

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


def made_up_corpus(size: int, seed: int = 7) -> list[str]:
    """Texts over a 60-word vocabulary, lengths 3 to 15: many shared words, a few near-duplicates."""
    rng = np.random.default_rng(seed)
    words = [f"w{k}" for k in range(60)]
    weights = 1.0 / np.arange(1, 61)  # Zipf-like, so some words are in most texts
    weights /= weights.sum()
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 16)), p=weights)) for _ in range(size)]


@pytest.fixture(scope="module")
def sampled_and_exact():
    texts = made_up_corpus(1500)
    exact = RougeIndex(DedupConfig(stats_sample=10**6)).offer_many(texts)
    # one at a time, every kept text draws its own sample: independent errors, to check the SE
    alone = RougeIndex(DedupConfig(stats_sample=300))
    sampled = [alone.offer(text) for text in texts]
    # in one batch, the texts of a chunk share a sample
    batched = RougeIndex(DedupConfig(stats_sample=300)).offer_many(texts)
    return texts, exact, sampled, batched


def standard_errors_off(estimates: list, exact: list) -> np.ndarray:
    """(estimate - exact mean) / its standard error for every sampled kept text; asserts the rest:
    exact records at or below the size rule, and the neighbours and best score exact everywhere."""
    assert [r.kept for r in estimates] == [r.kept for r in exact]
    z = []
    seen = 0
    for fast, slow in zip(estimates, exact, strict=True):
        assert fast.max_score == slow.max_score
        assert list(fast.most_similar.items()) == list(slow.most_similar.items())
        if not fast.kept:
            continue
        if seen > 300:
            assert fast.avg_similarity_sample == 300 and fast.avg_similarity_se > 0
            z.append((fast.avg_similarity - slow.avg_similarity) / fast.avg_similarity_se)
        else:  # at or below the size rule: the exact mean, and the record says nothing more
            assert fast.avg_similarity == slow.avg_similarity
            assert fast.avg_similarity_se is None and fast.avg_similarity_sample is None
        seen += 1
    assert len(z) > 200
    return np.array(z)


def test_sampled_mean_is_within_its_standard_errors(sampled_and_exact) -> None:
    _, exact, sampled, batched = sampled_and_exact
    z = standard_errors_off(sampled, exact)
    # an honest standard error: about 95% of the estimates within 2 of them, not all within a fraction of one
    assert np.mean(np.abs(z) < 2) >= 0.9 and np.mean(np.abs(z) < 0.5) < 0.6
    assert np.abs(z).max() < 4.5
    assert np.abs(standard_errors_off(batched, exact)).max() < 4.5


def test_sampled_mean_is_seeded(sampled_and_exact) -> None:
    texts, _, _, sampled = sampled_and_exact
    again = RougeIndex(DedupConfig(stats_sample=300)).offer_many(texts)
    assert [r.avg_similarity for r in again] == [r.avg_similarity for r in sampled]
    assert [r.avg_similarity_se for r in again] == [r.avg_similarity_se for r in sampled]
    other = RougeIndex(DedupConfig(stats_sample=300, stats_seed=1)).offer_many(texts)
    kept = [(a, b) for a, b in zip(other, sampled, strict=True) if a.kept]
    # where 300 entries are a small part of the index, another seed draws another sample
    differ = [a.avg_similarity != b.avg_similarity for a, b in kept[1000:]]
    assert len(differ) > 100 and all(differ)


@settings(max_examples=150, deadline=None)
@given(
    pool=st.lists(SMALL_TEXTS, max_size=6),
    texts=st.lists(SMALL_TEXTS, min_size=1, max_size=30),
    top_k=st.sampled_from([0, 1, 2, 3, 10]),
)
def test_bounded_top_k_equals_every_pair(pool, texts, top_k) -> None:
    # stats_sample=2: every kept candidate past two entries takes the bounded path (ties, zeros, duplicates)
    results = []
    for sample in (2, 10**6):
        index = RougeIndex(DedupConfig(top_k=top_k, stats_sample=sample))
        index.add_many(pool)
        results.append(index.offer_many(texts))
    for fast, slow in zip(*results, strict=True):
        assert (fast.kept, fast.max_score) == (slow.kept, slow.max_score)
        assert list(fast.most_similar.items()) == list(slow.most_similar.items())


def test_config_keeps_the_sample_rule_out_of_resolved_configs() -> None:
    assert "stats_sample" not in DedupConfig().model_dump()
    assert DedupConfig(stats_sample=500, stats_seed=3).model_dump()["stats_sample"] == 500
    with pytest.raises(ValidationError):
        DedupConfig(stats_sample=1)


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95, 1.0])
def test_need_of_many_pairs_is_need_of_each(threshold: float) -> None:
    bounds = _Bounds(threshold)
    a, b = (grid.ravel() for grid in np.meshgrid(np.arange(1, 160), np.arange(1, 160)))
    a = np.concatenate([a, [1000, 4095, 4096, 65535, 300]])
    b = np.concatenate([b, [1371, 5000, 2000, 70000, 1]])
    assert bounds.need_array(a, b).tolist() == [
        bounds.need(int(x), int(y)) for x, y in zip(a, b, strict=True)
    ]


def every_pair(
    pool: list[str], texts: list[str], threshold: float = 0.7
) -> list[tuple[bool, float, list[float]]]:
    """The greedy decisions with every pair scored (rapidfuzz's LCS and rouge-score's formula, which
    tests of pipeline.quality.rouge hold to rouge-score): (kept, max score, scores above threshold)."""
    vocab = Vocabulary()
    codes = [vocab.encode(tokenize(text)) for text in pool]
    out = []
    for text in texts:
        code = vocab.encode(tokenize(text))
        scores = np.zeros(0)
        if codes:
            scores = fmeasure_array(
                lcs_matrix([code], codes)[0], len(code), np.array([len(c) for c in codes])
            )
        best = float(scores.max()) if scores.size else 0.0
        out.append(
            (not best > threshold, best, sorted(scores[scores > threshold].tolist(), reverse=True)[:10])
        )
        if not best > threshold:
            codes.append(code)
    return out


def paraphrases(texts: list[str], count: int, seed: int) -> list[str]:
    """Texts with a few words swapped, dropped or repeated: near-duplicates of every degree."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        words = texts[int(rng.integers(len(texts)))].split()
        for _ in range(int(rng.integers(1, 5))):
            k = int(rng.integers(len(words)))
            edit = rng.random()
            if edit < 0.4 and len(words) > 1:
                words[k], words[k - 1] = words[k - 1], words[k]
            elif edit < 0.7 and len(words) > 2:
                del words[k]
            else:
                words.insert(k, words[int(rng.integers(len(words)))])
        out.append(" ".join(words))
    return out


def test_decisions_match_every_pair_across_merges_and_rebuilds() -> None:
    # thousands of entries: postings merged into the sorted keys many times, the element order rebuilt
    # between the three calls, long texts (past _SPAN_MAX lengths) read whole
    with BENCH.open(encoding="utf-8") as handle:
        lines = [json.loads(line)["instruction"] for line in itertools.islice(handle, 2500)]
    with SEEDS.open(encoding="utf-8") as handle:
        seeds = [json.loads(line)["instruction"] for line in handle if line.strip()]
    long = [" ".join([line] * 20) for line in lines[:40]]
    texts = lines + paraphrases(lines + long, 3500, seed=3) + long
    order = np.random.default_rng(4).permutation(len(texts))
    texts = [texts[k] for k in order]
    expected = every_pair(seeds, texts)
    index = RougeIndex(DedupConfig(similarity_stats=False))
    index.add_many(seeds)
    results = [r for part in (texts[:500], texts[500:2500], texts[2500:]) for r in index.offer_many(part)]
    assert sum(not kept for kept, *_ in expected) > 1000
    assert [r.kept for r in results] == [kept for kept, *_ in expected]
    for result, (kept, best, above) in zip(results, expected, strict=True):
        if not kept:
            assert result.max_score == best
            assert list(result.most_similar.values()) == above[: len(result.most_similar)]
    s = index.stats
    assert s["pairs_pruned"] > 50 * s["pairs_scored"]
