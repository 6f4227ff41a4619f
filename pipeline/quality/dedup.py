"""Greedy ROUGE-L novelty filter: Self-Instruct's and Alpaca's exact decisions, without their O(N^2) Python.

A candidate is rejected when its highest ROUGE-L F-measure against everything in the index (seeds
plus every instruction kept before it, earlier ones of the same batch included) is above the
threshold. Scores are rouge-score's to the last bit (see `pipeline.quality.rouge`), so every decision,
ties on the threshold included, is the one the originals make.

Decisions score only pairs that could pass the threshold: the length bound (F <= 2*min(a,b)/(a+b))
and the bag-of-words bound (LCS <= multiset overlap) are applied through prefix filtering on an
inverted index (two token multisets sharing >= k elements must share one of their rarest len-k+1
elements) with PPJoin's positional filter (the positions of the last shared prefix element bound the
overlap) and a second required match one element deeper (`_Reads`); then each surviving pair gets its
exact LCS. Postings sit in one sorted array keyed by element, length and position, so a probe reads
only the lengths and depths that can pass; candidates are probed 256 at a time in one numpy pass, with
the index and with each other, and in order a candidate then counts the earlier ones of its batch only
if they were kept.

The originals also record, for each kept instruction, its top-10 most similar instructions and its
mean score over the whole index (`similarity_stats`, on by default). Up to `stats_sample` entries,
kept candidates are scored against the whole index in blocks through rapidfuzz's multi-core `cdist`.
Past it, the top 10 stay exact through the bag-of-words bound over every entry at once, and the mean,
which needs every score, is estimated on a seeded sample with its standard error.
"""

from __future__ import annotations

import math
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
# Candidates decided together against the index as it was before them (at most 1 << _QUERY_BITS).
_DECIDE = 256
# A probe's sort key (see _PrefixFilter.probe): query, entry, position in the entry, position in the query.
_POS_BITS = 12
_POS_MAX = (1 << _POS_BITS) - 1
_ENTRY_BITS = 31
_QUERY_BITS = 8
_QUERY_SHIFT = _ENTRY_BITS + 2 * _POS_BITS
assert _DECIDE <= 1 << _QUERY_BITS and _QUERY_SHIFT + _QUERY_BITS <= 63  # the keys are int64
# The postings' keys (see _PrefixFilter): element, entry length, position in the entry.
_LEN_BITS = 24
_LEN_MAX = (1 << _LEN_BITS) - 1
_LEN_SHIFT = _LEN_BITS + _POS_BITS
_ELEMENT_BITS = 63 - _LEN_SHIFT
# A query reads one range of keys per (element, length) when it can pass with at most this many
# lengths, and the tables saying which go up to this query length (see _Reads).
_SPAN_MAX = 256
# How much deeper than the least a probe reads, for a second match to rule pairs out (see _Reads).
_DEPTH = 1
_TABLE_LEN = 4096
# Pending postings are merged into the sorted ones past this many, or 1/_MERGE_SHARE of those.
_MERGE_MIN = 2048
_MERGE_SHARE = 32
_EMPTY = np.empty(0, dtype=np.int64)


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
    # Set when avg_similarity is the mean over a seeded sample of the index (`DedupConfig.stats_sample`):
    # its standard error and the sample's size; None when it is the exact mean.
    avg_similarity_se: float | None = None
    avg_similarity_sample: int | None = None


def _fmeasure_positive(
    lcs: np.ndarray, len_target: int | np.ndarray, len_prediction: np.ndarray
) -> np.ndarray:
    """`fmeasure_array` for non-empty token lists, with fewer temporaries (the decisions call it on
    every batch's pairs); same operations in the same order, so the same bits."""
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

    def need_array(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """`need` of many pairs at once. The F-measure of an LCS l is 2l/(a+b) up to rounding, so the
        answer is within a step of t(a+b)/2; the float formula itself picks it among those steps."""
        t = self.threshold
        shortest = np.minimum(a, b)
        guess = np.floor(t * (a + b) / 2).astype(np.int64)
        need = shortest + 1
        for step in (2, 1, 0, -1):  # F grows with l: the last step that passes is the smallest
            lcs = np.maximum(guess + step, 1)
            passes = (lcs <= shortest) & (_fmeasure_positive(lcs, a, b) > t)
            need = np.where(passes, lcs, need)
        return need

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


class _Reads:
    """Which sorted postings a probe reads (see `_PrefixFilter`), as tables over query lengths a.

    A pair (a, b) that passes has an overlap c >= o = need(a, b); its m-th common element is then
    within the first a-c+m of the query's elements and the first b-c+m of the entry's. So reading,
    for each length b that can pass with a, the query's positions <= a-o+d and the entry's <= b-o+d
    (d = _DEPTH, within both prefixes) finds every passing pair, with at least `required` matches
    (d+1 where the prefixes are long enough): a pair found with fewer cannot pass. need grows with b,
    so the query's i-th element reads the shortest lengths, a number `count` of them. Queries that
    can pass with more than _SPAN_MAX lengths (long texts) read every posting of every length in
    their range instead, and require one match.
    """

    def __init__(self, bounds: _Bounds):
        self.bounds = bounds
        self.covered = -1
        self.lo = self.row_at = self.count_at = self.deepest = self.least = self.count = _EMPTY
        self.wide = np.zeros(0, dtype=bool)

    def cover(self, longest: int) -> None:
        """Make the tables reach query length `longest` (past _TABLE_LEN every query is wide)."""
        longest = min(longest, _TABLE_LEN)
        if longest <= self.covered:
            return
        longest = min(_TABLE_LEN, max(longest, 2 * self.covered, 64))
        lo_of, row_at, count_at = (np.zeros(longest + 1, dtype=np.int64) for _ in range(3))
        wide = np.zeros(longest + 1, dtype=bool)
        rows: list[tuple[np.ndarray, np.ndarray]] = [(_EMPTY, _EMPTY)]
        counts = [_EMPTY]
        row_pos = count_pos = 0
        for a in range(1, longest + 1):
            lo, hi = self.bounds.length_range(a)
            size = self.bounds.prefix_length(a)
            wide[a] = hi - lo + 1 > _SPAN_MAX
            if lo > hi or wide[a] or not size:
                continue
            b = np.arange(lo, hi + 1)
            need = self.bounds.need_array(np.full(b.size, a), b)
            sizes = np.array([self.bounds.prefix_length(int(x)) for x in b], dtype=np.int64)
            query_deepest = np.minimum(a - need + _DEPTH, size - 1)
            entry_deepest = np.minimum(b - need + _DEPTH, sizes - 1)
            least = np.minimum(query_deepest - a + need + 1, entry_deepest - b + need + 1)
            lo_of[a], row_at[a], count_at[a] = lo, row_pos, count_pos
            rows.append((entry_deepest, least))
            # query_deepest only falls as b grows: position i reads the lengths whose depth reaches it
            counts.append(np.searchsorted(-query_deepest, -np.arange(size), side="right"))
            row_pos += b.size
            count_pos += size
        self.lo, self.row_at, self.count_at, self.wide = lo_of, row_at, count_at, wide
        self.deepest = np.concatenate([deepest for deepest, _ in rows])
        self.least = np.concatenate([least for _, least in rows])
        self.count = np.concatenate(counts)
        self.covered = longest

    def _is_wide(self, a: np.ndarray) -> np.ndarray:
        return (a > self.covered) | self.wide[np.minimum(a, self.covered)]

    def ranges(self, eid: np.ndarray, position: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, ...]:
        """For (element, position in the query, query length) triples: the first and last key of each
        range to read, and which triple each range belongs to."""
        self.cover(int(a.max()))
        wide = self._is_wide(a)
        fine = np.flatnonzero(~wide)
        af = a[fine]
        counts = self.count[self.count_at[af] + position[fine]]
        row = np.repeat(fine, counts)
        step = np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts)
        ar = a[row]
        first = (eid[row] << _LEN_SHIFT) | ((self.lo[ar] + step) << _POS_BITS)
        last = first | np.minimum(self.deepest[self.row_at[ar] + step], _POS_MAX)
        broad = np.flatnonzero(wide)
        if broad.size:
            spans = np.array([self.bounds.length_range(int(x)) for x in a[broad]], dtype=np.int64)
            spans = spans.reshape(-1, 2)
            base = eid[broad] << _LEN_SHIFT
            first = np.concatenate([first, base | (spans[:, 0] << _POS_BITS)])
            last = np.concatenate([last, base | (np.minimum(spans[:, 1], _LEN_MAX) << _POS_BITS) | _POS_MAX])
            row = np.concatenate([row, broad])
        return first, last, row

    def required(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The matches a found pair (a, b) needs to be able to pass (b within a's range)."""
        out = np.ones(a.size, dtype=np.int64)
        if a.size:
            self.cover(int(a.max()))
            fine = np.flatnonzero(~self._is_wide(a))
            af = a[fine]
            out[fine] = self.least[self.row_at[af] + b[fine] - self.lo[af]]
        return out


class _PrefixFilter:
    """Inverted index over the rarest token occurrences of each entry (prefix filtering), with
    positions (PPJoin's positional filter).

    Elements are (token, k-th occurrence), so the overlap of two element sets is the multiset overlap
    of the token lists, an upper bound of their LCS. Any fixed global order is correct; rarest-first
    makes postings short. The order is frozen in a snapshot of element frequencies and rebuilt when
    the data has doubled since, so probes and indexed prefixes always agree.

    Two prefixes' common elements come in the same global order, so if a probe's last match with an
    entry is its i-th element and the entry's j-th, every common element before it was matched, and
    at most min(a-1-i, b-1-j) come after: `probe` returns that bound of the overlap with each entry
    found. Positions past 4095 count as 4095, which only loosens the bound. A probe reads only the
    postings whose pair can still pass (`_Reads`); the matches it skips all come after those it
    reads, so the bound holds.

    Postings are int64 keys `element << 36 | entry length << 12 | position`, sorted, with their
    entries alongside: the ones a probe reads are a few contiguous ranges. New postings wait in a
    list and are merged in once they are 1/32 of the sorted ones; probes sort them on the fly.
    """

    def __init__(self, bounds: _Bounds):
        self.bounds = bounds
        self.reads = _Reads(bounds)
        self._element_ids: dict[tuple[str, int], int] = {}
        self._first: dict[str, int] = {}  # token -> id of (token, 0)
        self._df: list[int] = []
        # sort key of each element in the frozen order: frequency at the snapshot, then id
        self._order: list[int] = []
        self._counted = 0
        self._counted_at_snapshot = 0
        self._entries: list[list[int]] = []  # element ids of every entry (its whole multiset)
        self._keys = _EMPTY  # sorted postings, see the class docstring
        self._owners = _EMPTY  # the entry of each
        self._pending_keys: list[int] = []  # postings not merged into them yet, and their entries
        self._pending_owners: list[int] = []

    def elements(self, code: str) -> list[int]:
        """The element ids of a text: (token, how many times it came before), new ones numbered."""
        if len(set(code)) == len(code):  # most texts: no token twice, and every token seen before
            out = list(map(self._first.get, code))
            if None not in out:
                return out
        seen: dict[str, int] = {}
        ids = self._element_ids
        out = []
        for token in code:
            k = seen.get(token, 0)
            seen[token] = k + 1
            key = (token, k)
            eid = ids.get(key)
            if eid is None:
                if len(ids) >> _ELEMENT_BITS:
                    raise ValueError(f"more than {1 << _ELEMENT_BITS:,} distinct (token, occurrence) pairs")
                eid = ids[key] = len(ids)
                if k == 0:
                    self._first[token] = eid
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
        self._keys, self._owners, self._pending_keys, self._pending_owners = _EMPTY, _EMPTY, [], []
        for index, elements in enumerate(self._entries):
            self._post(index, elements, self._pending_keys, self._pending_owners)
        self._merge()

    def _prefix(self, elements: list[int]) -> list[int]:
        size = self.bounds.prefix_length(len(elements))
        return sorted(elements, key=self._order.__getitem__)[:size]

    def prefixes(self, queries: list[list[int]]) -> list[list[int]]:
        """The elements each text indexes and probes with: its rarest, as many as its length needs."""
        return [self._prefix(elements) for elements in queries]

    def _post(
        self,
        index: int,
        elements: list[int],
        keys: list[int],
        owners: list[int],
        prefix: list[int] | None = None,
    ) -> None:
        """Append an entry's postings (its prefix, given or computed) to keys and owners."""
        if index + _DECIDE >= 1 << _ENTRY_BITS:
            raise ValueError(f"an index holds at most {1 << _ENTRY_BITS:,} entries")
        if len(elements) > _LEN_MAX:
            raise ValueError(f"a text has {len(elements):,} tokens; at most {_LEN_MAX:,} are supported")
        if prefix is None:
            prefix = self._prefix(elements)
        length = len(elements) << _POS_BITS
        keys += [(eid << _LEN_SHIFT) | length | min(j, _POS_MAX) for j, eid in enumerate(prefix)]
        owners += [index] * len(prefix)

    def _merge(self) -> None:
        """Move the pending postings into the sorted ones (a merge of two sorted runs)."""
        if not self._pending_keys:
            return
        fresh = np.array(self._pending_keys, dtype=np.int64)
        order = np.argsort(fresh, kind="stable")
        keys = np.concatenate([self._keys, fresh[order]])
        owners = np.concatenate([self._owners, np.array(self._pending_owners, dtype=np.int64)[order]])
        order = np.argsort(keys, kind="stable")
        self._keys, self._owners = keys[order], owners[order]
        self._pending_keys, self._pending_owners = [], []

    def insert(self, elements: list[int], prefix: list[int] | None = None) -> None:
        """Index an entry (its prefix may come from `prefixes`, if no rebuild came in between)."""
        index = len(self._entries)
        self._entries.append(elements)
        self._post(index, elements, self._pending_keys, self._pending_owners, prefix)
        if len(self._pending_keys) >= max(_MERGE_MIN, self._keys.size // _MERGE_SHARE):
            self._merge()

    def probe(
        self, queries: list[list[int]], prefixes: list[list[int]], lens: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Every (query, entry) pair that can pass, found through their prefixes, as five arrays sorted
        by query then entry: the query's number, the entry, its length, a bound of their overlap (see
        the class docstring) and how many matches were read. One sort serves the whole batch.

        Entries n, n+1, ... (n = entries indexed) stand for the queries themselves, so pairs within
        the batch are found the same way; a query meets only the ones before it. `lens` holds the
        length of every entry, these included.
        """
        n = len(self._entries)
        query: list[int] = []
        position: list[int] = []
        eid: list[int] = []
        keys, owners = list(self._pending_keys), list(self._pending_owners)
        for number, (elements, prefix) in enumerate(zip(queries, prefixes, strict=True)):
            if prefix:
                query += [number] * len(prefix)
                position += range(len(prefix))
                eid += prefix
                self._post(n + number, elements, keys, owners, prefix)
        if not query:
            return _EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY
        order = np.argsort(eid, kind="stable")  # by element: the ranges to read come nearly sorted
        triples = (np.array(query)[order], np.array(position)[order], np.array(eid)[order])
        sizes = np.fromiter(map(len, queries), dtype=np.int64, count=len(queries))
        fresh = np.array(keys, dtype=np.int64)
        order = np.argsort(fresh)
        found = [self._read(fresh[order], np.array(owners, dtype=np.int64)[order], triples, sizes)]
        if self._keys.size:
            found.append(self._read(self._keys, self._owners, triples, sizes))
        keys = np.concatenate(found)
        if not keys.size:
            return _EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY
        keys.sort()
        return self._group(keys, sizes, lens, n)

    def _read(
        self, keys: np.ndarray, owners: np.ndarray, triples: tuple[np.ndarray, ...], sizes: np.ndarray
    ) -> np.ndarray:
        """The probe keys `query << 55 | entry << 24 | position in the entry << 12 | position in the
        query` of what (query, position, element) triples read in sorted postings (`_Reads`)."""
        query, position, eid = triples
        first, last, row = self.reads.ranges(eid, position, sizes[query])
        start = np.searchsorted(keys, first)
        got = np.searchsorted(keys, last, side="right") - start
        row = np.repeat(row, got)
        at = np.repeat(start - np.cumsum(got) + got, got) + np.arange(row.size)
        out = (query[row] << _QUERY_SHIFT) | (owners[at] << (2 * _POS_BITS))
        out |= (keys[at] & _POS_MAX) << _POS_BITS
        out |= np.minimum(position[row], _POS_MAX)
        return out

    @staticmethod
    def _group(keys: np.ndarray, sizes: np.ndarray, lens: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
        """`probe`'s five arrays from its sorted keys: one row per (query, entry), from its last match."""
        pair = keys >> (2 * _POS_BITS)
        last = np.empty(pair.size, dtype=bool)
        np.not_equal(pair[1:], pair[:-1], out=last[:-1])
        last[-1] = True
        at = last.nonzero()[0]
        matched = at + 1
        matched[1:] -= at[:-1] + 1
        final = keys[at]
        pair = pair[at]
        query = pair >> _ENTRY_BITS
        entry = pair & ((1 << _ENTRY_BITS) - 1)
        before = entry < query + n  # within the batch, only earlier queries
        if not before.all():
            query, entry, final, matched = query[before], entry[before], final[before], matched[before]
        found_lens = lens[entry]
        bound = np.minimum(
            sizes[query] - 1 - (final & _POS_MAX), found_lens - 1 - ((final >> _POS_BITS) & _POS_MAX)
        )
        bound += matched
        return query, entry, found_lens, bound, matched


class _Occurrences:
    """Every entry's elements, all of them (the prefix filter keeps only the rarest): one pass over
    a text's posting lists gives its bag-of-words overlap with every entry, a bound of each LCS that
    lets the exact top-k skip most pairs (`RougeIndex._top_bounded`)."""

    def __init__(self) -> None:
        self._lists: dict[int, list] = {}  # element id -> [entry ids (int32, with spare room), used]

    def insert(self, index: int, elements: list[int]) -> None:
        lists = self._lists
        for eid in elements:
            slot = lists.get(eid)
            if slot is None:
                lists[eid] = [np.full(4, index, dtype=np.int32), 1]
                continue
            array, used = slot
            if used == array.size:
                array = slot[0] = np.concatenate([array, np.empty(used, dtype=np.int32)])
            array[used] = index
            slot[1] = used + 1

    def overlap(self, elements: list[int], size: int) -> np.ndarray:
        """How many elements each of the first `size` entries shares with these."""
        arrays = [slot[0][: slot[1]] for slot in map(self._lists.get, elements) if slot is not None]
        if not arrays:
            return np.zeros(size, dtype=np.int64)
        return np.bincount(np.concatenate(arrays), minlength=size)[:size]


class RougeIndex:
    """The pool a candidate must differ from: seeds (`add`) plus every kept candidate (`offer`).

    Decisions always go through the pruned path (exact); with `similarity_stats` each kept candidate
    is then compared with every entry that was in the index when it was judged, to fill
    `most_similar` and `avg_similarity` as Self-Instruct records them for what it keeps (the mean on
    a sample past `stats_sample` entries).
    """

    def __init__(self, config: DedupConfig | None = None):
        self.config = config or DedupConfig()
        self._vocab = Vocabulary()
        self._bounds = _Bounds(self.config.threshold)
        self._prefix = _PrefixFilter(self._bounds)
        self._occurrences = _Occurrences() if self.config.similarity_stats else None
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

    def _insert(self, text: str, code: str, elements: list[int], prefix: list[int] | None = None) -> int:
        n = len(self._texts)
        if n == len(self._lens):
            self._lens = np.concatenate([self._lens, np.zeros(n, dtype=np.int64)])
        self._lens[n] = len(code)
        self._max_len = max(self._max_len, len(code))
        self._texts.append(text)
        self._codes.append(code)
        self._prefix.insert(elements, prefix)
        if self._occurrences is not None:
            self._occurrences.insert(n, elements)
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
            described: list[tuple[DedupResult, str, list[int], int]] = []
            for first in range(start, stop, _DECIDE):
                last = min(stop, first + _DECIDE)
                verdicts = self._decide(texts[first:last], codes[first:last], elements[first:last], insert)
                for i, (result, seen) in enumerate(verdicts, start=first):
                    results.append(result)
                    if result.kept:
                        described.append((result, codes[i], elements[i], seen))
            if self.config.similarity_stats and described:
                self._describe(described)
            if on_progress is not None:
                on_progress(stop - start)
        return results

    def _decide(
        self, texts: list[str], codes: list[str], elements: list[list[int]], insert: bool
    ) -> list[tuple[DedupResult, int]]:
        """Exact verdicts on consecutive candidates, each with how many index entries it was judged
        against (`seen`); a rejection's max_score is exact. Kept ones are inserted when `insert`.

        Every pair that can pass the threshold is scored at once (`_pairs`), with the index and with
        the candidates before it in the batch; then, in order, a candidate counts the latter only if
        they were kept.
        """
        threshold = self.config.threshold
        prefixes = self._prefix.prefixes(elements)
        best, scored, above, local = self._pairs(codes, elements, prefixes)
        kept_ids: dict[int, int] = {}  # position in this batch -> index id
        out = []
        for q, top in enumerate(best.tolist()):
            hits = above.get(q, [])
            pairs = int(scored[q])
            for r, score in local.get(q, ()):
                if r in kept_ids:
                    pairs += 1
                    top = max(top, score)
                    if score > threshold:
                        hits.append((score, kept_ids[r]))
            seen = len(self._texts)
            self._pairs_scored += pairs
            self._pairs_pruned += seen - pairs
            kept = not top > threshold
            out.append((DedupResult(kept=kept, max_score=top, most_similar=self._most_similar(hits)), seen))
            if kept and insert:
                kept_ids[q] = self._insert(texts[q], codes[q], elements[q], prefixes[q])
        return out

    def _pairs(
        self, codes: list[str], elements: list[list[int]], prefixes: list[list[int]]
    ) -> tuple[np.ndarray, np.ndarray, dict, dict]:
        """The pairs that can pass the threshold, scored: each candidate's best score against the index
        and how many pairs that took, the (score, entry) of those above the threshold, and for each
        candidate its [(earlier candidate, score)] within the batch."""
        threshold = self.config.threshold
        n = len(self._texts)
        count = len(codes)
        best = np.zeros(count)
        scored = np.zeros(count, dtype=np.int64)
        above: dict[int, list[tuple[float, int]]] = {}
        local: dict[int, list[tuple[int, float]]] = {}
        lens = np.fromiter(map(len, codes), dtype=np.int64, count=count)
        if self._lens.size < n + count:
            self._lens = np.concatenate([self._lens, np.zeros(n + count, dtype=np.int64)])
        self._lens[n : n + count] = lens  # the batch's own entries (see probe); inserts overwrite them
        query, entry, found_lens, bound, matched = self._prefix.probe(elements, prefixes, self._lens)
        la = lens[query]
        # F grows with the LCS, and LCS <= overlap: pairs whose bound cannot pass are never scored,
        # nor those with fewer matches than a passing pair has where the probe read (see _Reads)
        possible = matched >= self._prefix.reads.required(la, found_lens)
        possible &= _fmeasure_positive(bound, la, found_lens) > threshold
        query, entry, found_lens, la = query[possible], entry[possible], found_lens[possible], la[possible]
        if not query.size:
            return best, scored, above, local
        scores = _fmeasure_positive(self._lcs(codes, query, entry), la, found_lens)
        inside = entry >= n
        if inside.any():
            at = np.flatnonzero(inside)
            for q, r, score in zip(
                query[at].tolist(), (entry[at] - n).tolist(), scores[at].tolist(), strict=True
            ):
                local.setdefault(q, []).append((r, score))
            query, scores, entry = query[~inside], scores[~inside], entry[~inside]
        if query.size:
            starts = np.flatnonzero(np.concatenate([[True], query[1:] != query[:-1]]))
            best[query[starts]] = np.maximum.reduceat(scores, starts)
            scored[query[starts]] = np.diff(np.append(starts, query.size))
            at = np.flatnonzero(scores > threshold)
            for q, e, score in zip(query[at].tolist(), entry[at].tolist(), scores[at].tolist(), strict=True):
                above.setdefault(q, []).append((score, e))
        return best, scored, above, local

    def _lcs(self, codes: list[str], query: np.ndarray, entry: np.ndarray) -> np.ndarray:
        """LCS of each (query, entry) pair, sorted by query; entries past the index are the batch's."""
        pool = self._codes + codes
        starts = np.flatnonzero(np.concatenate([[True], query[1:] != query[:-1]]))
        owners = query[starts].tolist()
        bounds = [*starts.tolist(), query.size]
        ids = entry.tolist()
        lcs = np.empty(query.size, dtype=np.int32)
        for q, first, last in zip(owners, bounds, bounds[1:], strict=False):
            chosen = [pool[ids[first]]] if last - first == 1 else list(itemgetter(*ids[first:last])(pool))
            lcs[first:last] = lcs_matrix([codes[q]], chosen, workers=1)[0]
        return lcs

    def _describe(self, items: list[tuple[DedupResult, str, list[int], int]]) -> None:
        """Fill max_score, most_similar and avg_similarity of kept candidates (in the order they
        were kept; item i was judged against index[:seen_i]): exactly from every pair up to
        `stats_sample` entries, past it with a sampled mean (`_describe_sampled`)."""
        limit = self.config.stats_sample
        self._describe_exact([(result, code, seen) for result, code, _, seen in items if seen <= limit])
        sampled = [item for item in items if item[3] > limit]
        if sampled:
            self._describe_sampled(sampled)

    def _describe_exact(self, items: list[tuple[DedupResult, str, int]]) -> None:
        """Every pair: a block of items against index[:largest seen] in one multi-core `cdist`, each
        row then using its own first seen_i columns."""
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

    def _describe_sampled(self, items: list[tuple[DedupResult, str, list[int], int]]) -> None:
        """max_score and most_similar exact, from the pairs whose bag-of-words bound can reach the
        top_k (`_top_bounded`); avg_similarity estimated, with its standard error and sample size.

        The items share one seeded sample of `stats_sample` entries of index[:s0], s0 the first
        item's seen (every item was judged against index[:s0] and the ones kept after it, fewer than
        a chunk); each item's mean is s0 times the sample's mean plus its exact scores with
        index[s0:seen_i], over seen_i: a stratified estimate whose standard error is the sample's,
        finite-population corrected, times s0 / seen_i. Both parts are scored in multi-core blocks.
        """
        assert self._occurrences is not None
        sample = self.config.stats_sample
        start = items[0][3]
        drawn = np.random.default_rng([self.config.stats_seed, start]).choice(
            start, size=sample, replace=False, shuffle=False
        )
        drawn_codes = list(itemgetter(*drawn.tolist())(self._codes))
        tail_codes = self._codes[start : max(seen for *_, seen in items)]
        rows = max(1, _BLOCK_CELLS // (sample + len(tail_codes)))
        for first in range(0, len(items), rows):
            block = items[first : first + rows]
            codes = [code for _, code, _, _ in block]
            in_sample = lcs_matrix(codes, drawn_codes)
            in_tail = lcs_matrix(codes, tail_codes)
            for i, (result, code, elements, seen) in enumerate(block):
                top = self._top_bounded(
                    code, self._occurrences.overlap(elements, seen), max(self.config.top_k, 1)
                )
                result.max_score = max(score for score, _ in top)
                result.most_similar = self._most_similar(top)
                if not code:  # no token: 0 against everything, exactly
                    continue
                scores = self._row_scores(in_sample[i], len(code), self._lens[drawn])
                tail = self._row_scores(in_tail[i, : seen - start], len(code), self._lens[start:seen])
                result.avg_similarity = (start * float(scores.mean()) + float(tail.sum())) / seen
                spread = float(scores.std(ddof=1)) / math.sqrt(sample) * math.sqrt(1.0 - sample / start)
                result.avg_similarity_se = start / seen * spread
                result.avg_similarity_sample = sample
                self._pairs_described += sample + seen - start

    def _top_bounded(self, code: str, counts: np.ndarray, k: int) -> list[tuple[float, int]]:
        """`_top` over index[:len(counts)] without scoring every pair: exact scores for the entries
        with the most overlap give a k-th best score tau; every entry that can reach tau (its
        overlap's F-measure, a bound of its own, is >= tau) is then scored, the others cannot be in
        the top k. Entries sharing no token score 0 and only fill a top k that lacks positive ones."""
        la = len(code)
        histogram = np.bincount(counts)
        if counts.size - histogram[0] <= k:
            positive = counts.nonzero()[0]
            scores = self._exact_scores(code, positive)
            zeros = np.flatnonzero(counts == 0)[: k - positive.size].tolist()
            return [*zip(scores.tolist(), positive.tolist(), strict=True), *((0.0, i) for i in zeros)]
        # the fewest overlaps shared by at least 4k entries (counting from the most); any k of them
        # give tau <= the k-th best score
        enough = np.cumsum(histogram[::-1])
        most = histogram.size - 1 - int(np.searchsorted(enough, min(4 * k, enough[-2])))
        guess = np.flatnonzero(counts >= max(most, 1))[: 16 * k]
        guessed = self._exact_scores(code, guess)
        tau = float(np.partition(guessed, guess.size - k)[guess.size - k])
        # F(c, la, b) <= F(c, la, c) = 2c / (la + c) for an overlap c <= b: fewer cannot reach tau
        floor = max(1, math.ceil(tau * la / (2.0 - tau)) - 1)
        near = np.flatnonzero(counts >= floor)
        near = near[self._row_scores(counts[near], la, self._lens[near]) >= tau]
        scores = self._exact_scores(code, near)
        cut = np.partition(scores, scores.size - k)[scores.size - k]
        above = np.flatnonzero(scores > cut)
        picked = np.concatenate([above, np.flatnonzero(scores == cut)[: k - above.size]])
        return list(zip(scores[picked].tolist(), near[picked].tolist(), strict=True))

    def _exact_scores(self, code: str, entries: np.ndarray) -> np.ndarray:
        """Exact F-measures of `code` against these entries, the bits `_describe` computes."""
        self._pairs_described += entries.size
        if not entries.size:
            return np.zeros(0)
        ids = entries.tolist()
        chosen = [self._codes[ids[0]]] if len(ids) == 1 else list(itemgetter(*ids)(self._codes))
        return self._row_scores(lcs_matrix([code], chosen)[0], len(code), self._lens[entries])

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
