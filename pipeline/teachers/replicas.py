"""Which replica gets the next request: spread the load over healthy servers and route around failing ones.

Least in-flight alone sends everything to a dead replica, since one that fails at once always has the
fewest requests open. So a replica that fails is benched for a while (growing with each consecutive
failure, reset by an answer); when the bench ends it takes one probe request at a time, while another
replica can carry the load, until an answer clears it. A retry avoids the replica that just failed it
whenever another one can take it.

Pure bookkeeping with no I/O and no clock of its own (callers pass `now`), so the rules can be tested
alone; a per-replica concurrency limit (AIMD) can later slot in through `ReplicaState.accepts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.teachers.usage import ReplicaCounts


@dataclass
class ReplicaState:
    """One base URL: what is open on it now, what it has done, and whether it is benched."""

    url: str
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    streak: int = 0
    """Consecutive failures since the last answer; above 0 the replica is on probation."""
    benched_until: float = 0.0

    def benched(self, now: float) -> bool:
        return now < self.benched_until

    def accepts(self, now: float) -> bool:
        """Free to take a request now: not benched, and not a probation replica with its probe still out."""
        return not self.benched(now) and not (self.streak > 0 and self.in_flight > 0)


@dataclass(frozen=True)
class Route:
    replica: ReplicaState
    wait_s: float
    """Seconds to wait before sending: 0 unless every replica is benched."""


class ReplicaRouter:
    """Routes requests over replicas; tell it when each request is sent and how it ended."""

    def __init__(self, urls: Sequence[str], *, bench_base_s: float, bench_max_s: float):
        if not urls:
            raise ValueError("a router needs at least one replica")
        # A URL listed twice is still one server, with one health and one load.
        self.replicas = [ReplicaState(url) for url in dict.fromkeys(urls)]
        self.bench_base_s = bench_base_s
        self.bench_max_s = bench_max_s
        self._turn = 0

    def route(self, now: float, avoid: str | None = None) -> Route:
        """The replica for the next attempt; `avoid` (the URL that failed this request) only as last resort.

        Among replicas free to take it, the least loaded (ties in turn, so idle replicas share evenly).
        When every replica is benched or probing, the one back soonest, with how long to wait for it.
        """
        free = [r for r in self.replicas if r.accepts(now)]
        preferred = [r for r in free if r.url != avoid] or free
        if preferred:
            count = len(self.replicas)
            start = self._turn
            chosen = min(
                preferred,
                key=lambda r: (r.in_flight, (self.replicas.index(r) - start) % count),
            )
            self._turn = (self.replicas.index(chosen) + 1) % count
            return Route(chosen, 0.0)
        chosen = min(
            self.replicas,
            key=lambda r: (max(0.0, r.benched_until - now), r.url == avoid, r.in_flight),
        )
        return Route(chosen, max(0.0, chosen.benched_until - now))

    def sent(self, replica: ReplicaState) -> None:
        replica.in_flight += 1
        replica.requests += 1

    def answered(self, replica: ReplicaState) -> None:
        """The server replied (even to refuse this one request): it is healthy."""
        replica.in_flight -= 1
        replica.streak = 0
        replica.benched_until = 0.0

    def failed(self, replica: ReplicaState, now: float, retry_after: float | None = None) -> None:
        """The server failed (5xx, 429, timeout, dropped or garbled reply): bench it.

        Failures of requests that were already open when it was benched do not lengthen the bench: a
        replica that dies under 64 open requests fails 64 times at once, which is one event, not 64.
        """
        replica.in_flight -= 1
        replica.failures += 1
        if not replica.benched(now):
            replica.streak += 1
            replica.benched_until = now + self.bench_s(replica.streak)
        if retry_after is not None:
            replica.benched_until = max(replica.benched_until, now + retry_after)

    def abandoned(self, replica: ReplicaState) -> None:
        """The request was cancelled before any reply: no verdict on the replica."""
        replica.in_flight -= 1

    def bench_s(self, streak: int) -> float:
        """Bench length after `streak` consecutive failures: doubling from the base, capped."""
        return min(self.bench_max_s, self.bench_base_s * 2.0 ** (streak - 1))

    def counts(self) -> dict[str, ReplicaCounts]:
        return {r.url: ReplicaCounts(requests=r.requests, failures=r.failures) for r in self.replicas}
