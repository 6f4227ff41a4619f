"""Asking the judge a batch without letting one bad request stop the rest, nor a dead judge stall the run.

A teacher stops a batch at the first request that fails for good (after its retries). For a judge
that is wrong: one task the server keeps refusing must not leave the others unjudged. So when a
batch fails, the requests it did not answer are asked again one at a time; the answers the batch
delivered are kept from it (never asked again, with or without a cache), and only the failing
requests end up as failures.

A judge that is gone must not cost the full retry policy for every task either. The batch already
spent it on this server, so the one-at-a-time requests that follow get at most `FALLBACK_RETRIES`
retries each (`fewer_retries`). A `Breaker` counts
requests that failed in a row because the server did not answer (connection errors, timeouts, 5xx
after the retries; a 4xx refusal of one request is that request's problem, not the server's), and
after a batch fails it asks the pre-flight check whether the server is still there at all. When
either says the judge is gone, no further request is sent (`JudgeUnavailable`); what was answered
is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline.judge.parse import Unusable
from pipeline.teachers.base import Completion, Request, RequestQueue, Teacher, TeacherError
from pipeline.teachers.config import TeacherConfig

FAILURE_CHARS = 300
FALLBACK_RETRIES = 1
Reply = Completion | Unusable


class JudgeUnavailable(TeacherError):
    """The judge stopped answering: no more requests are sent to it in this invocation."""


def server_failed(exc: BaseException) -> bool:
    """True unless the server answered the request with a 4xx refusal (then the request is at fault)."""
    import openai

    cause = exc.__cause__
    if isinstance(cause, openai.APIStatusError):
        return cause.status_code >= 500 or cause.status_code in (408, 429)
    return True


def short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:FAILURE_CHARS]


@dataclass
class Breaker:
    """Opens after `limit` requests in a row fail on the server's side, or when `check` says it is gone.

    `check` is the pre-flight probe (`pipeline.teachers.preflight.unreachable_reason`): None when the
    server answers, else why not. Shared by every batch of one invocation, so failures add up across
    batches.
    """

    limit: int
    check: Callable[[], str | None] | None = None
    in_a_row: int = 0
    why: str | None = None

    @property
    def open(self) -> bool:
        return self.why is not None

    def success(self) -> None:
        self.in_a_row = 0

    def failure(self, exc: BaseException) -> None:
        if not server_failed(exc):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        if self.in_a_row >= self.limit:
            self.why = f"{self.in_a_row} requests in a row failed (last: {short(exc)})"

    def recheck(self) -> None:
        """After a failed batch: is the server still there? (cheap, bounded by the probe's timeout)"""
        if self.check is not None and not self.open:
            gone = self.check()
            if gone is not None:
                self.why = f"it stopped answering: {gone}"

    def error(self, left: int) -> JudgeUnavailable:
        return JudgeUnavailable(
            f"stopped asking the judge: {self.why}; {left} task(s) left unjudged "
            "(what was answered is kept; rerun `selfinstruct judge` once the server is back)"
        )


@contextlib.contextmanager
def fewer_retries(teacher: Teacher, retries: int) -> Iterator[None]:
    """While the block runs, an HTTP teacher (or the one a cache wraps) retries a request at most
    `retries` times; other teachers are left as they are."""
    inner = getattr(teacher, "inner", teacher)
    config = getattr(inner, "config", None)
    if not isinstance(config, TeacherConfig) or config.max_retries <= retries:
        yield
        return
    inner.config = config.model_copy(update={"max_retries": retries})
    try:
        yield
    finally:
        inner.config = config


def ask_each(
    teacher: Teacher,
    requests: list[Request],
    on_done: Callable[[int], None] | None = None,
    breaker: Breaker | None = None,
) -> list[Reply | None]:
    """A completion for each request, `Unusable("request_failed", why)` for those that kept failing,
    and None for those never asked because `breaker` opened."""
    breaker = breaker or Breaker(limit=len(requests) + 1)
    results: list[Reply | None] = [None] * len(requests)
    if breaker.open:
        return results

    def deliver(batch: list[tuple[int, Completion]]) -> None:
        for index, completion in batch:
            results[index] = completion
        if on_done is not None:
            on_done(len(batch))

    try:
        teacher.answer(RequestQueue(requests), deliver)
    except TeacherError:
        breaker.recheck()  # the failing request itself is counted when it is asked again below
    else:
        breaker.success()
        return results
    with fewer_retries(teacher, FALLBACK_RETRIES):
        for index, request in enumerate(requests):
            if results[index] is not None:
                continue
            if breaker.open:
                break
            try:
                results[index] = teacher.generate([request])[0]
                breaker.success()
            except TeacherError as exc:
                results[index] = Unusable("request_failed", short(exc))
                breaker.failure(exc)
            if on_done is not None:
                on_done(1)
    return results
