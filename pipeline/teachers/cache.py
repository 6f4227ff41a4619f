"""A content-addressed, crash-safe cache of teacher calls, kept in the run directory.

The key hashes everything that decides an answer: backend, model identity (name, weights
fingerprint, and the dtype the engine computes in), the prompt or messages, and every sampling
parameter including the seed. Entries go to an append-only JSONL file as whole lines, so a kill
leaves at most a torn last line, which readers skip and the next append cuts off.

An answer is on disk before it is delivered, so whatever a caller has seen (progress included)
survives a kill. During a batch one writer thread does the appending, one write and one fsync for
every group of answers that arrived meanwhile (group commit). A backend with an event loop
(`awaits_delivery`) gets an awaitable from `deliver` instead of a blocking call, so its loop keeps
running while the disk works. A write error reaches the delivery, and through it the batch's caller.

Identical requests (same key) inside one batch get successive stored answers: with sampling and no
seed they are different draws, and a rerun must hand back the same set of answers, not one answer
twice. A resumed, repeated or extended run never pays twice for a call it already made.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.jsonio import append_jsonl, iter_jsonl
from pipeline.run.schemas import TeacherIdentity
from pipeline.teachers.base import Completion, Deliver, Request, RequestQueue, Teacher

CACHE_FILE = "teacher.jsonl"
KEY_VERSION = 1


def cache_key(identity: TeacherIdentity, request: Request) -> str:
    payload = {
        "v": KEY_VERSION,
        **identity.key(),
        "prompt": request.prompt,
        "messages": request.messages,
        "params": request.params.model_dump(mode="json"),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CacheWriteError(UserError):
    """The cache file could not be written (a full disk, a lost mount): answers would not survive a kill."""


Entry = tuple[str, Completion, float]


def _record(entry: Entry) -> dict:
    key, completion, created_at = entry
    return {"key": key, "completion": completion.model_dump(mode="json"), "created_at": created_at}


class GroupCommitWriter:
    """Appends cache entries on one thread: a single durable `append_jsonl` per group of waiting entries.

    `submit` queues entries and returns a future that resolves once they are on disk; entries submitted
    while a write is under way share the next write and fsync. A failed write fails its futures and
    every later submit with `CacheWriteError`; `close` writes what is queued and stops the thread.
    """

    def __init__(self, path: Path):
        self.path = path
        self._pending: list[tuple[list[Entry], Future[None]]] = []
        self._closing = False
        self._error: CacheWriteError | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="teacher-cache-writer", daemon=True)
        self._thread.start()

    def submit(self, entries: list[Entry]) -> Future[None]:
        done: Future[None] = Future()
        with self._changed:
            if self._error is not None:
                raise self._error
            self._pending.append((entries, done))
            self._changed.notify()
        return done

    def close(self) -> None:
        """Write what is queued, then stop the thread; raise if any write failed."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._closing:
                    self._changed.wait()
                if not self._pending:
                    return
                group, self._pending = self._pending, []
            try:
                append_jsonl(self.path, (_record(entry) for entries, _ in group for entry in entries))
            except Exception as exc:
                error = CacheWriteError(f"could not write the teacher cache {self.path}: {exc}")
                error.__cause__ = exc
                with self._changed:
                    self._error = error
                    group += self._pending
                    self._pending = []
                for _, done in group:
                    done.set_exception(error)
                return
            for _, done in group:
                done.set_result(None)


class CompletionCache:
    """Key -> stored completions (a list: identical requests may have several answers)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / CACHE_FILE
        self._entries: dict[str, list[Completion]] = defaultdict(list)
        self._lines: dict[str, list[int]] = defaultdict(list)  # each entry's line in the file
        self._writer: GroupCommitWriter | None = None
        self._size = 0
        if self.path.exists():
            for _, record in iter_jsonl(self.path, skip_torn_tail=True):
                self._add(record["key"], Completion.model_validate(record["completion"]))
        self.loaded = self._size
        self._counted: set[int] = set()
        self.uncounted_from: int | None = None
        """Entries from this line on (to `loaded`) were paid for but never counted in a committed round."""

    def __len__(self) -> int:
        return self._size

    def _add(self, key: str, completion: Completion) -> None:
        self._entries[key].append(completion)
        self._lines[key].append(self._size)
        self._size += 1

    def get(self, key: str, occurrence: int = 0) -> Completion | None:
        stored = self._entries.get(key)
        if stored is None or occurrence >= len(stored):
            return None
        line, start = self._lines[key][occurrence], self.uncounted_from
        earlier = start is not None and start <= line < self.loaded and line not in self._counted
        if earlier:
            self._counted.add(line)  # counted once, however often it is handed out
        return stored[occurrence].model_copy(update={"cached": True, "paid_earlier": earlier})

    def put_many(self, items: list[tuple[str, Completion]]) -> None:
        """Store completions durably: return once they are on disk (and only then answer lookups)."""
        self.store(items).result()
        self.remember(items)

    def store(self, items: list[tuple[str, Completion]]) -> Future[None]:
        """Start storing completions; the future resolves once they are on disk.

        Inside `writing()` the writer thread groups them with whatever else arrives meanwhile; outside
        it they are written here, at once. Call `remember` once the future has resolved.
        """
        now = time.time()
        entries = [(key, completion, now) for key, completion in items]
        if self._writer is not None:
            return self._writer.submit(entries)
        done: Future[None] = Future()
        if entries:
            append_jsonl(self.path, (_record(entry) for entry in entries))
        done.set_result(None)
        return done

    def remember(self, items: list[tuple[str, Completion]]) -> None:
        """Make stored completions answer lookups."""
        for key, completion in items:
            self._add(key, completion)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Group the writes of the block on a writer thread; it is stopped (everything written) on exit.

        A write error wins over an error the block raised, since that one may claim answers are safe.
        """
        if self._writer is not None:
            raise RuntimeError("the cache is already writing")
        writer = self._writer = GroupCommitWriter(self.path)
        try:
            yield
        except BaseException:
            self._writer = None
            writer.close()
            raise
        self._writer = None
        writer.close()


class CachedTeacher(Teacher):
    """Wraps any teacher: answers from the cache what it can, sends only the rest, stores each answer."""

    def __init__(self, teacher: Teacher, cache_dir: str | Path):
        super().__init__(teacher.identity, teacher.usage)
        self.inner = teacher
        self.cache = CompletionCache(cache_dir)
        self.structured_outputs = teacher.structured_outputs

    @property
    def capacity(self) -> int | None:  # type: ignore[override]
        return self.inner.capacity

    @property
    def cancels(self) -> bool:  # type: ignore[override]
        return self.inner.cancels

    def probe_structured(self, *, chat: bool) -> str | None:
        """Asked of the teacher itself: a capability test is not an answer to keep."""
        return self.inner.probe_structured(chat=chat)

    def stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        misses = RequestQueue()  # what the inner teacher is asked, in the order it was found missing
        outer_index: list[int] = []  # miss index -> index in `queue`
        keys: list[str] = []  # miss index -> cache key
        seen: dict[str, int] = defaultdict(int)

        miss_of: dict[int, int] = {}  # index in `queue` -> miss index

        def route() -> None:
            """Answer new requests from the cache, pass the rest on; hits may add more, so loop.
            Cancellations are passed on too."""
            misses.cancel(miss_of[i] for i in queue.take_cancelled() if i in miss_of)
            while new := queue.take():
                hits: list[tuple[int, Completion]] = []
                for index, request in new:
                    key = cache_key(self.identity, request)
                    found = self.cache.get(key, seen[key])
                    seen[key] += 1
                    if found is None:
                        miss_of[index] = misses.add([request]).start
                        outer_index.append(index)
                        keys.append(key)
                    else:
                        hits.append((index, found))
                if hits:
                    deliver(hits)

        def store_and_deliver(batch: list[tuple[int, Completion]]) -> Awaitable[None] | None:
            mapped = [(outer_index[local], completion) for local, completion in batch]
            items = [(keys[local], completion) for local, completion in batch]
            stored = self.cache.store(items)
            if not self.inner.awaits_delivery:
                stored.result()
                self.cache.remember(items)
                deliver(mapped)
                route()  # what `deliver` added: hits answered now, misses join the inner queue
                return None

            async def once_stored() -> None:  # on the inner teacher's event loop, which awaits it
                await asyncio.wrap_future(stored)
                self.cache.remember(items)
                deliver(mapped)
                route()

            return once_stored()

        route()
        if len(misses):
            with self.cache.writing():
                self.inner.stream(misses, store_and_deliver)

    def close(self) -> None:
        self.inner.close()
