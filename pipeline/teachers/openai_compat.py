"""Any OpenAI-compatible server as the teacher: vLLM's own server, several replicas, or a hosted API.

Requests run concurrently (bounded by a semaphore) on the async `openai` client, spread over the
base URLs by least in-flight load. The client's own retries are off (`max_retries=0`) so that one
policy, ours (`retry.py`), decides: bounded, with backoff and jitter, honouring Retry-After, and
shrinking `max_tokens` on a context-length refusal. When a request still fails, the run stops with a
`TeacherError`; every completion finished before that was already delivered (and so cached).
Requests added to the queue while it runs are launched as soon as the delivery that added them returns.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.errors import UserError
from pipeline.teachers.base import (
    Completion,
    Deliver,
    Request,
    RequestQueue,
    SamplingParams,
    Teacher,
    TeacherError,
)
from pipeline.teachers.config import TeacherConfig
from pipeline.teachers.retry import BadResponse, classify, retry_wait, shrink_max_tokens
from pipeline.teachers.runtime import local_identity, served_name
from pipeline.teachers.usage import Usage

BACKEND = "openai"
PLACEHOLDER_KEY = "EMPTY"


@dataclass
class Replica:
    base_url: str
    client: Any
    in_flight: int = 0
    sent: int = 0


@dataclass
class ReplicaPool:
    """Least in-flight first; ties go round-robin so idle replicas share the load evenly."""

    replicas: list[Replica]
    _turn: int = field(default=0)

    def pick(self) -> Replica:
        count = len(self.replicas)
        order = [self.replicas[(self._turn + k) % count] for k in range(count)]
        chosen = min(order, key=lambda r: r.in_flight)
        self._turn = (self.replicas.index(chosen) + 1) % count
        return chosen


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
    if request.is_chat:
        kwargs["messages"] = request.messages
    else:
        kwargs["prompt"] = request.prompt
    return kwargs


class OpenAITeacher(Teacher):
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
        self.sent_per_url: dict[str, int] = dict.fromkeys(config.base_urls, 0)
        self._rng = rng or random.Random()

    def stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        asyncio.run(self._stream(queue, deliver))

    async def _stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        import openai

        pool = ReplicaPool(
            [
                Replica(
                    url,
                    openai.AsyncOpenAI(
                        base_url=url, api_key=self.api_key, max_retries=0, timeout=self.config.timeout_s
                    ),
                )
                for url in self.config.base_urls
            ]
        )
        gate = asyncio.Semaphore(self.config.concurrency)
        running: set[asyncio.Task] = set()

        def launch() -> None:
            for index, request in queue.take():
                running.add(asyncio.create_task(one(index, request)))

        async def one(index: int, request: Request) -> None:
            async with gate:
                completion = await self._answer(request, pool)
            deliver([(index, completion)])
            launch()  # what `deliver` added starts at once

        launch()
        try:
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                running.difference_update(done)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for replica in pool.replicas:
                self.sent_per_url[replica.base_url] += replica.sent
                await replica.client.close()

    async def _answer(self, request: Request, pool: ReplicaPool) -> Completion:
        max_tokens = request.params.max_tokens
        attempt = 0
        while True:
            replica = pool.pick()
            replica.in_flight += 1
            replica.sent += 1
            started = time.perf_counter()
            try:
                kwargs = request_kwargs(request, self.api_model, max_tokens)
                response = await self._call(replica.client, kwargs, request.is_chat)
                return self._completion(response, request, time.perf_counter() - started)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = exc
            finally:
                replica.in_flight -= 1
            action, retry_after = classify(failure)
            where = f"{replica.base_url} ({describe(failure)})"
            if action == "fatal":
                raise TeacherError(f"teacher request failed and cannot be retried: {where}") from failure
            if attempt >= self.config.max_retries:
                raise TeacherError(
                    f"teacher request failed after {attempt + 1} attempts: {where}; "
                    "everything finished so far is cached, rerun the same command to resume"
                ) from failure
            attempt += 1
            self.usage.retries += 1
            if action == "shrink":
                if max_tokens <= 1:
                    raise TeacherError(f"prompt is longer than the model's context: {where}") from failure
                max_tokens = shrink_max_tokens(max_tokens)
                continue
            wait = retry_wait(
                attempt - 1, self.config.retry_base_s, self.config.retry_max_s, retry_after, self._rng
            )
            await asyncio.sleep(wait)

    @staticmethod
    async def _call(client: Any, kwargs: dict[str, Any], chat: bool) -> Any:
        if chat:
            return await client.chat.completions.create(**kwargs)
        return await client.completions.create(**kwargs)

    def _completion(self, response: Any, request: Request, latency: float) -> Completion:
        choices = getattr(response, "choices", None)
        if isinstance(response, str) or not choices:
            raise BadResponse("the reply has no choices")
        if len(choices) != request.params.n:
            raise BadResponse(f"asked for {request.params.n} choices, got {len(choices)}")
        ordered = sorted(choices, key=lambda c: c.index or 0)
        if request.is_chat:
            texts = [(c.message.content if c.message is not None else None) or "" for c in ordered]
        else:
            texts = [c.text or "" for c in ordered]
        usage = getattr(response, "usage", None)
        return Completion(
            texts=texts,
            finish_reasons=[c.finish_reason or "unknown" for c in ordered],
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
            backend=BACKEND,
            model=self.identity.model,
        )


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
