"""The retry policy for HTTP teachers, as pure functions so it can be tested and reasoned about alone.

We retry what a later attempt can fix (server errors, rate limits, timeouts, dropped or garbled
responses) with exponential backoff and jitter, always waiting at least what the server's
`Retry-After` asks; a context-length refusal is fixed by asking for fewer tokens instead: as many as
the server's own message says fit (`fitted_max_tokens`), or 20% fewer when it gives no numbers.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

CONTEXT_LENGTH_MARKERS = (
    "maximum context length",
    "context length",
    "context_length_exceeded",
    "max_model_len",
    "maximum model length",
)
RETRYABLE_STATUS = {408, 409, 425, 429}
MAX_RETRY_AFTER_S = 300.0
SHRINK_FACTOR = 0.8
FIT_MARGIN_TOKENS = 8
"""Tokens left free below what the server says fits (chat templates and counts may differ slightly)."""

_NUMBER = r"(\d[\d,]*)"
# The model's context length, as vLLM's releases and OpenAI word it.
_LIMIT_PATTERNS = [
    rf"maximum context length is {_NUMBER} tokens",  # OpenAI; vLLM's serving engine
    rf"maximum context length \({_NUMBER}\)",  # vLLM: "Input length (P) exceeds model's maximum context length (L)"
    rf"context length is only {_NUMBER} tokens",  # vLLM renderer: "...the model's context length is only L tokens"
    rf"max_model_len={_NUMBER}",  # vLLM renderer: "max_tokens=M cannot be greater than max_model_len=L"
    rf"maximum model length of {_NUMBER}",  # vLLM engine: "The decoder prompt (length P) is longer than ..."
]
# The prompt's size in tokens as the server counted it; "at least" marks a count the server cut short.
_PROMPT_PATTERNS = [
    rf"\({_NUMBER} in the messages, {_NUMBER} in the completion\)",  # OpenAI; older vLLM
    rf"you requested {_NUMBER} tokens in the messages",  # older vLLM, the prompt alone too long
    rf"your messages resulted in {_NUMBER} tokens",  # OpenAI, the prompt alone too long
    rf"your request has {_NUMBER} input tokens",  # vLLM's serving engine (0.10.1 to about 0.13)
    rf"your prompt contains ((?:at least )?){_NUMBER} input tokens",  # vLLM's renderer (newer releases)
    rf"you passed {_NUMBER} input tokens",  # vLLM renderer
    rf"input length \({_NUMBER}\)",  # vLLM: the prompt alone too long
    rf"decoder prompt \(length {_NUMBER}\)",  # vLLM engine: the prompt alone too long
]

Action = Literal["retry", "shrink", "fatal"]


class BadResponse(Exception):
    """A 200 reply we cannot use (no choices, not JSON, wrong shape): worth another try."""


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random, so retries spread out."""
    ceiling = min(max_s, base_s * (2.0**attempt))
    return ceiling / 2 + (rng or random).uniform(0.0, ceiling / 2)


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `Retry-After` seconds or HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_wait(
    attempt: int, base_s: float, max_s: float, retry_after: float | None, rng: random.Random | None = None
) -> float:
    """How long to sleep before attempt `attempt + 1`: backoff, but never less than Retry-After."""
    delay = backoff_delay(attempt, base_s, max_s, rng)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
    return delay


def is_context_length_message(message: str) -> bool:
    text = message.lower()
    return any(marker in text for marker in CONTEXT_LENGTH_MARKERS)


def classify_status(status: int, message: str) -> Action:
    """What to do about an HTTP error status."""
    if status == 400 and is_context_length_message(message):
        return "shrink"
    if status >= 500 or status in RETRYABLE_STATUS:
        return "retry"
    return "fatal"


def classify(exc: BaseException) -> tuple[Action, float | None]:
    """Map an exception from the openai client to an action and the server's Retry-After (if any)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        headers = exc.response.headers if exc.response is not None else None
        return classify_status(exc.status_code, error_text(exc)), parse_retry_after(headers)
    if isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError, BadResponse)):
        return "retry", None
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return "retry", None
    return "fatal", None


OVERLOAD_STATUS = {429, 503}


def is_overload(exc: BaseException) -> bool:
    """A sign that the server has more than it can take (429, 503, a timeout): fewer requests at once."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code in OVERLOAD_STATUS


def is_full_refusal(exc: BaseException) -> bool:
    """429: the server is up and refused this request only because it is full (not a failure to bench)."""
    import openai

    return isinstance(exc, openai.APIStatusError) and exc.status_code == 429


def shrink_max_tokens(max_tokens: int) -> int:
    return max(1, int(max_tokens * SHRINK_FACTOR))


@dataclass(frozen=True)
class ContextOverflow:
    """What a context-length refusal says: the model's limit and the prompt's size, where it gives them."""

    limit: int | None = None
    prompt_tokens: int | None = None
    at_least: bool = False
    """The server stopped counting the prompt early: the real prompt may be longer."""


def parse_context_overflow(message: str) -> ContextOverflow:
    """Read the context length and the prompt's token count from a server's refusal message."""
    limit = _first_number(_LIMIT_PATTERNS, message)
    prompt: int | None = None
    at_least = False
    for pattern in _PROMPT_PATTERNS:
        found = re.search(pattern, message, re.IGNORECASE)
        if found is not None:
            numbers = [g for g in found.groups() if g and g[0].isdigit()]
            prompt = _to_int(numbers[0])
            at_least = "at least" in found.group(0).lower()
            break
    return ContextOverflow(limit=limit, prompt_tokens=prompt, at_least=at_least)


def fitted_max_tokens(max_tokens: int, overflow: ContextOverflow) -> int | None:
    """`max_tokens` for the next attempt after a context-length refusal of `max_tokens`.

    With the limit and the prompt's size: what fits (the limit less the prompt, less a small margin).
    A count the server cut short ("at least", or exactly where vLLM stops counting) is only a floor, so
    then we also shrink by 20% to converge fast. Without numbers: 20% fewer. None when the prompt alone
    fills the context, since no `max_tokens` can help then.
    """
    limit, prompt = overflow.limit, overflow.prompt_tokens
    shrunk = shrink_max_tokens(max_tokens)
    if limit is None:
        return shrunk
    if prompt is None:
        return max(1, min(shrunk, limit - FIT_MARGIN_TOKENS))
    room = limit - prompt
    if room < 1:
        return None
    fitted = room - FIT_MARGIN_TOKENS if room > FIT_MARGIN_TOKENS else room
    if overflow.at_least or prompt == limit - max_tokens + 1:
        fitted = min(fitted, shrunk)
    return max(1, min(fitted, max_tokens - 1))


def _first_number(patterns: list[str], message: str) -> int | None:
    for pattern in patterns:
        found = re.search(pattern, message, re.IGNORECASE)
        if found is not None:
            return _to_int(found.group(1))
    return None


def _to_int(text: str) -> int:
    return int(text.replace(",", ""))


def error_text(exc: BaseException) -> str:
    """Everything a server said about an error: the client's message and the body it came with."""
    body = getattr(exc, "body", None)
    return f"{getattr(exc, 'message', None) or exc} {_body_text(body)}".strip()


def _body_text(body: object) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    try:
        return json.dumps(body)
    except (TypeError, ValueError):
        return str(body)
