"""A content-addressed, crash-safe cache of teacher calls, kept in the run directory.

The key hashes everything that decides an answer: backend, model identity (name and weights
fingerprint), the prompt or messages, and every sampling parameter including the seed. Entries go
to an append-only JSONL file with one fsynced write per finished batch step, so a kill loses at
most a torn last line, which readers skip and the next append cuts off.

Identical requests (same key) inside one batch get successive stored answers: with sampling and no
seed they are different draws, and a rerun must hand back the same set of answers, not one answer
twice. A resumed, repeated or extended run never pays twice for a call it already made.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from pathlib import Path

from pipeline.core.jsonio import append_jsonl, iter_jsonl
from pipeline.run.schemas import TeacherIdentity
from pipeline.teachers.base import Completion, Deliver, Request, RequestQueue, Teacher

CACHE_FILE = "teacher.jsonl"
KEY_VERSION = 1


def cache_key(identity: TeacherIdentity, request: Request) -> str:
    payload = {
        "v": KEY_VERSION,
        "backend": identity.backend,
        "model": identity.model,
        "fingerprint": identity.fingerprint,
        "prompt": request.prompt,
        "messages": request.messages,
        "params": request.params.model_dump(mode="json"),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CompletionCache:
    """Key -> stored completions (a list: identical requests may have several answers)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / CACHE_FILE
        self._entries: dict[str, list[Completion]] = defaultdict(list)
        if self.path.exists():
            for _, record in iter_jsonl(self.path, skip_torn_tail=True):
                self._entries[record["key"]].append(Completion.model_validate(record["completion"]))

    def __len__(self) -> int:
        return sum(len(v) for v in self._entries.values())

    def get(self, key: str, occurrence: int = 0) -> Completion | None:
        stored = self._entries.get(key)
        if stored is None or occurrence >= len(stored):
            return None
        return stored[occurrence].model_copy(update={"cached": True})

    def put_many(self, items: list[tuple[str, Completion]]) -> None:
        """Store completions durably (one fsynced append) before anyone else sees them."""
        if not items:
            return
        now = time.time()
        append_jsonl(
            self.path,
            ({"key": key, "completion": c.model_dump(mode="json"), "created_at": now} for key, c in items),
        )
        for key, completion in items:
            self._entries[key].append(completion)


class CachedTeacher(Teacher):
    """Wraps any teacher: answers from the cache what it can, sends only the rest, stores each answer."""

    def __init__(self, teacher: Teacher, cache_dir: str | Path):
        super().__init__(teacher.identity, teacher.usage)
        self.inner = teacher
        self.cache = CompletionCache(cache_dir)

    def stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        misses = RequestQueue()  # what the inner teacher is asked, in the order it was found missing
        outer_index: list[int] = []  # miss index -> index in `queue`
        keys: list[str] = []  # miss index -> cache key
        seen: dict[str, int] = defaultdict(int)

        def route() -> None:
            """Answer new requests from the cache, pass the rest on; hits may add more, so loop."""
            while new := queue.take():
                hits: list[tuple[int, Completion]] = []
                for index, request in new:
                    key = cache_key(self.identity, request)
                    found = self.cache.get(key, seen[key])
                    seen[key] += 1
                    if found is None:
                        misses.add([request])
                        outer_index.append(index)
                        keys.append(key)
                    else:
                        hits.append((index, found))
                if hits:
                    deliver(hits)

        def store_and_deliver(batch: list[tuple[int, Completion]]) -> None:
            self.cache.put_many([(keys[local], completion) for local, completion in batch])
            deliver([(outer_index[local], completion) for local, completion in batch])
            route()

        route()
        if len(misses):
            self.inner.stream(misses, store_and_deliver)

    def close(self) -> None:
        self.inner.close()
