"""Any OpenAI-compatible server as the teacher: vLLM's own server, several replicas, or a hosted API.

Requests run concurrently on one event loop (the wire path, `wire.py`: raw HTTP, one JSON decode, the
`openai` SDK's own exception types), spread over the base URLs by `ReplicaRouter`:
least in-flight among healthy replicas, failing ones benched and their retries sent elsewhere. Each
replica has its own concurrency limit, at most `concurrency`, found by AIMD (`aimd.py`): it grows
while answers come back and shrinks on 429 / 503 / timeouts; a request waits while every replica that
is up is at its limit. `usage.replicas` follows each replica's requests, failures and limit live. Delivering an answer may wait on the cache's disk write: it is awaited
(`awaits_delivery`), never blocking the loop, and a request keeps its slot until it is delivered. The wire path never retries on its own, so that one policy, ours
(`retry.py`), decides: bounded, with backoff and jitter, honouring Retry-After, and fitting
`max_tokens` to the context on a context-length refusal. When a request fails for good, no new call
starts, the calls already open are let finish and their answers delivered (and so cached), and then
the run stops with a `TeacherError`.
Requests added to the queue while it runs are launched as soon as the delivery that added them returns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import ssl
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from pipeline.core.errors import UserError
from pipeline.teachers.base import (
    Completion,
    Deliver,
    Request,
    RequestQueue,
    SamplingParams,
    StructuredOutputsRejected,
    Teacher,
    TeacherError,
)
from pipeline.teachers.config import TeacherConfig
from pipeline.teachers.replicas import ReplicaRouter, ReplicaState
from pipeline.teachers.retry import (
    Action,
    classify,
    error_text,
    fitted_max_tokens,
    is_full_refusal,
    is_overload,
    parse_context_overflow,
    retry_wait,
)
from pipeline.teachers.runtime import local_identity, served_name
from pipeline.teachers.usage import Usage
from pipeline.teachers.wire import CHAT_COMPLETIONS, COMPLETIONS, WireClient, parse_completion, request_body

BACKEND = "openai"
PLACEHOLDER_KEY = "EMPTY"
SLOT_WAIT_S = 0.5
"""Longest wait for a free slot before looking again (a stop or a bench ending is noticed by then)."""
STRUCTURED_FIELD = "structured_outputs"  # vLLM's OpenAI server reads the layout from this body field
# How servers word "no such field" (as opposed to a known field with a bad value, which stays an error).
UNKNOWN_FIELD_MARKERS = ("unrecognized", "unknown", "extra", "not permitted", "unexpected", "not allowed")
# How vLLM words "this structured-outputs backend cannot do that kind of layout" (outlines and
# lm-format-enforcer: "... structured outputs backend does not support grammar specifications").
BACKEND_REFUSAL_MARKERS = ("structured outputs backend does not support", "does not support grammar")


@dataclass(frozen=True)
class Failure:
    """A call that did not yield a completion, and what the retry policy makes of it."""

    error: Exception
    action: Action
    retry_after: float | None


def request_kwargs(request: Request, api_model: str, max_tokens: int) -> dict[str, Any]:
    """The body of one completions/chat call (the JSON schema goes where vLLM and OpenAI read it)."""
    params: SamplingParams = request.params
    kwargs: dict[str, Any] = {
        "model": api_model,
        "n": params.n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": max_tokens,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.seed is not None:
        kwargs["seed"] = params.seed
    if params.json_schema is not None:
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": params.json_schema},
        }
        if request.is_chat:
            kwargs["response_format"] = response_format
        else:
            kwargs["extra_body"] = {"response_format": response_format}
    if params.structured is not None:
        kwargs.setdefault("extra_body", {})[STRUCTURED_FIELD] = params.structured.as_vllm()
    if request.is_chat:
        kwargs["messages"] = request.messages
    else:
        kwargs["prompt"] = request.prompt
    return kwargs


class OpenAITeacher(Teacher):
    awaits_delivery = True

    def __init__(self, config: TeacherConfig, rng: random.Random | None = None):
        if not config.base_urls:
            raise UserError(
                "teacher.backend is 'openai' but no base_urls are set (e.g. http://127.0.0.1:8000/v1)"
            )
        usage = Usage(
            price_per_1k_prompt_tokens=config.price_per_1k_prompt_tokens,
            price_per_1k_completion_tokens=config.price_per_1k_completion_tokens,
        )
        super().__init__(local_identity(BACKEND, config.model), usage)
        self.config = config
        self.api_model = served_name(config.model)
        self.api_key = os.environ.get(config.api_key_env) or PLACEHOLDER_KEY
        # Kept across batches: a replica benched in one round stays benched into the next.
        self.router = ReplicaRouter(
            config.base_urls,
            bench_base_s=config.retry_base_s,
            bench_max_s=config.retry_max_s,
            max_concurrency=config.concurrency,
            adaptive=config.adaptive_concurrency,
        )
        self.usage.replicas = self.router.counts()
        self._rng = rng or random.Random()
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._tls: ssl.SSLContext | None = None
        # One event loop and one connection pool per replica for the teacher's life: the connections
        # opened in one batch (round) serve the next, instead of a new handshake per replica and round.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[str, WireClient] = {}
        self._finalizer: weakref.finalize | None = None
        self._failed_in_a_row = 0  # attempts, of any requests, that failed on the server's side

    @property
    def capacity(self) -> int | None:  # type: ignore[override]
        """Every replica at its concurrency limit: the most requests this client keeps open."""
        return self.config.concurrency * len(self.router.replicas)

    def stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._stream(queue, deliver))

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # also run when the teacher is garbage-collected, or at exit, if never closed
        _shutdown(self._loop, [])
        self._clients = {}

    def _wire_clients(self) -> dict[str, WireClient]:
        """A connection pool per replica (made on the teacher's loop), each keeping a connection alive
        for every request it may have open; the wire path (`wire.py`) sends our body, reads the raw reply."""
        if not self._clients:
            if self._tls is None:
                self._tls = tls_context()
            per_replica = self.config.concurrency
            self._clients = {
                replica.url: WireClient(
                    replica.url, self.api_key, self.config.timeout_s, per_replica, self._tls
                )
                for replica in self.router.replicas
            }
            self._finalizer = weakref.finalize(self, _shutdown, self._loop, list(self._clients.values()))
        return self._clients

    async def _stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        clients = self._wire_clients()
        per_replica = self.config.concurrency
        # Every replica at its maximum: the most requests that can be open (the limits do the rest).
        gate = asyncio.Semaphore(per_replica * len(self.router.replicas))
        self._waiting.clear()
        stop = asyncio.Event()
        errors: list[Exception] = []
        running: set[asyncio.Task] = set()
        idle = asyncio.Event()  # set when nothing is running (one wake-up, not a wait over every task)

        def ended(task: asyncio.Task) -> None:
            running.discard(task)
            if not running:
                idle.set()

        def launch() -> None:
            for index, request in queue.take():
                task = asyncio.create_task(one(index, request))
                running.add(task)
                task.add_done_callback(ended)

        async def one(index: int, request: Request) -> None:
            try:
                async with gate:  # held until the answer is delivered: nothing new starts before it is safe
                    if stop.is_set():
                        return
                    completion = await self._answer(request, clients, stop)
                    if completion is not None:
                        delivered = deliver([(index, completion)])
                        if delivered is not None:
                            await delivered
            except Exception as exc:  # a request failed for good, or `deliver` could not store an answer
                errors.append(exc)
                stop.set()
                return
            launch()  # what `deliver` added starts at once

        launch()
        try:
            if running:
                await idle.wait()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            self.usage.replicas = self.router.counts()
        if errors:
            raise errors[0]

    async def _answer(
        self, request: Request, clients: dict[str, Any], stop: asyncio.Event
    ) -> Completion | None:
        """One request through the retry policy; None when the batch stopped before it was answered."""
        max_tokens = request.params.max_tokens
        attempt = 0
        backoff = 0.0
        failed_on: str | None = None
        while True:
            if stop.is_set():
                return None
            route = self.router.route(time.monotonic(), avoid=failed_on)
            replica = route.replica
            if replica is None:  # every replica that is up is at its limit: wait for a request to end
                await self._wait_for_slot(stop)
                continue
            # A retry that another healthy replica can take goes now; on the same one it backs off.
            owed = 0.0 if failed_on is not None and replica.url != failed_on else backoff
            wait = max(owed, route.wait_s)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                backoff = 0.0
                continue
            outcome = await self._attempt(request, replica, clients[replica.url], max_tokens)
            if isinstance(outcome, Completion):
                return outcome
            where = f"{replica.url} ({describe(outcome.error)})"
            if request.params.structured is not None and rejects_structured(outcome.error):
                raise StructuredOutputsRejected(
                    f"the teacher does not accept this `{STRUCTURED_FIELD}` layout: {where}"
                ) from outcome.error
            if outcome.action == "fatal":
                raise TeacherError(
                    f"teacher request failed and cannot be retried: {where}"
                ) from outcome.error
            limit = self.config.max_failed_attempts_in_a_row
            if limit is not None and outcome.action == "retry" and self._failed_in_a_row >= limit:
                raise TeacherError(
                    f"{self._failed_in_a_row} attempts in a row failed on the server's side (last: {where}); "
                    "stopped asking it"
                ) from outcome.error
            fitted = None
            if outcome.action == "shrink":
                fitted = fitted_max_tokens(max_tokens, parse_context_overflow(error_text(outcome.error)))
                if fitted is None or max_tokens <= 1:
                    raise TeacherError(
                        f"the prompt is longer than the model's context: {where}"
                    ) from outcome.error
            if attempt >= self.config.max_retries:
                raise TeacherError(
                    f"teacher request failed after {attempt + 1} attempts: {where}; "
                    "everything finished so far is cached, rerun the same command to resume"
                ) from outcome.error
            attempt += 1
            self.usage.retries += 1
            if fitted is not None:
                max_tokens = fitted
                continue
            failed_on = replica.url
            backoff = retry_wait(
                attempt - 1, self.config.retry_base_s, self.config.retry_max_s, outcome.retry_after, self._rng
            )

    async def _wait_for_slot(self, stop: asyncio.Event) -> None:
        """Until a request ends somewhere (a slot frees, or a replica's verdict changes the route).

        Waiters queue in order and each ending wakes one (waking all of them for every answer would
        cost work in proportion to the queue for each answer). The event loop is one thread and nothing
        awaits between the router's answer and joining the queue, so no ending slips in between; the
        timeout bounds how long a stop, a bench ending or a wake-up that went to a waiter who could not
        use it goes unnoticed.
        """
        if stop.is_set():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, SLOT_WAIT_S)

    def _ended(self) -> None:
        """A request ended: update the live counts and wake as many waiters as there are free slots
        now (one at least: a verdict may have changed the route), longest waiting first."""
        self.usage.replicas = self.router.counts()
        wake = max(1, self.router.free_slots(time.monotonic()))
        while self._waiting and wake:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                wake -= 1

    async def _attempt(
        self, request: Request, replica: ReplicaState, client: Any, max_tokens: int
    ) -> Completion | Failure:
        """One call on one replica, the router told how it went; a failure is returned, not raised."""
        epoch = self.router.sent(replica)
        try:
            kwargs = request_kwargs(request, self.api_model, max_tokens)
            response = await self._call(client, kwargs, request.is_chat)
            completion = self._completion(response, request)
        except asyncio.CancelledError:
            self.router.abandoned(replica)
            self._ended()
            raise
        except Exception as exc:
            action, retry_after = classify(exc)
            if action != "retry":  # the server answered: it is the request that was refused
                self.router.answered(replica, healthy=False)
            elif is_full_refusal(exc) and retry_after is None:  # up, but full: fewer at once, no bench
                self.router.refused(replica, epoch)
            else:
                overload = epoch if is_overload(exc) else None
                self.router.failed(replica, time.monotonic(), retry_after, overload_epoch=overload)
            if action == "retry":
                self._failed_in_a_row += 1
            self._ended()
            return Failure(exc, action, retry_after)
        self._failed_in_a_row = 0
        self.router.answered(replica)
        self._ended()
        return completion

    @staticmethod
    async def _call(client: WireClient, kwargs: dict[str, Any], chat: bool) -> bytes:
        return await client.post(CHAT_COMPLETIONS if chat else COMPLETIONS, request_body(kwargs))

    def _completion(self, response: bytes, request: Request) -> Completion:
        return parse_completion(response, request.params.n, request.is_chat, self.identity.model, BACKEND)


def _shutdown(loop: asyncio.AbstractEventLoop | None, clients: list[WireClient]) -> None:
    """Close the connection pools and the teacher's loop (from `close`, at garbage collection or exit).

    Garbage collection may run this while another loop runs on this thread (another teacher's): ours
    then closes on a thread of its own, where no loop is running."""
    if loop is None or loop.is_closed() or loop.is_running():
        return

    def run() -> None:
        for client in clients:
            loop.run_until_complete(client.close())
        loop.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run()
        return
    closer = threading.Thread(target=run, name="teacher-close")
    closer.start()
    closer.join()


def tls_context() -> ssl.SSLContext:
    """One TLS context for every replica's client: loading the CA bundle takes ~0.1 s, which each new
    client would otherwise pay again for every batch. The CA bundle the SDK's own client uses (certifi),
    unless SSL_CERT_FILE names another."""
    try:
        import certifi

        cafile = os.environ.get("SSL_CERT_FILE") or certifi.where()
    except ImportError:
        cafile = os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=cafile)


def rejects_structured(exc: BaseException) -> bool:
    """A 4xx refusal of the layout itself: a server that does not know the structured-output field
    (OpenAI answers "Unrecognized request argument supplied: structured_outputs", pydantic servers
    "Extra inputs are not permitted" with the field in `loc`), or a vLLM server whose structured-outputs
    backend cannot do grammars ("Outlines structured outputs backend does not support grammar
    specifications"). A grammar vLLM could not parse is not one: that is an error to fix."""
    import openai

    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
        return False
    text = f"{exc.message} {exc.body}".lower()
    if any(m in text for m in BACKEND_REFUSAL_MARKERS):
        return True
    return STRUCTURED_FIELD in text and any(m in text for m in UNKNOWN_FIELD_MARKERS)


def describe(exc: BaseException) -> str:
    """A short, human description of what went wrong on the wire."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {str(exc.message)[:300]}"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return f"connection failed: {type(cause).__name__ if cause else 'unknown'}: {str(cause)[:200] if cause else ''}".rstrip(
            ": "
        )
    return f"{type(exc).__name__}: {str(exc)[:300]}"
