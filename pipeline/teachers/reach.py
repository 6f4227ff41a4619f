"""Is anything listening at the teacher's base URLs? Asked once, before a run, with a short timeout.

Without it a run against a wrong URL retries its first requests with backoff for half a minute and then
says only that the requests failed. One GET of `BASE/models` per URL tells at once whether a server
answers there: any HTTP answer counts (a server that does not list models still serves completions);
a refused connection, a name that does not resolve or no answer within the timeout does not.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.errors import UserError

PROBE_TIMEOUT_S = 5.0


def probe(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when an HTTP server answers at `url` (a `.../v1` base URL), else why not, in a few words."""
    import httpx

    try:
        with httpx.Client(timeout=timeout_s) as client:
            client.get(url.rstrip("/") + "/models")
    except httpx.ConnectError as exc:
        return f"connection failed: {exc}"
    except httpx.TimeoutException:
        return f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def check_reachable(urls: Sequence[str], timeout_s: float = PROBE_TIMEOUT_S) -> list[str]:
    """Raise when no URL answers; return a warning for each one that does not while others do."""
    failures = {url: why for url in urls if (why := probe(url, timeout_s)) is not None}
    if failures and len(failures) == len(urls):
        shown = "; ".join(f"{url} ({why})" for url, why in failures.items())
        raise UserError(
            f"nothing answers at the teacher's base URL(s): {shown}. Start the server (`selfinstruct serve` "
            "prints its URL) or correct --base-url / teacher.base_urls; nothing was written"
        )
    return [
        f"teacher base URL {url} does not answer ({why}); the others serve the run"
        for url, why in failures.items()
    ]
