"""The HTTP teacher's hot path: one POST per request, the raw reply back, one JSON decode.

Why not the `openai` SDK's `completions.create` here: on a simulated fleet (`bench/fleet.py`,
`bench/replicas.py`) it cost 2 to 2.5 ms of client CPU per request, most of it outside the network:
the SDK walks the body through its TypedDict transforms, httpx/httpcore scan the connection pool and
check every connection's expiry per request, and the reply is validated into pydantic models that we
only read three fields of. A client talking to tens of GPU replicas spends a core on that alone. Here
the body is our own dict (`openai_compat.request_kwargs`, the SDK's `extra_body` merged in as the SDK
does), sent by aiohttp (a well-kept client with a C HTTP parser and keep-alive pools, already a vLLM
dependency), and the reply is read once with `json.loads` (about 0.3 ms a request in all).

What the SDK does well stays the SDK's: its exception types. A refused request raises the SDK's own
status error for that code (`BadRequestError`, `RateLimitError`, ...; message "Error code: N - the
server's message", `body` the server's `error` object, `response` with the headers), a timeout
`APITimeoutError` and a broken connection `APIConnectionError` (the cause chained), exactly as the
SDK's client would. So the retry policy (`retry.py`: Retry-After, context-length fitting, overload),
the structured-outputs refusal check and the error texts read them unchanged, and the SDK remains
what the rest of the project uses off the hot path.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import ssl
from functools import cache
from types import ModuleType
from typing import Any

from pipeline.teachers.base import Completion
from pipeline.teachers.retry import BadResponse

COMPLETIONS = "/completions"
CHAT_COMPLETIONS = "/chat/completions"


def request_body(kwargs: dict[str, Any]) -> bytes:
    """The JSON body the SDK would send for `create(**kwargs)`: `extra_body` merged into the top level."""
    extra = kwargs.get("extra_body")
    body = {k: v for k, v in kwargs.items() if k != "extra_body"}
    if extra:
        body.update(extra)
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def parse_completion(raw: bytes, n: int, chat: bool, model: str, backend: str) -> Completion:
    """A 200 reply's bytes as a `Completion`; a reply we cannot use is a `BadResponse` (worth a retry)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadResponse(f"the reply is not JSON: {raw[:200]!r}") from exc
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise BadResponse("the reply has no choices")
    if len(choices) != n:
        raise BadResponse(f"asked for {n} choices, got {len(choices)}")
    try:
        ordered = sorted(choices, key=lambda c: c.get("index") or 0)
        if chat:
            texts = [((c.get("message") or {}).get("content")) or "" for c in ordered]
        else:
            texts = [c.get("text") or "" for c in ordered]
        finish = [c.get("finish_reason") or "unknown" for c in ordered]
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
    except (AttributeError, TypeError, ValueError) as exc:
        raise BadResponse(f"the reply's choices are malformed: {exc}") from exc
    if not all(isinstance(t, str) for t in texts):
        raise BadResponse("the reply's texts are not strings")
    return Completion(
        texts=texts,
        finish_reasons=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        backend=backend,
        model=model,
    )


@cache
def _sdk_httpx() -> ModuleType:
    """The httpx the SDK's exceptions carry requests and responses of (httpx, or its fork in newer SDKs)."""
    import openai

    return importlib.import_module(openai.DefaultAsyncHttpxClient.__mro__[1].__module__.split(".")[0])


def status_error(status: int, headers: list[tuple[str, str]], raw: bytes, url: str) -> Exception:
    """The SDK's exception for an HTTP error reply, built as its own client builds it."""
    import openai

    httpx = _sdk_httpx()
    response = httpx.Response(status, headers=headers, content=raw, request=httpx.Request("POST", url))
    text = raw.decode("utf-8", errors="replace").strip()
    message = f"Error code: {status}"
    body: Any = text or None
    try:
        body = json.loads(text)
    except ValueError:
        pass
    else:
        error = body.get("error", body) if isinstance(body, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        if isinstance(detail, str) and detail:
            message += f" - {detail}"
        body = error if error is not None else body
    kinds = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
    }
    kind = kinds.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return kind(message, response=response, body=body)


class WireClient:
    """One replica's connection pool; `post` sends a body and returns the reply's bytes.

    Made inside the event loop that uses it (aiohttp binds its session to the running loop). Timeouts
    are per phase as the SDK's are: `timeout_s` to connect, and `timeout_s` for the reply to come
    (a non-streamed completion sends nothing until it is done).
    """

    def __init__(
        self, base_url: str, api_key: str, timeout_s: float, connections: int, tls: ssl.SSLContext | None
    ):
        import aiohttp

        self.base_url = base_url.rstrip("/")
        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, limit_per_host=0, ssl=tls or True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            skip_auto_headers=("User-Agent",),
        )

    async def post(self, path: str, body: bytes) -> bytes:
        """The 2xx reply's bytes; an error reply, a timeout or a dropped connection raises the SDK's error."""
        import openai

        url = self.base_url + path
        try:
            async with self._session.post(url, data=body) as response:
                raw = await response.read()
                status = response.status
                headers = list(response.headers.items()) if status >= 300 else []
        except asyncio.TimeoutError as exc:
            httpx = _sdk_httpx()
            raise openai.APITimeoutError(request=httpx.Request("POST", url)) from exc
        except self._aiohttp.ClientError as exc:
            httpx = _sdk_httpx()
            raise openai.APIConnectionError(request=httpx.Request("POST", url)) from exc
        if status >= 300:
            raise status_error(status, headers, raw, url)
        return raw

    async def close(self) -> None:
        await self._session.close()
