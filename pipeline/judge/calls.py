"""Asking the judge a batch without letting one bad request stop the rest.

A teacher stops a batch at the first request that fails for good (after its retries). For a judge
that is wrong: one task the server keeps refusing must not leave the others unjudged. So when a
batch fails, each of its requests is asked again on its own; the ones already answered come back
from the request cache for free, and only the failing ones end up as failures. (Requests that were
in flight when the batch stopped were cancelled before their answers arrived, as on a kill; they are
asked again.)
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.judge.parse import Unusable
from pipeline.teachers.base import Completion, Request, Teacher, TeacherError

FAILURE_CHARS = 300


def ask_each(
    teacher: Teacher, requests: list[Request], on_done: Callable[[int], None] | None = None
) -> list[Completion | Unusable]:
    """A completion for each request, or `Unusable("request_failed", why)` for those that kept failing."""
    done = 0

    def count(k: int) -> None:
        nonlocal done
        done += k
        if on_done is not None:
            on_done(k)

    try:
        return list(teacher.generate(requests, on_done=count))
    except TeacherError:
        pass
    out: list[Completion | Unusable] = []
    for request in requests:
        try:
            out.append(teacher.generate([request])[0])
        except TeacherError as exc:
            out.append(Unusable("request_failed", " ".join(str(exc).split())[:FAILURE_CHARS]))
        if done < len(requests):
            count(1)
    return out
