"""The one teacher interface every stage codes against: a batch of requests in, completions out, in order.

Backends implement `stream`, which hands completions back as they finish; `generate` collects them,
keeps the live `Usage` and drives the caller's progress. Streaming is what lets the cache write each
completion durably the moment it exists, so a killed run loses nothing it already paid for.

The batch is a `RequestQueue` that may grow while it is being answered: `answer` lets the caller's
`deliver` add follow-up requests (say, a classification request for an instruction that just came
back), and backends send them at once, so the engine never waits for the slowest reply of a stage.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.core.errors import UserError
from pipeline.run.schemas import TeacherIdentity
from pipeline.teachers.usage import Usage


class TeacherError(UserError):
    """The teacher could not answer (after bounded retries); what finished before is kept."""


class StructuredOutputsRejected(TeacherError):
    """The server refused a request because of its structured-output field (it does not know it)."""


class DecodingParams(BaseModel):
    """How to decode, the same for every backend: what a config sets per kind of request."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    stop: list[str] = Field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


class Structured(BaseModel):
    """Decoding held to a layout: a regular expression, a grammar (xgrammar's EBNF), or a list of whole
    replies to choose from.

    vLLM's structured outputs (`StructuredOutputsParams` in-process, the `structured_outputs` field of
    a server request). Being part of `SamplingParams`, it is part of a request's cache key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    regex: str | None = None
    grammar: str | None = None
    choice: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Structured:
        if sum(v is not None for v in (self.regex, self.grammar, self.choice)) != 1:
            raise ValueError("structured decoding needs exactly one of `regex`, `grammar` or `choice`")
        if self.choice is not None and not self.choice:
            raise ValueError("`choice` needs at least one reply")
        return self

    def as_vllm(self) -> dict[str, Any]:
        """The fields of vLLM's `StructuredOutputsParams` (and of a server's `structured_outputs`)."""
        out = self.model_dump(exclude_none=True)
        if "choice" in out:
            out["choice"] = list(out["choice"])
        return out


class SamplingParams(DecodingParams):
    """Decoding plus what varies per request: `n`, a `seed` (reproducible sampling), a JSON schema,
    and `structured`, a layout the reply is held to (left out of the dump when unset, so that the
    cache keys of unconstrained requests stay what they were)."""

    n: int = Field(1, ge=1)
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    structured: Structured | None = Field(None, exclude_if=lambda value: value is None)

    @model_validator(mode="after")
    def _one_constraint(self) -> SamplingParams:
        if self.json_schema is not None and self.structured is not None:
            raise ValueError("a request takes a JSON schema or a structured layout, not both")
        return self


class Request(BaseModel):
    """Raw text (completion style, as Self-Instruct prompts a base model) or chat messages, never both."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    params: SamplingParams = Field(default_factory=SamplingParams)

    @model_validator(mode="after")
    def _exactly_one_input(self) -> Request:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a request needs exactly one of `prompt` or `messages`")
        return self

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


class Completion(BaseModel):
    """What came back for one request: `n` texts with their finish reasons and token counts."""

    texts: list[str]
    finish_reasons: list[str]
    prompt_tokens: int
    completion_tokens: int
    backend: str
    model: str
    cached: bool = False
    paid_earlier: bool = Field(False, exclude=True)
    """A cache hit on an answer paid for by an earlier invocation whose round never committed (a
    kill): its tokens count as paid, once (`pipeline.teachers.usage`). Never stored."""


Deliver = Callable[[list[tuple[int, Completion]]], Awaitable[None] | None]
"""Receives `(request index, completion)` pairs as they finish; each index is delivered exactly once.

To a backend that `awaits_delivery` it may return an awaitable: the delivery is done (the answers
are stored, the caller has seen them) only once the backend has awaited it on its own loop.
Otherwise it returns None when done, and may block meanwhile (the cache writes to disk)."""


class RequestQueue:
    """The requests of one `answer` call, numbered in the order they were added; more may be added
    while it runs (from `deliver`, which backends call on their own thread, between sends). A request
    may be cancelled (`cancel`): a backend that `cancels` stops work on it and never delivers it; any
    other answers it as usual."""

    def __init__(self, requests: Iterable[Request] = ()):
        self._requests: list[Request] = []
        self._taken = 0
        self.cancelled: set[int] = set()
        self._news: list[int] = []  # cancelled since the backend last looked
        self.add(requests)

    def __len__(self) -> int:
        return len(self._requests)

    def add(self, requests: Iterable[Request]) -> range:
        """Append requests; return their indices (the ones `deliver` will name)."""
        start = len(self._requests)
        self._requests.extend(requests)
        return range(start, len(self._requests))

    def take(self) -> list[tuple[int, Request]]:
        """The requests added since the last `take`, with their indices: what a backend sends next
        (a request cancelled before it was taken is not handed out)."""
        start, self._taken = self._taken, len(self._requests)
        new = enumerate(self._requests[start:], start=start)
        return [(i, r) for i, r in new if i not in self.cancelled]

    def cancel(self, indices: Iterable[int]) -> None:
        """Nobody wants these answers any more."""
        fresh = [i for i in indices if i not in self.cancelled]
        self.cancelled.update(fresh)
        self._news.extend(fresh)

    def take_cancelled(self) -> list[int]:
        """Indices cancelled since the last call (for a backend that stops work on them)."""
        news, self._news = self._news, []
        return news


PROBE_PROMPT = "Name a colour."
PROBE_REPLY = "structured outputs 7"
PROBE_GRAMMAR = f'root ::= "{PROBE_REPLY}"\n'
"""The test request of `Teacher.probe_structured`: a grammar (the kind of layout a run sends) whose
only reply is PROBE_REPLY."""


class Teacher(ABC):
    """A model that answers batches of requests. Use `generate`; subclasses implement `stream`.

    `structured_outputs` says whether requests may carry a `Structured` layout: True (the backend
    honours it), False (it cannot), None (not known until a server answers one).
    """

    structured_outputs: bool | None = None

    cancels: bool = False
    """True for backends that stop work on a cancelled request (`RequestQueue.cancel`) and never
    deliver it; the others answer it anyway."""

    capacity: int | None = None
    """The most requests the backend works on at once (an engine's sequences per step, an HTTP
    teacher's open requests), when known: requests beyond it wait. Guessed requests of the next round
    are only sent into room below it (`pipeline.generate.overlap`)."""

    awaits_delivery: bool = False
    """True for backends that run an event loop and await what `deliver` returns (never blocking in it)."""

    def __init__(self, identity: TeacherIdentity, usage: Usage | None = None):
        self._identity = identity
        self._usage = usage if usage is not None else Usage()

    @property
    def identity(self) -> TeacherIdentity:
        return self._identity

    @property
    def usage(self) -> Usage:
        return self._usage

    def generate(
        self, requests: Sequence[Request], on_done: Callable[[int], None] | None = None
    ) -> list[Completion]:
        """Answer every request; the result is in request order.

        `on_done(k)` is called each time `k` more requests have finished (so it plugs straight into
        `progress.advance(task, k)`); `usage` is already up to date when it runs.
        """
        requests = list(requests)
        if not requests:
            return []
        results: list[Completion | None] = [None] * len(requests)

        def deliver(batch: list[tuple[int, Completion]]) -> None:
            for index, completion in batch:
                results[index] = completion
            if on_done is not None:
                on_done(len(batch))

        self.answer(RequestQueue(requests), deliver)
        return [c for c in results if c is not None]

    def answer(self, queue: RequestQueue, deliver: Deliver) -> None:
        """Answer every request in `queue`, also those added to it while this runs (typically by
        `deliver` itself); `usage` is up to date whenever `deliver` runs. Returns when all are answered."""
        delivered: set[int] = set()

        def record(batch: list[tuple[int, Completion]]) -> None:
            for index, completion in batch:
                if index in delivered:
                    raise RuntimeError(f"{type(self).__name__} delivered request {index} twice")
                delivered.add(index)
                self._usage.record(completion)
            if batch:
                deliver(batch)

        started = time.perf_counter()
        try:
            self.stream(queue, record)
        finally:
            self._usage.seconds += time.perf_counter() - started
        missing = sorted(set(range(len(queue))) - delivered - queue.cancelled)
        if missing:
            raise RuntimeError(f"{type(self).__name__} returned no completion for requests {missing[:10]}")

    @abstractmethod
    def stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        """Answer the requests `queue.take()` hands out, calling `deliver` with finished completions
        as soon as they exist; take again after each delivery (it may have added requests) and
        return only when nothing is left to take and everything taken was delivered."""

    def probe_structured(self, *, chat: bool) -> str | None:
        """None if this teacher holds a reply to a requested layout, else why not.

        Asks one small request (never cached) that only a server honouring vLLM's structured outputs
        answers as asked: the reply must be exactly the one string its grammar allows, which the prompt
        does not suggest. It is a grammar because the run's requests are (`Structured(grammar=...)`): a
        vLLM server whose structured-outputs backend takes choices and regexes but no grammars
        (outlines, lm-format-enforcer) must fail it. A server that refuses the field or the grammar
        says so (`StructuredOutputsRejected`).
        """
        if self.structured_outputs is not None:
            return None if self.structured_outputs else "the backend does not support structured outputs"
        params = SamplingParams(temperature=0.0, max_tokens=16, structured=Structured(grammar=PROBE_GRAMMAR))
        request = (
            Request(messages=[{"role": "user", "content": PROBE_PROMPT}], params=params)
            if chat
            else Request(prompt=PROBE_PROMPT, params=params)
        )
        try:
            text = self.generate([request])[0].texts[0]
        except StructuredOutputsRejected as exc:
            return f"the teacher refused it ({exc})"
        if text == PROBE_REPLY:
            return None
        return f"the teacher ignored it (asked for exactly {PROBE_REPLY!r}, it answered {text[:80]!r})"

    def close(self) -> None:  # noqa: B027 - optional hook: most teachers hold nothing to release
        """Release the engine or connections; the teacher is unusable afterwards."""
