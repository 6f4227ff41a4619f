"""ROUGE-L F-measure, bit-identical to rouge-score, at C speed.

rouge-score (`RougeScorer(["rougeL"], use_stemmer=False)`) tokenizes both texts, fills a pure-Python
LCS table and returns `2*p*r/(p+r)` with `p = lcs/len(prediction)`, `r = lcs/len(target)`. Here the
LCS length comes from rapidfuzz's bit-parallel `LCSseq` on token sequences (an integer, so exact),
and the final float uses the very same formula, so scores equal rouge-score's to the last bit and a
score sitting exactly on a threshold is decided the same way. (That float is symmetric: `2*p` is
exact, so swapping target and prediction cannot change a bit.)

Tokens are interned to integers and each text becomes a string of code points, the form rapidfuzz
compares fastest.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

TOKENIZERS = ("rouge", "unicode")

# rouge-score lowercases, turns every run of non-[a-z0-9] into a space, splits on whitespace and keeps
# the tokens matching ^[a-z0-9]+$: exactly the maximal runs of [a-z0-9] in the lowercased text.
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")

# Scripts written without spaces between words: each character is one token.
_UNSPACED = (
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # halfwidth Katakana
    "\U00020000-\U0003134f"  # CJK extensions B-G
)


@functools.cache
def _unicode_token_re() -> re.Pattern[str]:
    """Words of any script, combining marks included (Devanagari vowel signs, the dot of a casefolded
    "İ"); a character of an unspaced script, with its marks, is a token of its own."""
    ranges = []
    start = None
    for code in range(0x20000):  # every combining mark below the supplementary ideographic plane
        is_mark = unicodedata.category(chr(code))[0] == "M"
        if is_mark and start is None:
            start = code
        elif not is_mark and start is not None:
            ranges.append((start, code - 1))
            start = None
    ranges.append((0xE0100, 0xE01EF))  # variation selectors supplement, the only marks above
    marks = "".join(f"{chr(a)}-{chr(b)}" for a, b in ranges)
    return re.compile(
        rf"[{_UNSPACED}][{marks}]*|(?:(?![{_UNSPACED}])[^\W_])(?:(?![{_UNSPACED}])[^\W_]|[{marks}])*"
    )


_MAX_CODE_POINT = 0x10FFFF
_PARALLEL_PAIRS = 200_000


def tokenize(text: str, tokenizer: str = "rouge") -> list[str]:
    """Tokens as the scorer sees them.

    "rouge" is rouge-score's default tokenizer without stemmer (only ASCII letters and digits
    survive); "unicode" is an opt-in tokenizer for other languages: NFKC, casefold, words of any
    script, and one token per character in scripts written without spaces (Chinese, Japanese, Thai...).
    """
    if tokenizer == "rouge":
        return _ROUGE_TOKEN.findall(text.lower())
    if tokenizer == "unicode":
        return _unicode_token_re().findall(unicodedata.normalize("NFKC", text).casefold())
    raise ValueError(f"unknown tokenizer {tokenizer!r}; expected one of {', '.join(TOKENIZERS)}")


def loses_all_words(text: str, tokens: Sequence[str]) -> bool:
    """True when the text has letters or digits but none survived tokenization.

    Such a text scores 0 against everything, so dedup is silently off for it (e.g. Chinese under
    the default tokenizer); callers warn about it.
    """
    return not tokens and any(ch.isalnum() for ch in text)


def fmeasure(lcs: int, len_target: int, len_prediction: int) -> float:
    """rouge-score's `_score_lcs` F-measure from an LCS length, float for float."""
    if len_target == 0 or len_prediction == 0:
        return 0.0
    precision = lcs / len_prediction
    recall = lcs / len_target
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def fmeasure_array(lcs: np.ndarray, len_target: np.ndarray, len_prediction: np.ndarray) -> np.ndarray:
    """`fmeasure` over broadcast arrays; every IEEE operation in the same order, so the same bits."""
    lcs = np.asarray(lcs, dtype=np.float64)
    len_target = np.asarray(len_target, dtype=np.float64)
    len_prediction = np.asarray(len_prediction, dtype=np.float64)
    shape = np.broadcast_shapes(lcs.shape, len_target.shape, len_prediction.shape)
    precision = np.divide(lcs, len_prediction, out=np.zeros(shape), where=len_prediction > 0)
    recall = np.divide(lcs, len_target, out=np.zeros(shape), where=len_target > 0)
    total = precision + recall
    numerator = 2.0 * precision
    numerator *= recall
    return np.divide(numerator, total, out=np.zeros(shape), where=total > 0)


class Vocabulary:
    """Interns tokens as code points so a token sequence becomes a `str` rapidfuzz compares natively."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def encode(self, tokens: Sequence[str]) -> str:
        ids = self._ids
        out = []
        for token in tokens:
            code = ids.get(token)
            if code is None:
                code = len(ids)
                if code > _MAX_CODE_POINT:
                    raise ValueError(f"more than {_MAX_CODE_POINT + 1:,} distinct tokens: too many to intern")
                ids[token] = code
            out.append(code)
        return "".join(map(chr, out))


def lcs_matrix(queries: Sequence[str], choices: Sequence[str], *, workers: int | None = None) -> np.ndarray:
    """LCS lengths of every encoded query against every encoded choice (int32, queries x choices).

    Threads only pay off on big matrices: starting them costs more than a few thousand pairs.
    """
    if not queries or not choices:
        return np.zeros((len(queries), len(choices)), dtype=np.int32)
    if workers is None:
        workers = -1 if len(queries) * len(choices) >= _PARALLEL_PAIRS else 1
    return process.cdist(queries, choices, scorer=LCSseq.similarity, dtype=np.int32, workers=workers)


def lcs_length(a: str, b: str) -> int:
    """LCS length of two encoded sequences."""
    return int(LCSseq.similarity(a, b))


def _encode_all(texts: Sequence[str], tokenizer: str, vocab: Vocabulary) -> tuple[list[str], np.ndarray]:
    codes = [vocab.encode(tokenize(text, tokenizer)) for text in texts]
    return codes, np.fromiter((len(c) for c in codes), dtype=np.int64, count=len(codes))


def rouge_l(a: str, b: str, tokenizer: str = "rouge") -> float:
    """`RougeScorer(["rougeL"]).score(a, b)["rougeL"].fmeasure` (a = target, b = prediction), exactly."""
    vocab = Vocabulary()
    code_a = vocab.encode(tokenize(a, tokenizer))
    code_b = vocab.encode(tokenize(b, tokenizer))
    return fmeasure(lcs_length(code_a, code_b), len(code_a), len(code_b))


def _row_blocks(rows: int, cols: int, budget: int = 4_000_000) -> Iterator[tuple[int, int]]:
    step = max(1, budget // max(cols, 1))
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


def max_against(
    texts: Sequence[str], refs: Sequence[str], tokenizer: str = "rouge"
) -> tuple[float, int, int]:
    """Best score over texts x refs (text as target) and its first pair: (score, text idx, ref idx)."""
    if not texts or not refs:
        return 0.0, -1, -1
    vocab = Vocabulary()
    codes, lens = _encode_all(texts, tokenizer, vocab)
    ref_codes, ref_lens = _encode_all(refs, tokenizer, vocab)
    best, best_i, best_j = -1.0, -1, -1
    for start, stop in _row_blocks(len(codes), len(ref_codes)):
        scores = fmeasure_array(
            lcs_matrix(codes[start:stop], ref_codes), lens[start:stop, None], ref_lens[None, :]
        )
        flat = int(np.argmax(scores))
        i, j = divmod(flat, scores.shape[1])
        if scores[i, j] > best:
            best, best_i, best_j = float(scores[i, j]), start + i, j
    return best, best_i, best_j


def max_pairwise(texts: Sequence[str], tokenizer: str = "rouge") -> tuple[float, int, int]:
    """Highest score between two different texts and its first pair (i < j); (0.0, -1, -1) if < 2 texts."""
    if len(texts) < 2:
        return 0.0, -1, -1
    vocab = Vocabulary()
    codes, lens = _encode_all(texts, tokenizer, vocab)
    n = len(codes)
    best, best_i, best_j = -1.0, -1, -1
    for start, stop in _row_blocks(n, n):
        scores = fmeasure_array(lcs_matrix(codes[start:stop], codes), lens[start:stop, None], lens[None, :])
        # only pairs i < j count: mask the diagonal and everything left of it
        rows = np.arange(start, stop)[:, None]
        scores[np.arange(n)[None, :] <= rows] = -1.0
        flat = int(np.argmax(scores))
        i, j = divmod(flat, n)
        if scores[i, j] > best:
            best, best_i, best_j = float(scores[i, j]), start + i, j
    return best, best_i, best_j
