"""Accounting for teacher calls: what was asked, what the cache saved, what was paid, how fast.

Token counts and cost cover calls actually paid for, each once: a cache hit is free, unless it is an
answer an earlier invocation paid for in a round it never committed (it was killed), whose tokens no
summary has counted yet; those count here, and `earlier_*` says how many of the tokens they are.
`requests` counts every request asked for. `since` gives per-round figures from two snapshots of the same running total.
`replicas` holds, per base URL of an HTTP teacher, the attempts sent there, how many failed, and its
current concurrency limit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol


class Answered(Protocol):
    """What accounting needs of a completion (`pipeline.teachers.base.Completion` has it)."""

    cached: bool
    paid_earlier: bool
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class ReplicaCounts:
    """Attempts sent to one replica and how many failed, and its concurrency limit when last seen."""

    requests: int = 0
    failures: int = 0
    concurrency: int = field(default=0, compare=False)
    """A gauge, not a count (the AIMD limit now): it does not take part in comparing counts."""

    def minus(self, earlier: ReplicaCounts) -> ReplicaCounts:
        return ReplicaCounts(
            self.requests - earlier.requests, self.failures - earlier.failures, self.concurrency
        )


def describe_replicas(replicas: dict[str, ReplicaCounts]) -> str:
    """One short line for a live display: per replica (host:port) its requests, failures and limit."""
    parts = []
    for url, counts in replicas.items():
        host = url.split("://", 1)[-1].split("/", 1)[0]
        failed = f" ({counts.failures} failed)" if counts.failures else ""
        parts.append(f"{host} {counts.requests} req{failed} at {counts.concurrency}")
    return " · ".join(parts)


@dataclass
class Usage:
    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    retries: int = 0
    earlier_prompt_tokens: int = 0
    earlier_completion_tokens: int = 0
    price_per_1k_prompt_tokens: float | None = None
    price_per_1k_completion_tokens: float | None = None
    replicas: dict[str, ReplicaCounts] = field(default_factory=dict)

    def record(self, completion: Answered) -> None:
        self.requests += 1
        if completion.cached:
            self.cache_hits += 1
            if not completion.paid_earlier:
                return
            self.earlier_prompt_tokens += completion.prompt_tokens
            self.earlier_completion_tokens += completion.completion_tokens
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens

    @property
    def calls(self) -> int:
        """Requests that reached the teacher (not answered from the cache)."""
        return self.requests - self.cache_hits

    @property
    def tokens_per_s(self) -> float:
        """Generated (completion) tokens per wall-clock second spent in the teacher (this invocation's)."""
        made = self.completion_tokens - self.earlier_completion_tokens
        return made / self.seconds if self.seconds > 0 else 0.0

    @property
    def cost(self) -> float | None:
        """Money spent at the configured prices per 1K tokens; None when no price is set."""
        if self.price_per_1k_prompt_tokens is None and self.price_per_1k_completion_tokens is None:
            return None
        prompt = (self.price_per_1k_prompt_tokens or 0.0) * self.prompt_tokens / 1000
        completion = (self.price_per_1k_completion_tokens or 0.0) * self.completion_tokens / 1000
        return round(prompt + completion, 6)

    def copy(self) -> Usage:
        return dataclasses.replace(self, replicas=dict(self.replicas))

    def since(self, earlier: Usage) -> Usage:
        """The usage accumulated after `earlier` (a `copy()` taken before), at the same prices."""
        return Usage(
            requests=self.requests - earlier.requests,
            cache_hits=self.cache_hits - earlier.cache_hits,
            prompt_tokens=self.prompt_tokens - earlier.prompt_tokens,
            completion_tokens=self.completion_tokens - earlier.completion_tokens,
            seconds=self.seconds - earlier.seconds,
            retries=self.retries - earlier.retries,
            earlier_prompt_tokens=self.earlier_prompt_tokens - earlier.earlier_prompt_tokens,
            earlier_completion_tokens=self.earlier_completion_tokens - earlier.earlier_completion_tokens,
            price_per_1k_prompt_tokens=self.price_per_1k_prompt_tokens,
            price_per_1k_completion_tokens=self.price_per_1k_completion_tokens,
            replicas={
                url: counts.minus(earlier.replicas.get(url, ReplicaCounts()))
                for url, counts in self.replicas.items()
            },
        )

    def as_dict(self) -> dict[str, Any]:
        """The shape stored in summary.json (per round and in totals); `replicas` only for HTTP teachers."""
        out: dict[str, Any] = {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "retries": self.retries,
            "earlier_prompt_tokens": self.earlier_prompt_tokens,
            "earlier_completion_tokens": self.earlier_completion_tokens,
        }
        if self.replicas:
            out["replicas"] = {url: dataclasses.asdict(c) for url, c in self.replicas.items()}
        return out
