"""Rounds that overlap: the next round's opening is asked while this round's last replies are out.

Round r+1 draws its prompts from the run's RNG, whose state is fixed once round r's opening is drawn,
and from the pool, which round r's kept tasks extend. In round r's tail, once every candidate of the
round exists, `Recipe.hoped` guesses its kept tasks (every waiting candidate assumed to pass; the
final offer replayed on a scratch index) and round r+1's opening is drawn on copies of the RNG and
the pool. Those requests go to the engine while it would otherwise run half empty. When round r
closes, round r+1 draws its real opening; a real request identical to a guessed one (same prompt,
parameters and seed) takes that answer instead of being asked again, and a guessed request the
real round does not ask is simply never used. So decisions, ids and records never depend on a
guess: a run is the same with overlap and without, and a wrong guess costs only teacher time.

Written here because no library schedules dependent rounds of LLM requests ahead of their inputs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pipeline.generate.recipe import Recipe, RunContext
from pipeline.quality.config import DedupConfig
from pipeline.quality.dedup import RougeIndex
from pipeline.run.schemas import MachineTask
from pipeline.teachers.base import Completion, Request

Handler = Callable[[Completion], None]


def would_keep(index: RougeIndex, texts: list[str]) -> list[bool]:
    """Which of `texts` the final offer keeps, among themselves (each checked against the earlier kept
    ones), given that each already passed the round's novelty check against `index`, which nothing
    changes before `close`. The same pruned exact decisions as the offer itself, on a scratch index."""
    config = DedupConfig(
        threshold=index.config.threshold, tokenizer=index.config.tokenizer, top_k=0, similarity_stats=False
    )
    return [verdict.kept for verdict in RougeIndex(config).offer_many(texts)]


def request_key(request: Request) -> str:
    """Two requests with this key are the same question (prompt, parameters, seed): one answer serves both."""
    return request.model_dump_json()


def next_opening(
    recipe_class: type[Recipe], ctx: RunContext, hoped: list[MachineTask], round_no: int
) -> list[Request]:
    """The requests round `round_no` would open with if the pool grew by `hoped`: drawn on copies of
    the run's RNG and pool, so the run itself is untouched."""
    rng = random.Random()
    rng.setstate(ctx.rng.getstate())
    guess = replace(ctx, pool=[*ctx.pool, *hoped], rng=rng)
    return [ask.request for ask in recipe_class(guess, round_no).opening()]


@dataclass
class Slot:
    """A guessed request: its place in the session's queue (None until sent), its answer once in, and
    the real ask waiting for it once the real round asked the same thing."""

    request: Request
    index: int | None = None
    completion: Completion | None = None
    waiter: Handler | None = None


@dataclass
class Prefetch:
    """The guessed requests of the next round, by `request_key`: the current guess, in the order to
    send it, and every slot made for that round (a guess dropped and made again, or a real request
    matching an earlier guess, finds the request already asked); counts what was asked and used."""

    round_no: int = 0
    slots: dict[str, Slot] = field(default_factory=dict)
    known: dict[str, Slot] = field(default_factory=dict)
    asked: int = 0
    used: int = 0

    def guess(self, round_no: int, requests: list[Request]) -> list[Slot]:
        """Replace the guess; a request guessed before keeps its slot (its answer, its place in the
        queue). Returns the slots asked and still out that the new guess no longer holds."""
        if round_no != self.round_no:
            self.slots, self.known, self.asked, self.used, self.round_no = {}, {}, 0, 0, round_no
        self.slots = {}
        for request in requests:
            key = request_key(request)
            self.slots[key] = self.known.setdefault(key, Slot(request))
        return [
            s
            for k, s in self.known.items()
            if k not in self.slots and s.index is not None and s.completion is None
        ]

    def unsent(self) -> list[Slot]:
        return [slot for slot in self.slots.values() if slot.index is None]

    def take(self, round_no: int, request: Request) -> Slot | None:
        """The guessed slot a real request of `round_no` can use (asked already), or None."""
        if round_no != self.round_no:
            return None
        key = request_key(request)
        self.slots.pop(key, None)
        slot = self.known.pop(key, None)
        if slot is None or slot.index is None:
            return None  # not guessed, or guessed but not sent: the real round asks it itself
        self.used += 1
        return slot

    def drop(self, slots: list[Slot]) -> None:
        """Forget slots whose requests were cancelled: guessed again, they are asked again."""
        gone = {id(s) for s in slots}
        self.known = {k: s for k, s in self.known.items() if id(s) not in gone}

    def forget(self) -> list[Slot]:
        """The real round has asked all it will: returns the guesses still out, which nobody will use."""
        out = [s for s in self.known.values() if s.index is not None and s.completion is None]
        self.slots, self.known = {}, {}
        return out
