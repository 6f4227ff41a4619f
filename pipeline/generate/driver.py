"""One round through the teacher: a recipe's asks go to the engine the moment they exist.

The opening asks go first; each reply's `then` runs as soon as that reply is in (parse, filters,
novelty check) and its follow-ups join the requests still running, so the engine never waits for
the slowest reply of a stage. When every ask is answered, `Recipe.close` makes the decisions that
depend on order. The round's crash points are called here, in this order, at most once each:

    round_start      prompts built, nothing asked yet
    mid_teacher      about half of the opening replies are delivered (and so cached)
    after_teacher    every opening reply is delivered
    after_instances  every request of the round is answered, nothing decided or written yet
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.generate.progress import ProgressListener
from pipeline.generate.recipe import Ask, Recipe, RoundResult
from pipeline.teachers.base import Completion, RequestQueue, Teacher

CrashHook = Callable[[str, int], None]
"""Called with (point, round) at each named point of a round; test harnesses end the process there
(`os._exit`, like a kill) to prove that resume is exact. Runs pass None: nothing happens."""


def no_crash(point: str, round_no: int) -> None:
    """The hook of a normal run."""


def drive_round(
    recipe: Recipe, teacher: Teacher, progress: ProgressListener, crash: CrashHook = no_crash
) -> RoundResult:
    """Answer the recipe's asks and their follow-ups as one growing batch, then close the round."""
    round_no = recipe.round_no
    queue = RequestQueue()
    asks: list[Ask] = []

    def submit(new: list[Ask]) -> None:
        if new:
            asks.extend(new)
            queue.add(a.request for a in new)
            progress.requests_added(len(new))

    submit(recipe.opening())
    opening = len(asks)
    half = max(1, opening // 2)
    opened = 0
    crash("round_start", round_no)

    def deliver(batch: list[tuple[int, Completion]]) -> None:
        nonlocal opened
        before = opened
        for index, completion in batch:
            submit(asks[index].then(completion))
            if index < opening:
                opened += 1
        progress.requests_done(len(batch))
        if teacher.usage.replicas:
            progress.replicas(teacher.usage.replicas)
        if before < half <= opened:
            crash("mid_teacher", round_no)
        if before < opening == opened:
            crash("after_teacher", round_no)

    teacher.answer(queue, deliver)
    crash("after_instances", round_no)
    return recipe.close()
