"""Progress of a generation run: the events a run reports, and plain lines for logs.

`ProgressListener` is what the protocol and the round driver call; it ignores everything (tests,
`--quiet`). `LineProgress` turns the events into plain lines, for output that is not a terminal: one
at every round end and one at least every `interval_s` seconds in between (requests done / asked so
far, kept tasks, tokens/s, elapsed, ETA to the time budget, the round count or the `until` target).
The rich display for terminals lives with the CLI (`pipeline.commands.generate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.core.lines import LinePrinter, duration

if TYPE_CHECKING:
    from pipeline.generate.config import GenerateConfig
    from pipeline.run.rundir import RunState
    from pipeline.teachers.usage import ReplicaCounts, Usage


class ProgressListener:
    """Where a run reports progress; this one ignores it. A `with` block brackets the run (a display
    starts and stops there)."""

    def __enter__(self) -> ProgressListener:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run_started(self, state: RunState, config: GenerateConfig, usage: Usage) -> None:
        """The run starts from `state`; `usage` is the teacher's live accounting."""

    def round_started(self, round_no: int) -> None:
        """A round begins."""

    def requests_added(self, count: int) -> None:
        """`count` more requests of the current round were sent (a round learns its size as it goes)."""

    def requests_done(self, count: int) -> None:
        """`count` more requests of the current round are answered."""

    def replicas(self, counts: dict[str, ReplicaCounts]) -> None:
        """An HTTP teacher's replicas as they stand: requests, failures and concurrency limit of each."""

    def round_committed(self, row: dict[str, Any], state: RunState) -> None:
        """A round was committed (`row` is its line in state.json)."""


def eta_s(
    config: GenerateConfig, elapsed: float, rounds_run: int, kept_gained: int, kept_total: int
) -> float | None:
    """Seconds left until the first of the run's bounds is reached; None while it cannot be told yet."""
    etas = []
    if config.time_budget is not None:
        etas.append(max(0.0, config.time_budget - elapsed))
    rounds = config.rounds if config.until is None else None  # `until` replaces `rounds`
    if rounds is None and config.until is None and config.time_budget is None:
        rounds = 1  # no bound given: one round
    if rounds is not None and rounds_run:
        etas.append(max(0.0, elapsed / rounds_run * (rounds - rounds_run)))
    if config.until is not None and kept_gained > 0:
        etas.append(max(0, config.until - kept_total) * elapsed / kept_gained)
    return min(etas) if etas else None


class LineProgress(ProgressListener):
    """Plain progress lines on `stream`: at every round end, and at least every `interval_s` seconds."""

    def __init__(self, stream: TextIO, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.printer = LinePrinter(stream, interval_s, clock, prefix="generate: ")
        self.clock = clock
        self.config: GenerateConfig | None = None
        self.usage: Usage | None = None
        self.started = clock()
        self.kept_at_start = 0
        self.kept_total = 0
        self.rounds_run = 0
        self.round_no = 0
        self.round_started_at = 0.0
        self.round_usage: Usage | None = None
        self.asked = 0
        self.answered = 0

    def __enter__(self) -> LineProgress:
        self.printer.start_heartbeat(self.status)
        return self

    def __exit__(self, *exc: object) -> None:
        self.printer.stop_heartbeat()

    def run_started(self, state: RunState, config: GenerateConfig, usage: Usage) -> None:
        self.config, self.usage = config, usage
        self.started = self.clock()
        self.kept_at_start = self.kept_total = state.kept_total
        bounds = [
            f"{config.rounds} rounds" if config.rounds is not None else "",
            f"until {config.until} kept" if config.until is not None else "",
            f"time budget {duration(config.time_budget)}" if config.time_budget is not None else "",
        ]
        self.printer.emit(
            f"run starts after round {state.rounds_done} ({state.kept_total} kept); "
            f"{', '.join(b for b in bounds if b) or '1 round'}"
        )

    def round_started(self, round_no: int) -> None:
        self.round_no, self.asked, self.answered = round_no, 0, 0
        self.round_started_at = self.clock()
        self.round_usage = self.usage.copy() if self.usage is not None else None

    def requests_added(self, count: int) -> None:
        self.asked += count

    def requests_done(self, count: int) -> None:
        self.answered += count
        self.printer.maybe(self.status)

    def round_committed(self, row: dict[str, Any], state: RunState) -> None:
        self.rounds_run += 1
        self.kept_total = state.kept_total
        self.printer.emit(
            f"round {row['round']} done · kept {row['kept']} of {row['candidates']} candidates "
            f"({state.kept_total} in all) · {row['requests']} requests · {row['tokens_per_s']:,.0f} tok/s · "
            f"{self._clock_text()}"
        )

    def status(self) -> str:
        """The line for the middle of a round."""
        if not self.round_no:
            return f"getting ready (run directory, seeds, ROUGE-L index) · {self._clock_text()}"
        tokens = 0
        if self.usage is not None and self.round_usage is not None:
            tokens = self.usage.completion_tokens - self.round_usage.completion_tokens
        spent = self.clock() - self.round_started_at
        speed = tokens / spent if spent > 0 else 0.0
        return (
            f"round {self.round_no} · requests {self.answered}/{self.asked} · kept {self.kept_total} · "
            f"{speed:,.0f} tok/s · {self._clock_text()}"
        )

    def _clock_text(self) -> str:
        elapsed = self.clock() - self.started
        eta = None
        if self.config is not None:
            eta = eta_s(
                self.config, elapsed, self.rounds_run, self.kept_total - self.kept_at_start, self.kept_total
            )
        return f"elapsed {duration(elapsed)} · eta {duration(eta) if eta is not None else '?'}"
