"""The review web app: one static page and a small JSON API over a review session, on Starlette.

Starlette (already installed with vLLM's server) and uvicorn give a real local HTTP server with no
front-end build step: the page is plain HTML and JavaScript shipped in the package. Every answer is
appended to reviews.jsonl and fsynced before the request returns, so the page only says "saved" once it
is on disk. Beyond loopback the app needs a token: the page passes it on from its own URL.
"""

from __future__ import annotations

import secrets
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from pipeline.core.errors import UserError
from pipeline.review.labels import RATINGS
from pipeline.review.sessions import PAIR_HELP, TASK_HELP, PairReview, TaskReview

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def page() -> str:
    return resources.files("pipeline.review").joinpath("static/review.html").read_text(encoding="utf-8")


def make_app(session: TaskReview | PairReview, token: str | None = None) -> Starlette:
    """The app serving `session`; with `token`, every request must carry it (the page sends it along)."""
    html = page()

    def authorised(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("x-review-token") or request.query_params.get("token") or ""
        return secrets.compare_digest(given, token)

    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            if not authorised(request):
                return JSONResponse(
                    {"error": "a valid token is needed: open the URL the command printed"}, 401
                )
            try:
                return await handler(request)
            except UserError as exc:
                return JSONResponse({"error": str(exc)}, 400)

        return endpoint

    def reviewer_of(params: Any) -> str:
        return str(params.get("reviewer") or session.reviewers[0])

    async def index(request: Request) -> Response:
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def session_info(request: Request) -> Response:
        reviewer = reviewer_of(request.query_params)
        return JSONResponse(
            {
                "mode": session.mode,
                "title": session.title(),
                "reviewer": reviewer,
                "total": session.total(reviewer),
                "resume": session.resume(reviewer),
                "questions": session.questions(),
                "scale": RATINGS if session.mode == "pairs" else None,
                "help": PAIR_HELP if session.mode == "pairs" else TASK_HELP,
            }
        )

    async def item(request: Request) -> Response:
        reviewer = reviewer_of(request.query_params)
        return JSONResponse(session.item(reviewer, _index(request.query_params.get("k"))))

    async def progress(request: Request) -> Response:
        return JSONResponse(session.progress(reviewer_of(request.query_params)))

    async def answer(request: Request) -> Response:
        body = await _body(request)
        reviewer = reviewer_of(body)
        session.answer(reviewer, _index(body.get("k")), body)
        return JSONResponse({"saved": True, "labelled": session.labelled(reviewer)})

    async def skip(request: Request) -> Response:
        body = await _body(request)
        reviewer = reviewer_of(body)
        session.skip(reviewer, _index(body.get("k")))
        return JSONResponse({"saved": True, "labelled": session.labelled(reviewer)})

    routes = [
        Route("/", guarded(index)),
        Route("/api/session", guarded(session_info)),
        Route("/api/item", guarded(item)),
        Route("/api/progress", guarded(progress)),
        Route("/api/answer", guarded(answer), methods=["POST"]),
        Route("/api/skip", guarded(skip), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _index(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"item index: expected a number, got {value!r}") from None


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise UserError("expected a JSON body") from None
    if not isinstance(body, dict):
        raise UserError("expected a JSON object")
    return body
