"""The rounds of one invocation: each driven through the teacher, committed, and (with overlap) the
next one asked early.

Each round commits as a unit (see `pipeline.run.rundir`): append kept tasks, append rejections,
replace state.json (the commit point, with the RNG state), replace summary.json. Without overlap a
round is one `Teacher.answer` call and the next starts after it returns. With overlap every round of
the invocation shares one call: a round closes and commits inside the delivery of its last answer
and the next round opens in the same breath, its opening partly answered already by the guesses
made during this round's tail (`pipeline.generate.overlap`), so the engine never drains between
rounds. Decisions are the same either way.

Crash points after the round's own (`pipeline.generate.driver`): `before_append` (nothing appended),
`after_tasks` (kept tasks appended, rejections not), `after_append` (both appended, state.json not
replaced: the round is not committed), `after_state` (committed, summary.json not yet replaced).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.jsonio import append_jsonl
from pipeline.generate.config import GenerateConfig
from pipeline.generate.driver import CrashHook, RoundDriver, Session
from pipeline.generate.overlap import next_opening
from pipeline.generate.progress import ProgressListener
from pipeline.generate.recipe import RoundResult, RunContext
from pipeline.generate.recipes import recipe_class
from pipeline.run.rundir import TASK_STAGES, RunDir, RunState, rng_to_json
from pipeline.run.schemas import Rejection
from pipeline.run.seeds import resolve_seeds_path
from pipeline.run.summary import RunSummary
from pipeline.teachers.base import Teacher
from pipeline.teachers.cache import CachedTeacher
from pipeline.teachers.usage import Usage

if TYPE_CHECKING:
    from pipeline.generate.protocol import RunLength

MOST_WAITING = 2
"""The next round is guessed once at most this many of this round's candidates wait on a reply: each
outcome of theirs (2**n) is a guess of its own, so one of them is right, and the engine, which would
otherwise run the stragglers alone, is filled with them, the likeliest first, up to an opening's size."""


class _RunEnded(Exception):
    """Raised out of a delivery to end the teacher's call when the run stops with guesses still out."""


def _rejection_row(rejections: list[Rejection]) -> tuple[dict[str, int], dict[str, int]]:
    reasons: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    for rej in rejections:
        reasons.update(rej.reasons)
        stages[rej.stage] += 1
    return dict(reasons.most_common()), dict(stages.most_common())


def round_row(
    round_no: int, result: RoundResult, usage: dict[str, Any], wall_s: float, startup_s: float = 0.0
) -> dict[str, Any]:
    """A round's line in state.json and summary.json."""
    rejected, by_stage = _rejection_row(result.rejections)
    return {
        "round": round_no,
        **usage,
        "candidates": result.candidate_count,
        "kept": len(result.tasks),
        "rejected": rejected,
        "rejected_by_stage": by_stage,
        "classification": dict(result.labels),
        "wall_s": round(wall_s, 3),
        "startup_s": round(startup_s, 3),
    }


def task_rejection_count(row: dict[str, Any]) -> int:
    """Whole candidates rejected in a round (parse problems and dropped instances are not candidates)."""
    return sum(int(row.get("rejected_by_stage", {}).get(stage, 0)) for stage in TASK_STAGES)


def _commit(
    run: RunDir,
    result: RoundResult,
    state: RunState,
    present: dict[str, set[str]],
    round_no: int,
    crash: CrashHook,
) -> None:
    """Append what is not on disk yet, then replace state.json: the round's commit point."""
    crash("before_append", round_no)
    append_jsonl(run.tasks_path, [t for t in result.tasks if t.id not in present["tasks"]])
    crash("after_tasks", round_no)
    append_jsonl(
        run.rejected_path, [r for r in result.rejections if r.candidate.get("key") not in present["rejected"]]
    )
    crash("after_append", round_no)
    run.write_state(state)
    crash("after_state", round_no)


def _reconcile_pending(
    run: RunDir, state: RunState, result: RoundResult, pending: dict[str, dict[str, str]]
) -> dict[str, set[str]]:
    """Records of an uncommitted round already on disk: skip them if the redo made the same, else drop them."""
    if not pending["tasks"] and not pending["rejected"]:
        return {"tasks": set(), "rejected": set()}
    redo_tasks = {t.id: t.instruction for t in result.tasks}
    redo_rej = {str(r.candidate.get("key")): r.instruction for r in result.rejections}
    same = all(redo_tasks.get(i) == text for i, text in pending["tasks"].items()) and all(
        redo_rej.get(k) == text for k, text in pending["rejected"].items()
    )
    if same:
        return {"tasks": set(pending["tasks"]), "rejected": set(pending["rejected"])}
    run.drop_uncommitted(state.rounds_done)
    return {"tasks": set(), "rejected": set()}


def write_summary(
    run: RunDir, state: RunState, config: GenerateConfig, seeds_path: Path, seeds_count: int, teacher: Teacher
) -> RunSummary:
    summary = RunSummary.from_state(
        state,
        method=config.method,
        seeds_path=str(seeds_path),
        seeds_count=seeds_count,
        teacher=teacher.identity,
    )
    run.write_summary(summary)
    return summary


def round_usage(used: Usage, spent: Usage, wall_s: float) -> Usage:
    """A round's teacher figures: the answers it used (its own requests and the guesses it took), over
    its wall time; retries and per-replica counts are those of everything sent while it was open."""
    return dataclasses.replace(
        used,
        seconds=wall_s,
        retries=spent.retries,
        price_per_1k_prompt_tokens=spent.price_per_1k_prompt_tokens,
        price_per_1k_completion_tokens=spent.price_per_1k_completion_tokens,
        replicas=spent.replicas,
    )


class Rounds:
    """Runs rounds until the run length says stop; `run` returns (why it stopped, if not the target;
    rounds run)."""

    def __init__(
        self,
        ctx: RunContext,
        teacher: Teacher,
        run: RunDir,
        state: RunState,
        pending: dict[str, dict[str, str]],
        length: RunLength,
        progress: ProgressListener,
        crash: CrashHook,
        after_commit: Callable[[RunState, Teacher], None] | None = None,
        overlap: bool = False,
    ):
        self.ctx, self.teacher, self.run_dir, self.state = ctx, teacher, run, state
        self.pending, self.length, self.progress, self.crash = pending, length, progress, crash
        self.after_commit = after_commit
        self.overlap = overlap
        self.recipe = recipe_class(ctx.config.method)
        self.capacity = teacher.capacity
        self.current: RoundDriver | None = None
        self.why: str | None = None
        self._guessed: list[list[tuple[str, str]]] | None = None
        self._opened_at = 0.0
        self._startup_s = 0.0
        self._before = teacher.usage.copy()
        self._guesses = (0, 0)  # the current round's guessed requests: asked, used

    def run(self) -> tuple[str | None, int]:
        if self._stop():
            return self.why, self.length.ran
        if not self.overlap:
            while True:
                session = Session(self.teacher.cancels)
                driver = self._open(session)
                if not driver.done:
                    self.teacher.answer(session.queue, self._round_delivered(session, driver))
                self._finish(driver, session)
                if self._stop():
                    return self.why, self.length.ran
        session = Session(self.teacher.cancels)
        try:
            self._open(session)
            if not self._advance(session):
                self.teacher.answer(session.queue, self._delivered(session))
        except _RunEnded:
            pass
        return self.why, self.length.ran

    def _round_delivered(self, session: Session, driver: RoundDriver) -> Callable[[list], None]:
        """Deliveries when rounds do not overlap: route, report; the round closes after the call."""

        def deliver(batch: list) -> None:
            session.deliver(batch)
            self._report(driver)

        return deliver

    def _delivered(self, session: Session) -> Callable[[list], None]:
        """Deliveries of overlapping rounds: route, report, then close, commit and open what is due."""

        def deliver(batch: list) -> None:
            session.deliver(batch)
            assert self.current is not None
            self._report(self.current)
            if self._advance(session) and session.in_flight:
                raise _RunEnded  # only guesses are still out: nothing will use them

        return deliver

    def _report(self, driver: RoundDriver) -> None:
        driver.report()
        if self.teacher.usage.replicas:
            self.progress.replicas(self.teacher.usage.replicas)

    def _advance(self, session: Session) -> bool:
        """Close and commit every round that is done, opening the next; guess when due. True when the
        run has stopped."""
        assert self.current is not None
        while self.current.done:
            self._finish(self.current, session)
            if self._stop():
                return True
            self._open(session)
        self._guess(session)
        return False

    def _stop(self) -> bool:
        stop, self.why = self.length.stop(self.state.kept_total)
        return stop

    def _open(self, session: Session) -> RoundDriver:
        round_no = self.state.rounds_done + 1
        # The first round of an invocation carries what came before it: the engine start, the set-up.
        self._startup_s = time.monotonic() - self.length.started if self.length.ran == 0 else 0.0
        self.progress.round_started(round_no)
        self._before = self.teacher.usage.copy()
        self._opened_at = time.perf_counter()
        driver = RoundDriver(self.recipe(self.ctx, round_no), session, self.progress, self.crash)
        self.current = driver
        driver.start()
        # Every opening request is asked in `start`: what it took of the guesses is final now.
        prefetch = session.prefetch
        self._guesses = (prefetch.asked, prefetch.used) if prefetch.round_no == round_no else (0, 0)
        session.forget_guesses()
        self._guessed = None
        return driver

    def _guess(self, session: Session) -> None:
        """In the round's tail, guess the next round's opening under each outcome still open (again
        when they change) and send as much of it as keeps the engine as busy as an opening does."""
        driver = self.current
        assert driver is not None
        if not self.overlap or driver.outstanding >= driver.opening:
            return
        recipe = driver.recipe
        if recipe.reads_pool:
            if driver.opened < driver.opening:
                return  # candidates may still appear
            outcomes = recipe.hoped(MOST_WAITING)
            if outcomes is None:
                return
        else:
            outcomes = [[]]
        likely = outcomes[0]
        elapsed = time.perf_counter() - self._opened_at
        if self.length.predicts_stop(len(likely), self.state.kept_total + len(likely), elapsed):
            return
        signature = [[(t.id, t.instruction) for t in kept] for kept in outcomes]
        if signature != self._guessed:
            self._guessed = signature
            round_no = driver.round_no + 1
            requests = [r for kept in outcomes for r in next_opening(self.recipe, self.ctx, kept, round_no)]
            session.guess(round_no, requests)
        busy = driver.opening if self.capacity is None else min(driver.opening, self.capacity)
        session.send_guesses(busy - session.in_flight)

    def _finish(self, driver: RoundDriver, session: Session) -> None:
        """Close the round, commit it, and tell whoever listens."""
        round_no, state, ctx, run = driver.round_no, self.state, self.ctx, self.run_dir
        self.crash("after_instances", round_no)
        result = driver.recipe.close()
        present = _reconcile_pending(run, state, result, self.pending)
        self.pending = {"tasks": {}, "rejected": {}}
        wall = time.perf_counter() - self._opened_at
        usage = round_usage(driver.usage, self.teacher.usage.since(self._before), wall)
        row = round_row(round_no, result, usage.as_dict(), wall, self._startup_s)
        if self._guesses[0]:
            row["guessed_requests"], row["guesses_used"] = self._guesses
        state.rounds.append(row)
        state.rounds_done = round_no
        state.kept_total += len(result.tasks)
        state.rng_state = rng_to_json(ctx.rng)
        state.teacher = self.teacher.identity
        cache = self.teacher.cache if isinstance(self.teacher, CachedTeacher) else None
        state.cache_entries_counted = len(cache) if cache is not None else None
        _commit(run, result, state, present, round_no, self.crash)
        ctx.pool.extend(result.tasks)
        self.length.round_done(len(result.tasks), row["wall_s"])
        write_summary(
            run, state, ctx.config, resolve_seeds_path(ctx.config.seeds), len(ctx.seeds), self.teacher
        )
        self.progress.round_committed(row, state)
        if self.after_commit is not None:
            self.after_commit(state, self.teacher)
