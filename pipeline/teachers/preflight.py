"""Is an HTTP teacher there at all? One GET `/models` per base URL with a short timeout, before any work.

A request to a dead server costs the whole retry policy (6 retries, backoff up to 30 s) and one to a
server that accepts connections and never answers costs `timeout_s` (600 s) per attempt. A stage that
cannot wait that long to learn the server is gone (the judge) asks this first: any HTTP answer (200,
401, 404 all mean a server is listening) passes; a refused connection or silence past the timeout
fails. The in-process engine always passes. Written by hand because the `openai` client has no
"ping": listing models is the cheapest call every OpenAI-compatible server (vLLM's included) serves.
"""

from __future__ import annotations

import os

from pipeline.teachers.base import TeacherError
from pipeline.teachers.config import TeacherConfig

PREFLIGHT_TIMEOUT_S = 10.0
"""Long enough for a loaded server to list its models, short enough to fail a silent one fast."""


class TeacherUnreachable(TeacherError):
    """No base URL of an HTTP teacher answered the pre-flight request."""


def probe_url(url: str, api_key: str | None, timeout_s: float) -> str | None:
    """None when a server answers GET `url`/models with any HTTP status, else what went wrong."""
    import httpx

    from pipeline.teachers.openai_compat import tls_context

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        httpx.get(f"{url.rstrip('/')}/models", headers=headers, timeout=timeout_s, verify=tls_context())
    except httpx.TimeoutException:
        return f"no answer within {timeout_s:g} s"
    except httpx.ConnectError as exc:
        return f"cannot connect: {' '.join(str(exc).split())[:200] or type(exc).__name__}"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return None


def served_context_tokens(config: TeacherConfig, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> int | None:
    """The context length a server reports for the configured model (vLLM's /models lists it as
    `max_model_len`); None when no base URL says (a hosted API, an older server, no answer)."""
    import httpx

    from pipeline.teachers.openai_compat import tls_context
    from pipeline.teachers.runtime import served_name

    if config.backend != "openai":
        return None
    api_key = os.environ.get(config.api_key_env)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for url in config.base_urls:
        try:
            response = httpx.get(
                f"{url.rstrip('/')}/models", headers=headers, timeout=timeout_s, verify=tls_context()
            )
            models = response.json().get("data", [])
        except (httpx.HTTPError, ValueError, AttributeError):
            continue
        for entry in models if isinstance(models, list) else []:
            if isinstance(entry, dict) and entry.get("id") == served_name(config.model):
                value = entry.get("max_model_len")
                if isinstance(value, int) and value > 0:
                    return value
    return None


def unreachable_reason(config: TeacherConfig, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> str | None:
    """None when the teacher can be asked (in-process, or one base URL answers), else why not."""
    if config.backend != "openai" or not config.base_urls:
        return None
    api_key = os.environ.get(config.api_key_env)
    problems = []
    for url in config.base_urls:
        why = probe_url(url, api_key, min(timeout_s, config.timeout_s))
        if why is None:
            return None
        problems.append(f"{url}: {why}")
    return "; ".join(problems)


def check_reachable(config: TeacherConfig, role: str, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Raise `TeacherUnreachable` (one line, exit 2) when no base URL of `config` answers."""
    why = unreachable_reason(config, timeout_s)
    if why is not None:
        raise TeacherUnreachable(f"the {role} server is not answering (GET /models): {why}")
