"""Rounds through the teacher: a recipe's asks go to the engine the moment they exist.

A `Session` is one stream of requests (one `Teacher.answer` call) that may carry several rounds: each
answer goes back to whoever asked for it, and guessed requests of the next round
(`pipeline.generate.overlap`) ride along. A `RoundDriver` runs one round in it: the opening asks go
first; each reply's `then` runs as soon as that reply is in (parse, filters, novelty check) and its
follow-ups join the requests still running, so the engine never waits for the slowest reply of a
stage. When every ask is answered, `Recipe.close` makes the decisions that depend on order. The
round's crash points are called here, in this order, at most once each (the last by the caller):

    round_start      prompts built, nothing asked yet
    mid_teacher      about half of the opening replies are delivered (and so cached)
    after_teacher    every opening reply is delivered
    after_instances  every request of the round is answered, nothing decided or written yet
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from pipeline.generate.overlap import Handler, Prefetch, Slot
from pipeline.generate.progress import ProgressListener
from pipeline.generate.recipe import Ask, Recipe
from pipeline.teachers.base import Completion, Request, RequestQueue
from pipeline.teachers.usage import Usage

CrashHook = Callable[[str, int], None]
"""Called with (point, round) at each named point of a round; test harnesses end the process there
(`os._exit`, like a kill) to prove that resume is exact. Runs pass None: nothing happens."""


def no_crash(point: str, round_no: int) -> None:
    """The hook of a normal run."""


class Session:
    """The requests of one `Teacher.answer` call, each answer routed to the handler that asked for it."""

    def __init__(self, cancels: bool = False) -> None:
        self.queue = RequestQueue()
        self.routes: dict[int, Handler] = {}
        self.prefetch = Prefetch()
        self.cancels = cancels  # the teacher stops work on a cancelled request (`Teacher.cancels`)

    @property
    def in_flight(self) -> int:
        """Requests asked and not yet answered, guessed ones included."""
        return len(self.routes)

    def ask(self, round_no: int, request: Request, handler: Handler) -> Completion | None:
        """Send `request` for `handler`, or hand it a guessed request's answer: returned when already in
        (the caller runs the handler), else delivered to the handler when it arrives."""
        slot = self.prefetch.take(round_no, request)
        if slot is None:
            self.routes[self.queue.add([request]).start] = handler
            return None
        if slot.completion is not None:
            return slot.completion
        slot.waiter = handler
        return None

    def guess(self, round_no: int, requests: list[Request]) -> None:
        """Make `requests` the guess of round `round_no`'s opening; guesses it drops are cancelled."""
        self._cancel(self.prefetch.guess(round_no, requests))

    def forget_guesses(self) -> None:
        """The real round took what it could: cancel the guesses still out."""
        self._cancel(self.prefetch.forget())

    def _cancel(self, slots: list[Slot]) -> None:
        if not self.cancels or not slots:
            return
        self.queue.cancel(s.index for s in slots if s.index is not None)
        for slot in slots:
            self.routes.pop(slot.index, None)
            slot.index = None
        self.prefetch.drop(slots)

    def send_guesses(self, room: int) -> None:
        """Send up to `room` guessed requests not sent yet, in the order they were guessed."""
        for slot in self.prefetch.unsent()[: max(0, room)]:
            slot.index = self.queue.add([slot.request]).start
            self.routes[slot.index] = partial(self._guessed, slot)
            self.prefetch.asked += 1

    @staticmethod
    def _guessed(slot: Slot, completion: Completion) -> None:
        if slot.waiter is not None:
            slot.waiter(completion)
        else:
            slot.completion = completion

    def deliver(self, batch: list[tuple[int, Completion]]) -> None:
        for index, completion in batch:
            handler = self.routes.pop(index, None)
            if handler is not None:  # None: cancelled, answered all the same by a backend that cannot stop
                handler(completion)


class RoundDriver:
    """One round in a session: asks, follow-ups as replies arrive, what the round used of the teacher."""

    def __init__(self, recipe: Recipe, session: Session, progress: ProgressListener, crash: CrashHook):
        self.recipe = recipe
        self.round_no = recipe.round_no
        self.session = session
        self.progress = progress
        self.crash = crash
        self.usage = Usage()  # the answers this round used, a guessed one included once taken
        self.outstanding = 0
        self.opening = 0
        self.opened = 0
        self._unreported = 0

    @property
    def done(self) -> bool:
        return self.outstanding == 0

    def start(self) -> None:
        asks = self.recipe.opening()
        self.opening = len(asks)
        ready = self._ask(asks, opening=True)
        self.crash("round_start", self.round_no)
        for handler, completion in ready:
            handler(completion)

    def report(self) -> None:
        """Tell the progress listener what was answered since the last report (once per delivery)."""
        if self._unreported:
            self.progress.requests_done(self._unreported)
            self._unreported = 0

    def _ask(self, asks: list[Ask], opening: bool) -> list[tuple[Handler, Completion]]:
        """Send asks (all counted first); return those a guessed answer already serves, to run next."""
        self.outstanding += len(asks)
        if asks:
            self.progress.requests_added(len(asks))
        ready = []
        for ask in asks:
            handler = partial(self._answered, ask, opening)
            got = self.session.ask(self.round_no, ask.request, handler)
            if got is not None:
                ready.append((handler, got))
        return ready

    def _answered(self, ask: Ask, opening: bool, completion: Completion) -> None:
        self.usage.record(completion)
        ready = self._ask(ask.then(completion), opening=False)
        self.outstanding -= 1
        self._unreported += 1
        if opening:
            self.opened += 1
            if self.opened == max(1, self.opening // 2):
                self.crash("mid_teacher", self.round_no)
            if self.opened == self.opening:
                self.crash("after_teacher", self.round_no)
        for handler, got in ready:
            handler(got)
