"""The retry policy for HTTP teachers, as pure functions so it can be tested and reasoned about alone.

We retry what a later attempt can fix (server errors, rate limits, timeouts, dropped or garbled
responses) with exponential backoff and jitter, always waiting at least what the server's
`Retry-After` asks; a context-length refusal is fixed by asking for fewer tokens instead.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Mapping
from typing import Literal

CONTEXT_LENGTH_MARKERS = ("maximum context length", "context length", "context_length_exceeded")
RETRYABLE_STATUS = {408, 409, 425, 429}
MAX_RETRY_AFTER_S = 300.0
SHRINK_FACTOR = 0.8

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
        return classify_status(
            exc.status_code, str(exc.message) + " " + _body_text(exc.body)
        ), parse_retry_after(headers)
    if isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError, BadResponse)):
        return "retry", None
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return "retry", None
    return "fatal", None


def shrink_max_tokens(max_tokens: int) -> int:
    return max(1, int(max_tokens * SHRINK_FACTOR))


def _body_text(body: object) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    try:
        return json.dumps(body)
    except (TypeError, ValueError):
        return str(body)
