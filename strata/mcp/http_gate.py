"""The door of ``strata mcp --http``: every HTTP request must carry a Strata bearer token
that the page server accepts for the token's tenant; others get 401 before any MCP code
runs.

The check is a call to the page server with the token (no key, no cache here: a revoked
token is refused on its next request). The gate also stamps each request with the
client's address (``x-strata-peer``, replacing any the client sent) for the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio.to_thread
import grpc
from starlette.types import ASGIApp, Receive, Scope, Send

from common.client import ClientError, StrataClient
from strata.mcp.caller import BadToken, Caller, caller_of

PEER_HEADER: Final = "x-strata-peer"  # set by the gate; a client's own is dropped

Verify = Callable[[str], Awaitable[str | None]]
"""Why the page server refuses a token; None: it accepts it."""


Probe = Callable[[StrataClient, Caller], object]
"""A call the page server answers only for a token it accepts (a refusal raises)."""


def page_server_check(address: str, probe: Probe) -> Verify:
    """A Verify that makes the page server at ``address`` answer ``probe`` with the
    token: accepted if it answers, refused with its message if it refuses the token."""
    def check(token: str) -> str | None:
        try:
            caller = caller_of(token, "")
        except BadToken as exc:
            return str(exc)
        try:
            with StrataClient(address, token) as client:
                probe(client, caller)
        except ClientError as exc:
            if exc.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return exc.message
            raise
        return None

    async def verify(token: str) -> str | None:
        return await anyio.to_thread.run_sync(check, token)

    return verify


class BearerGate:
    """ASGI middleware refusing HTTP requests without a token ``verify`` accepts."""

    def __init__(self, app: ASGIApp, verify: Verify) -> None:
        self._app = app
        self._verify = verify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)  # lifespan
            return
        headers = [(key, value) for key, value in scope["headers"]
                   if key.lower() != PEER_HEADER.encode()]
        given = [value.decode("latin-1") for key, value in headers
                 if key.lower() == b"authorization"]
        scheme, _, token = (given[0] if len(given) == 1 else "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await _refuse(send, "missing bearer token: send 'Authorization: Bearer <token>' "
                                "with a Strata token (`strata token create`)")
            return
        try:
            problem = await self._verify(token.strip())
        except ClientError as exc:
            await _refuse(send, f"cannot check the token: {exc.message}", status=503)
            return
        if problem is not None:
            await _refuse(send, f"token refused: {problem}")
            return
        host, port = scope.get("client") or ("unknown", 0)
        headers.append((PEER_HEADER.encode(), f"{host}:{port}".encode()))
        await self._app({**scope, "headers": headers}, receive, send)


async def _refuse(send: Send, message: str, status: int = 401) -> None:
    body = json.dumps({"error": "invalid_token" if status == 401 else "unavailable",
                       "error_description": message}).encode()
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
    start: dict[str, Any] = {"type": "http.response.start", "status": status,
                             "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
