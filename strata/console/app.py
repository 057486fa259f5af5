"""The console's ASGI application: the page and its static files, the OpenAPI document,
and the JSON API under ``/api/`` behind the bearer gate."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.console import api, openapi
from strata.console.access import Settings, token_check
from strata.mcp.http_gate import BearerGate

STATIC: Final = Path(__file__).parent / "static"
# The page loads only its own files: no inline script, nothing from elsewhere.
_HEADERS: Final = [(b"content-security-policy",
                    b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
                   (b"x-content-type-options", b"nosniff"),
                   (b"referrer-policy", b"no-referrer")]


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi.document())


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


class _SecurityHeaders:
    """Adds ``_HEADERS`` to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_HEADERS]}
            await send(message)

        await self._app(scope, receive, send_with_headers)


def build(settings: Settings) -> ASGIApp:
    """The whole console for ``settings``."""
    inner = Starlette(routes=api.ROUTES)
    inner.state.settings = settings
    gated = BearerGate(inner, token_check(settings.address()))
    outer = Starlette(routes=[
        Route("/", _index, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/openapi.json", _openapi, methods=["GET"]),
        Mount("/api", gated),
    ])
    outer.state.settings = settings
    return _SecurityHeaders(outer)
