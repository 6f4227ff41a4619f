"""Greedy ROUGE-L novelty filter: Self-Instruct's and Alpaca's exact decisions, without their O(N^2) Python.

A candidate is rejected when its highest ROUGE-L F-measure against everything in the index (seeds
plus every instruction kept before it, earlier ones of the same batch included) is above the
threshold. Scores are rouge-score's to the last bit (see `pipeline.quality.rouge`), so every decision,
ties on the threshold included, is the one the originals make.

Decisions score only pairs that could pass the threshold: the length bound (F <= 2*min(a,b)/(a+b))
and the bag-of-words bound (LCS <= multiset overlap) are applied through prefix filtering on an
inverted index (two token multisets sharing >= k elements must share one of their rarest len-k+1
elements), then each surviving pair gets its exact LCS. The originals also record, for each kept
instruction, its top-10 most similar instructions and its mean score over the whole index; a mean
needs every score, so kept candidates are then scored against the whole index in blocks through
rapidfuzz's multi-core `cdist` (`similarity_stats`, on by default).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from pipeline.core.warncapture import PipelineWarning
from pipeline.quality.config import DedupConfig
from pipeline.quality.rouge import Vocabulary, fmeasure, fmeasure_array, lcs_matrix, loses_all_words, tokenize

# At most this many scores are held at once when describing kept candidates.
_BLOCK_CELLS = 4_000_000
# Texts decided between two progress reports / description passes.
_CHUNK = 1024
# Largest (length x LCS) score table per candidate length, and all of them together (8 bytes a cell).
_TABLE_CELLS = 1 << 16
_TABLES_TOTAL = 1 << 22


class DedupDisabledWarning(PipelineWarning):
    """A text scores 0 against everything under the chosen tokenizer, so dedup cannot catch its copies."""


@dataclass
class DedupResult:
    """The verdict on one candidate, with what Self-Instruct records about its neighbours.

    A rejected candidate's max_score is exact and most_similar lists the index entries scoring above
    the threshold (top_k, best first); its avg_similarity, which the originals never record for a
    rejected candidate, is not computed (0.0). Ties in most_similar go to the earlier entry.
    """

    kept: bool
    max_score: float
    most_similar: dict[str, float] = field(default_factory=dict)
    avg_similarity: float = 0.0


def _fmeasure_positive(lcs: np.ndarray, len_target: int, len_prediction: np.ndarray) -> np.ndarray:
    """`fmeasure_array` for non-empty token lists, with fewer temporaries (the pruned path calls it per
    candidate); same operations in the same order, so the same bits."""
    precision = lcs / len_prediction
    recall = lcs / len_target
    total = precision + recall
    return 2.0 * precision * recall / np.where(total > 0, total, 1.0)


class _Bounds:
    """Exact integer forms of "F-measure > threshold", derived from the float formula itself.

    F grows with the LCS length by at least 2/(a+b) a step, far above rounding error, so the float
    F is strictly monotone and "F > t" is exactly "LCS >= need(a, b)".
    """

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._need: dict[tuple[int, int], int] = {}
        self._range: dict[int, tuple[int, int]] = {}

    def need(self, a: int, b: int) -> int:
        """Smallest LCS length whose F-measure is > threshold; min(a, b) + 1 when none is."""
        key = (a, b) if a <= b else (b, a)
        value = self._need.get(key)
        if value is None:
            lo, hi = 0, min(a, b) + 1
            while lo < hi:
                mid = (lo + hi) // 2
                if fmeasure(mid, a, b) > self.threshold:
                    hi = mid
                else:
                    lo = mid + 1
            value = self._need[key] = lo
        return value

    def _possible(self, a: int, b: int) -> bool:
        return fmeasure(min(a, b), a, b) > self.threshold

    def length_range(self, a: int) -> tuple[int, int]:
        """Lengths b for which a pair (a, b) can score > threshold at all: [lo, hi], empty if lo > hi."""
        found = self._range.get(a)
        if found is not None:
            return found
        t = self.threshold
        if a == 0 or not self._possible(a, a):
            found = (1, 0)
        else:
            lo = max(1, int(t * a / (2 - t)) - 2)
            while not self._possible(a, lo):
                lo += 1
            if t == 0:
                hi = np.iinfo(np.int64).max
            else:
                hi = int(a * (2 - t) / t) + 2
                while not self._possible(a, hi):
                    hi -= 1
            found = (lo, hi)
        self._range[a] = found
        return found

    def prefix_length(self, a: int) -> int:
        """How many of a multiset's rarest elements must be indexed/probed so no passing pair is missed."""
        lo, hi = self.length_range(a)
        if lo > hi:
            return 0
        # need(a, b) grows with b, so the smallest overlap any partner requires is at b = lo
        return a - self.need(a, lo) + 1


class _PrefixFilter:
    """Inverted index over the rarest token occurrences of each entry (prefix filtering).

    Elements are (token, k-th occurrence), so the overlap of two element sets is the multiset overlap
    of the token lists, an upper bound of their LCS. Any fixed global order is correct; rarest-first
    makes postings short. The order is frozen in a snapshot of element frequencies and rebuilt when
    the data has doubled since, so probes and indexed prefixes always agree.
    """

    def __init__(self, bounds: _Bounds):
        self.bounds = bounds
        self._element_ids: dict[tuple[str, int], int] = {}
        self._df: list[int] = []
        # sort key of each element in the frozen order: frequency at the snapshot, then id
        self._order: list[int] = []
        self._counted = 0
        self._counted_at_snapshot = 0
        self._entries: list[list[int]] = []  # element ids of every entry (its whole multiset)
        self._postings: dict[int, list[int]] = {}

    def elements(self, code: str) -> list[int]:
        seen: dict[str, int] = {}
        ids = self._element_ids
        out = []
        for token in code:
            k = seen.get(token, 0)
            seen[token] = k + 1
            key = (token, k)
            eid = ids.get(key)
            if eid is None:
                eid = ids[key] = len(ids)
                self._df.append(0)
                self._order.append(eid)
            out.append(eid)
        return out

    def count(self, elements: Iterable[int]) -> None:
        """Add one text's elements to the frequencies that will order the next snapshot."""
        df = self._df
        for eid in elements:
            df[eid] += 1
        self._counted += 1

    def maybe_rebuild(self) -> None:
        if self._counted < 2 * self._counted_at_snapshot + 64:
            return
        self._order = [(df << 32) | eid for eid, df in enumerate(self._df)]
        self._counted_at_snapshot = self._counted
        self._postings = {}
        for index, elements in enumerate(self._entries):
            self._post(index, elements)

    def _post(self, index: int, elements: list[int]) -> None:
        size = self.bounds.prefix_length(len(elements))
        postings = self._postings
        for eid in sorted(elements, key=self._order.__getitem__)[:size]:
            bucket = postings.get(eid)
            if bucket is None:
                postings[eid] = [index]
            else:
                bucket.append(index)

    def insert(self, elements: list[int]) -> None:
        index = len(self._entries)
        self._entries.append(elements)
        self._post(index, elements)

    def candidates(self, elements: list[int]) -> set[int]:
        size = self.bounds.prefix_length(len(elements))
        found: set[int] = set()
        postings = self._postings
        for eid in sorted(elements, key=self._order.__getitem__)[:size]:
            bucket = postings.get(eid)
            if bucket is not None:
                found.update(bucket)
        return found


class RougeIndex:
    """The pool a candidate must differ from: seeds (`add`) plus every kept candidate (`offer`).

    Decisions always go through the pruned path (exact); with `similarity_stats` each kept candidate
    is then scored against every entry that was in the index when it was judged, to fill
    `most_similar` and `avg_similarity` as Self-Instruct records them for what it keeps.
    """

    def __init__(self, config: DedupConfig | None = None):
        self.config = config or DedupConfig()
        self._vocab = Vocabulary()
        self._bounds = _Bounds(self.config.threshold)
        self._prefix = _PrefixFilter(self._bounds)
        self._texts: list[str] = []
        self._codes: list[str] = []
        self._lens = np.zeros(256, dtype=np.int64)
        self._max_len = 0
        self._tables: dict[int, tuple[int, np.ndarray]] = {}
        self._pairs_scored = 0
        self._pairs_pruned = 0
        self._pairs_described = 0
        self._wordless = 0
        self._warned = False

    def __len__(self) -> int:
        return len(self._texts)

    @property
    def texts(self) -> list[str]:
        return list(self._texts)

    @property
    def stats(self) -> dict[str, int]:
        """Work done so far: for decisions, pairs whose LCS was computed vs pairs ruled out by the
        bounds; pairs scored afterwards to describe kept candidates; texts without any token."""
        return {
            "size": len(self._texts),
            "pairs_scored": self._pairs_scored,
            "pairs_pruned": self._pairs_pruned,
            "pairs_described": self._pairs_described,
            "wordless_texts": self._wordless,
        }

    # -- public API -------------------------------------------------------------------------------
    def add(self, text: str) -> None:
        """Put a text in the index unconditionally (seeds, or a pool loaded from an earlier run)."""
        self.add_many([text])

    def add_many(self, texts: Iterable[str]) -> None:
        texts = list(texts)
        codes = [self._encode(text) for text in texts]
        elements = [self._prefix.elements(code) for code in codes]
        for each in elements:
            self._prefix.count(each)
        self._prefix.maybe_rebuild()
        for text, code, each in zip(texts, codes, elements, strict=True):
            self._insert(text, code, each)

    def check(self, text: str) -> DedupResult:
        """Judge a candidate against the index without adding it."""
        return self._run([text], insert=False)[0]

    def offer(self, text: str) -> DedupResult:
        """Judge a candidate and add it to the index when it is kept."""
        return self._run([text], insert=True)[0]

    def offer_many(
        self, texts: Sequence[str], on_progress: Callable[[int], None] | None = None
    ) -> list[DedupResult]:
        """`offer` each text in order: an earlier kept text counts against every later one.

        `on_progress(n)` is called as chunks of n texts are done.
        """
        return self._run(list(texts), insert=True, on_progress=on_progress)

    # -- internals --------------------------------------------------------------------------------
    def _encode(self, text: str) -> str:
        tokens = tokenize(text, self.config.tokenizer)
        if loses_all_words(text, tokens):
            self._wordless += 1
            if not self._warned:
                self._warned = True
                hint = " (try --tokenizer unicode)" if self.config.tokenizer == "rouge" else ""
                warnings.warn(
                    DedupDisabledWarning(
                        f"{text[:60]!r} has no words the {self.config.tokenizer!r} tokenizer keeps, so it "
                        f"scores 0 against everything and dedup is disabled for such texts{hint}"
                    ),
                    stacklevel=2,
                )
        return self._vocab.encode(tokens)

    def _insert(self, text: str, code: str, elements: list[int]) -> int:
        n = len(self._texts)
        if n == len(self._lens):
            self._lens = np.concatenate([self._lens, np.zeros(n, dtype=np.int64)])
        self._lens[n] = len(code)
        self._max_len = max(self._max_len, len(code))
        self._texts.append(text)
        self._codes.append(code)
        self._prefix.insert(elements)
        return n

    def _run(
        self, texts: list[str], *, insert: bool, on_progress: Callable[[int], None] | None = None
    ) -> list[DedupResult]:
        codes = [self._encode(text) for text in texts]
        elements = [self._prefix.elements(code) for code in codes]
        if insert:
            # frequencies of the whole batch order the prefixes from the start
            for each in elements:
                self._prefix.count(each)
        self._prefix.maybe_rebuild()
        results: list[DedupResult] = []
        for start in range(0, len(texts), _CHUNK):
            stop = min(len(texts), start + _CHUNK)
            described: list[tuple[DedupResult, str, int]] = []
            for i in range(start, stop):
                result = self._decide(codes[i], elements[i])
                results.append(result)
                if not result.kept:
                    continue
                # what was in the index when this candidate was judged: everything before `seen`
                seen = self._insert(texts[i], codes[i], elements[i]) if insert else len(self._texts)
                described.append((result, codes[i], seen))
            if self.config.similarity_stats and described:
                self._describe(described)
            if on_progress is not None:
                on_progress(stop - start)
        return results

    def _decide(self, code: str, elements: list[int]) -> DedupResult:
        """Exact verdict from the pairs that can pass the threshold; a rejection's max_score is exact."""
        threshold = self.config.threshold
        n = len(self._texts)
        la = len(code)
        lo, hi = self._bounds.length_range(la)
        found = self._prefix.candidates(elements) if la and lo <= hi else set()
        best = 0.0
        similar: dict[str, float] = {}
        if found:
            cand = np.fromiter(found, dtype=np.int64, count=len(found))
            lens = self._lens[cand]
            keep = (lens >= lo) & (lens <= hi)
            cand = cand[keep]
            if cand.size:
                codes = (
                    [self._codes[int(cand[0])]] if cand.size == 1 else list(itemgetter(*cand)(self._codes))
                )
                scores = _fmeasure_positive(lcs_matrix([code], codes)[0], la, lens[keep])
                best = float(scores.max())
                self._pairs_scored += int(cand.size)
                n -= int(cand.size)
                if best > threshold:
                    above = [(float(s), int(i)) for s, i in zip(scores, cand, strict=True) if s > threshold]
                    similar = self._most_similar(above)
        self._pairs_pruned += n
        return DedupResult(kept=not best > threshold, max_score=best, most_similar=similar)

    def _describe(self, items: list[tuple[DedupResult, str, int]]) -> None:
        """Fill max_score, most_similar and avg_similarity of kept candidates from every pair.

        Item i was judged against index[:seen_i]. A block of items is scored against
        index[:largest seen] in one multi-core `cdist`; each row then uses its own first seen_i columns.
        """
        pos = 0
        while pos < len(items):
            size = max(1, min(512, _BLOCK_CELLS // max(items[pos][2], 1)))
            block = items[pos : pos + size]
            pos += len(block)
            top_seen = max(seen for _, _, seen in block)
            lcs = lcs_matrix([code for _, code, _ in block], self._codes[:top_seen])
            for i, (result, code, seen) in enumerate(block):
                scores = self._row_scores(lcs[i, :seen], len(code), self._lens[:seen])
                result.max_score = float(scores.max()) if seen else 0.0
                result.most_similar = self._most_similar(self._top(scores))
                result.avg_similarity = float(scores.sum()) / seen if seen else 0.0
                self._pairs_described += seen

    def _row_scores(self, lcs: np.ndarray, la: int, lens: np.ndarray) -> np.ndarray:
        """Exact F-measures of one candidate against many, through a table of every (length, LCS) pair
        it can meet: three cheap passes instead of a dozen float ones, the same bits."""
        longest = self._max_len
        cells = (longest + 1) * (la + 1)
        if cells > _TABLE_CELLS:
            return fmeasure_array(lcs, la, lens)
        cached = self._tables.get(la)
        if cached is None or cached[0] < longest:
            if sum(table.size for _, table in self._tables.values()) + cells > _TABLES_TOTAL:
                self._tables.clear()
            grid_len, grid_lcs = np.divmod(np.arange(cells), la + 1)
            cached = self._tables[la] = (longest, fmeasure_array(grid_lcs, la, grid_len))
        key = lens * (la + 1)
        key += lcs
        return cached[1].take(key)

    def _top(self, scores: np.ndarray) -> list[tuple[float, int]]:
        """The top_k (score, index) of one row; ties go to the earlier entry (numpy's argsort, which
        the originals use, orders ties arbitrarily)."""
        k = self.config.top_k
        if k == 0 or scores.size == 0:
            return []
        if scores.size <= k:
            picked = np.arange(scores.size)
        else:
            cut = np.partition(scores, scores.size - k)[scores.size - k]
            above = np.flatnonzero(scores > cut)
            tied = np.flatnonzero(scores == cut)[: k - above.size]
            picked = np.concatenate([above, tied])
        return [(float(scores[i]), int(i)) for i in picked]

    def _most_similar(self, top: list[tuple[float, int]]) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.config.top_k == 0:
            return out
        top.sort(key=lambda item: (-item[0], item[1]))
        for score, index in top:
            text = self._texts[index]
            if text not in out:
                out[text] = score
                if len(out) == self.config.top_k:
                    break
        return out
