"""pipeline.quality.rouge must give rouge-score's ROUGE-L F-measure to the last bit, and its tokens."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer
from rouge_score import tokenize as rouge_tokenize

from pipeline.quality.rouge import (
    fmeasure,
    fmeasure_array,
    loses_all_words,
    max_against,
    max_pairwise,
    rouge_l,
    tokenize,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BENCH = SHARED / "bench" / "instructions_52k.jsonl"
SEEDS = SHARED / "reference" / "self_instruct_seed_tasks.jsonl"

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def reference(a: str, b: str) -> float:
    return SCORER.score(a, b)["rougeL"].fmeasure


def bench_lines(n: int) -> list[str]:
    with BENCH.open(encoding="utf-8") as handle:
        return [json.loads(line)["instruction"] for line in itertools.islice(handle, n)]


def seed_instructions() -> list[str]:
    with SEEDS.open(encoding="utf-8") as handle:
        return [json.loads(line)["instruction"] for line in handle if line.strip()]


# Words that repeat (so pairs share subsequences), punctuation, and characters whose lowercase is
# ASCII (the Kelvin sign, dotted capital I) or that vanish under rouge-score's tokenizer.
WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "Mat", "MAT", "42", "x9", "über", "naïve", "İzmir"]
PIECES = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from([" ", "  ", ", ", ".", "!", "?", "\n", "\t", "-", "_", "'s", "\u212a", "\u0130", "é"]),
    st.sampled_from(["中文", "日本語", "สวัสดี", "привет", "😀", "ß", "\u00a0"]),
    st.text(max_size=4),
)
TEXTS = st.lists(PIECES, max_size=24).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXTS, min_size=2, max_size=8))
def test_rouge_l_equals_rouge_score_bit_for_bit(texts: list[str]) -> None:
    # every ordered pair of each generated list: thousands of pairs over the run
    for text in texts:
        assert tokenize(text) == rouge_tokenize.tokenize(text, None)
    for a, b in itertools.permutations(texts, 2):
        score = rouge_l(a, b)
        expected = reference(a, b)
        assert np.float64(score).tobytes() == np.float64(expected).tobytes(), (a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("", ""),
        ("", "word"),
        ("word", ""),
        ("word", "word"),
        ("word", "other"),
        ("!!! ... ???", "!!!"),
        ("...", "the cat"),
        ("中文文本", "中文文本"),
        ("Привет мир", "привет мир"),
        ("The Cat sat", "the cat SAT on the mat"),
        ("a a a a", "a"),
        ("\u212aelvin", "kelvin"),
    ],
)
def test_edge_cases(a: str, b: str) -> None:
    assert rouge_l(a, b) == reference(a, b)


def test_real_pairs_from_the_bench_file_and_seeds() -> None:
    lines = bench_lines(2000)
    seeds = seed_instructions()
    pairs = list(itertools.pairwise(lines)) + list(zip(lines[::7], lines[3::7], strict=False))
    pairs += list(itertools.combinations(seeds[:50], 2))
    pairs += list(zip(seeds, lines, strict=False))
    assert len(pairs) > 3000
    for a, b in pairs:
        assert rouge_l(a, b) == reference(a, b), (a, b)


def test_formula_is_rouge_scores_not_the_simplified_one() -> None:
    # 2*lcs/(la+lb) is the same number in exact arithmetic but not always in floating point:
    # the exact threshold behaviour depends on using rouge-score's 2*p*r/(p+r).
    differs = [
        (lcs, la, lb)
        for la in range(1, 40)
        for lb in range(1, 40)
        for lcs in range(1, min(la, lb) + 1)
        if fmeasure(lcs, la, lb) != 2 * lcs / (la + lb)
    ]
    assert differs
    lcs, la, lb = differs[0]
    a = " ".join(f"w{i}" for i in range(la))
    b = " ".join([f"w{i}" for i in range(lcs)] + [f"z{i}" for i in range(lb - lcs)])
    assert rouge_l(a, b) == reference(a, b) == fmeasure(lcs, la, lb)


def test_fmeasure_array_matches_scalar() -> None:
    la, lb, lcs = np.meshgrid(np.arange(0, 30), np.arange(0, 30), np.arange(0, 30), indexing="ij")
    valid = lcs <= np.minimum(la, lb)
    got = fmeasure_array(lcs[valid], la[valid], lb[valid])
    want = [
        fmeasure(int(c), int(a), int(b)) for c, a, b in zip(lcs[valid], la[valid], lb[valid], strict=True)
    ]
    assert got.tolist() == want


def test_symmetric_to_the_bit() -> None:
    lines = bench_lines(300)
    for a, b in zip(lines, lines[1:], strict=False):
        assert rouge_l(a, b) == rouge_l(b, a) == reference(b, a)


def test_max_pairwise_and_max_against_match_brute_force() -> None:
    seeds = seed_instructions()[:60]
    lines = bench_lines(40)
    best = max(
        ((reference(seeds[i], seeds[j]), i, j) for i in range(len(seeds)) for j in range(i + 1, len(seeds))),
        key=lambda t: (t[0], -t[1], -t[2]),
    )
    assert max_pairwise(seeds) == best
    best_against = max(
        ((reference(lines[i], seeds[j]), i, j) for i in range(len(lines)) for j in range(len(seeds))),
        key=lambda t: (t[0], -t[1], -t[2]),
    )
    assert max_against(lines, seeds) == best_against
    assert max_pairwise(["only one"]) == (0.0, -1, -1)
    assert max_against([], seeds) == (0.0, -1, -1)


def test_unicode_tokenizer() -> None:
    assert tokenize("写一首关于秋天的诗", "unicode") == list("写一首关于秋天的诗")
    assert tokenize("Hello, WORLD! ＡＢＣ１２３", "unicode") == ["hello", "world", "abc123"]
    assert tokenize("Straße", "unicode") == ["strasse"]
    assert tokenize("हिन्दी भाषा", "unicode") == ["हिन्दी", "भाषा"]  # vowel signs stay in their word
    assert tokenize("สวัสดี", "unicode") == ["ส", "วั", "ส", "ดี"]  # Thai: one token per character + marks
    assert tokenize("snake_case", "unicode") == ["snake", "case"]
    assert rouge_l("写一首关于秋天的诗", "写一首关于春天的诗", "unicode") == pytest.approx(8 / 9)
    assert rouge_l("写一首关于秋天的诗", "写一首关于春天的诗") == 0.0
    with pytest.raises(ValueError, match="unknown tokenizer"):
        tokenize("x", "bpe")


def test_loses_all_words() -> None:
    assert loses_all_words("中文文本", tokenize("中文文本"))
    assert not loses_all_words("中文 text", tokenize("中文 text"))
    assert not loses_all_words("!!! ...", tokenize("!!! ..."))
    assert not loses_all_words("", [])
