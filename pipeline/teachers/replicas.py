"""Which replica gets the next request: spread the load over healthy servers and route around failing ones.

Least in-flight alone sends everything to a dead replica, since one that fails at once always has the
fewest requests open. So a replica that fails is benched for a while (growing with each consecutive
failure, reset by an answer); when the bench ends it takes one probe request at a time, while another
replica can carry the load, until an answer clears it. A retry avoids the replica that just failed it
whenever another one can take it.

Each replica also has its own concurrency limit (`aimd.ConcurrencyLimit`): it grows while answers come
back healthy and shrinks on overload (429, 503, timeouts), so a big server is not starved and a full one
not hammered. A 429 without Retry-After means "full", not "down": it only shrinks the limit. When every
replica that is up has reached its limit, `route` says so (no replica) and the caller waits for a slot.

Pure bookkeeping with no I/O and no clock of its own (callers pass `now`), so the rules can be tested
alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.teachers.aimd import ConcurrencyLimit
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
    limit: ConcurrencyLimit | None = None
    """How many requests it may have open (None: no limit of its own)."""

    def benched(self, now: float) -> bool:
        return now < self.benched_until

    def full(self) -> bool:
        return self.limit is not None and self.in_flight >= self.limit.current

    def accepts(self, now: float) -> bool:
        """Free to take a request now: not benched, not at its concurrency limit, and not a probation
        replica with its probe still out."""
        return not self.benched(now) and not self.full() and not (self.streak > 0 and self.in_flight > 0)


@dataclass(frozen=True)
class Route:
    replica: ReplicaState | None
    """None: every replica that is up is at its limit (or probing); wait until a request ends."""
    wait_s: float
    """Seconds to wait before sending: 0 unless every replica is benched."""


class ReplicaRouter:
    """Routes requests over replicas; tell it when each request is sent and how it ended."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        bench_base_s: float,
        bench_max_s: float,
        max_concurrency: int | None = None,
        adaptive: bool = True,
    ):
        """`max_concurrency`: the most requests open on one replica (None: no per-replica limit); with
        `adaptive` each replica starts low and finds its own limit (AIMD), else it starts at the maximum."""
        if not urls:
            raise ValueError("a router needs at least one replica")

        def limit() -> ConcurrencyLimit | None:
            if max_concurrency is None:
                return None
            if adaptive:
                return ConcurrencyLimit(maximum=max_concurrency)
            return ConcurrencyLimit.fixed(max_concurrency)

        # A URL listed twice is still one server, with one health and one load.
        self.replicas = [ReplicaState(url, limit=limit()) for url in dict.fromkeys(urls)]
        self.bench_base_s = bench_base_s
        self.bench_max_s = bench_max_s
        self._turn = 0

    def route(self, now: float, avoid: str | None = None) -> Route:
        """The replica for the next attempt; `avoid` (the URL that failed this request) only as last resort.

        Among replicas free to take it, the least loaded (ties in turn, so idle replicas share evenly).
        A retry waits for a slot on a healthy replica that is only full rather than go back to the one
        it failed on (else, while the healthy ones are busy, one request can spend all its retries
        probing a dead replica). When every replica that is up is at its limit or probing, no replica:
        a slot frees when one of their requests ends. When every replica is benched, the one back
        soonest, with how long to wait.
        """
        free = [r for r in self.replicas if r.accepts(now)]
        preferred = [r for r in free if r.url != avoid]
        healthy_but_full = any(
            r.url != avoid and r.streak == 0 and not r.benched(now) and r.full() for r in self.replicas
        )
        if not preferred and not healthy_but_full:
            preferred = free
        if preferred:
            count = len(self.replicas)
            start = self._turn
            chosen = min(
                preferred,
                key=lambda r: (r.in_flight, (self.replicas.index(r) - start) % count),
            )
            self._turn = (self.replicas.index(chosen) + 1) % count
            return Route(chosen, 0.0)
        if any(not r.benched(now) and r.in_flight > 0 for r in self.replicas):
            return Route(None, 0.0)
        chosen = min(
            self.replicas,
            key=lambda r: (max(0.0, r.benched_until - now), r.url == avoid, r.in_flight),
        )
        return Route(chosen, max(0.0, chosen.benched_until - now))

    def sent(self, replica: ReplicaState) -> int:
        """A request goes to `replica`; returns the epoch of its limit, to hand back on overload."""
        replica.in_flight += 1
        replica.requests += 1
        return replica.limit.epoch if replica.limit is not None else 0

    def answered(self, replica: ReplicaState, healthy: bool = True) -> None:
        """The server replied (even to refuse this one request): it is up. `healthy`: with an answer,
        which lets its concurrency limit grow."""
        if healthy and replica.limit is not None:
            replica.limit.answered(replica.in_flight)
        replica.in_flight -= 1
        replica.streak = 0
        replica.benched_until = 0.0

    def refused(self, replica: ReplicaState, epoch: int) -> None:
        """The server is up but full (429 without Retry-After): shrink its limit, do not bench it."""
        replica.in_flight -= 1
        replica.failures += 1
        if replica.limit is not None:
            replica.limit.overloaded(epoch)

    def failed(
        self,
        replica: ReplicaState,
        now: float,
        retry_after: float | None = None,
        overload_epoch: int | None = None,
    ) -> None:
        """The server failed (5xx, 429 with Retry-After, timeout, dropped or garbled reply): bench it;
        `overload_epoch` (the request's epoch, for 503 and timeouts) also shrinks its limit.

        Failures of requests that were already open when it was benched do not lengthen the bench: a
        replica that dies under 64 open requests fails 64 times at once, which is one event, not 64.
        """
        replica.in_flight -= 1
        replica.failures += 1
        if overload_epoch is not None and replica.limit is not None:
            replica.limit.overloaded(overload_epoch)
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
        return {
            r.url: ReplicaCounts(
                requests=r.requests,
                failures=r.failures,
                concurrency=r.limit.current if r.limit is not None else r.in_flight,
            )
            for r in self.replicas
        }
