"""How many requests one replica gets at once: additive increase, multiplicative decrease (AIMD).

TCP's congestion rule (Reno) applied to request concurrency. A replica starts at a few requests; while
its answers come back healthy and the limit is in use, the limit grows: by one per answer until the
first sign of overload (slow start, so a big server is not starved for long), then by one per full
window of answers (additive increase). A sign of overload (429, 503, a timeout) multiplies it by
`backoff` (multiplicative decrease). The limit never leaves [1, maximum].

One overload usually fails several requests at once (all those the server could not take); only the
first of them counts. Each request carries the limit's `epoch` from when it was sent, and a failure of
a request sent before the last decrease tells nothing about the limit since.

Pure bookkeeping with no I/O and no clock, so the rule can be tested alone; `ReplicaRouter` keeps one
per replica and routes only to replicas below their limit.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF = 0.7
"""Decrease factor on overload (CUBIC's 0.7: gentler than Reno's 0.5, so a run keeps most of its pace)."""
START = 4
"""Requests a replica gets at once before it has answered anything."""


@dataclass
class ConcurrencyLimit:
    """The adaptive concurrency limit of one replica."""

    maximum: int
    limit: float = float(START)
    backoff: float = BACKOFF
    slow_start: bool = True
    """Until the first overload the limit grows by one per answer (doubling per window)."""
    epoch: int = 0
    """Bumped by every decrease: requests sent before it carry an older epoch."""
    decreases: int = 0

    def __post_init__(self) -> None:
        if self.maximum < 1:
            raise ValueError(f"a concurrency limit needs a maximum of at least 1, got {self.maximum}")
        if not 0.0 < self.backoff < 1.0:
            raise ValueError(f"the decrease factor must be between 0 and 1, got {self.backoff}")
        self.limit = float(min(max(1.0, self.limit), self.maximum))

    @classmethod
    def fixed(cls, maximum: int) -> ConcurrencyLimit:
        """A limit that starts at its maximum (adaptive concurrency off: overloads still decrease it)."""
        return cls(maximum=maximum, limit=float(maximum), slow_start=False)

    @property
    def current(self) -> int:
        """Requests the replica may have open now."""
        return max(1, min(self.maximum, int(self.limit)))

    def answered(self, in_flight: int) -> None:
        """A healthy answer came back while `in_flight` requests (this one included) were open.

        An answer only proves the current limit when the limit was in use: a replica given 3 requests
        under a limit of 40 says nothing about 41, so the limit grows only when at least half of it was
        taken (as Netflix's concurrency-limits AIMD does).
        """
        if 2 * in_flight < self.current:
            return
        step = 1.0 if self.slow_start else 1.0 / self.limit
        self.limit = min(float(self.maximum), self.limit + step)

    def overloaded(self, sent_epoch: int) -> bool:
        """The server refused or timed out a request sent at `sent_epoch`; True when the limit decreased."""
        if sent_epoch < self.epoch:
            return False
        self.limit = max(1.0, self.limit * self.backoff)
        self.slow_start = False
        self.epoch += 1
        self.decreases += 1
        return True
