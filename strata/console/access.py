"""Who calls the console's API and what a failure answers.

The console holds no token and decides nothing about access itself: every API request
carries ``Authorization: Bearer TOKEN``, the gate (``strata.mcp.http_gate.BearerGate``,
shared with ``strata mcp --http``) has the page server check it before a handler runs,
and each handler calls the page server with that same token, so the page server's
authorization decides what it sees (a tenant token: its own tenant). What the console
reads on this machine (computes, the connect and MCP logs) it shows for a tenant only
after the page server accepted the token for that tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from common.client import ClientError, ServerUnreachable, StrataClient
from strata.cli.errors import CliError, ExitCode
from strata.cli.session import Session
from strata.local.errors import LocalError
from strata.local.home import Home
from strata.mcp.caller import ALL_TENANTS, BadToken, Caller, caller_of
from strata.mcp.http_gate import PEER_HEADER, Verify, page_server_check

_STATUS_OF_CODE: Final = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_STATUS_OF_EXIT: Final = {ExitCode.USAGE: 400, ExitCode.NOT_FOUND: 404, ExitCode.AUTH: 403,
                          ExitCode.UNREACHABLE: 503}


class ApiError(Exception):
    """A request the console answers with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Settings:
    """What ``strata console`` was started with."""

    home: Home
    server: str | None  # the page server; None: the local one
    metrics: str | None  # its metrics address; None: the one the local one published

    def address(self) -> str:
        return self.server or self.home.server_address()


def token_check(address: str) -> Verify:
    """A Verify for the gate: the page server lists the tenants with an admin token, or
    one branch of its own tenant with a tenant token."""
    def probe(client: StrataClient, caller: Caller) -> object:
        if caller.tenant == ALL_TENANTS:
            return client.list_tenants()
        return client.list_branches(caller.tenant, limit=1)

    return page_server_check(address, probe)


def caller(request: Request) -> Caller:
    """The caller of a request the gate let through."""
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    try:
        return caller_of(token, request.headers.get(PEER_HEADER, "http"))
    except BadToken as exc:
        raise ApiError(401, str(exc)) from None


def session(request: Request, tenant: str) -> Session:
    """The CLI's session for ``tenant`` with the caller's token."""
    settings: Settings = request.app.state.settings
    return Session(settings.home, tenant, True, settings.address(), caller(request).token)


@contextmanager
def client(session: Session) -> Iterator[StrataClient]:
    """A client of the page server on the session's (the caller's) token."""
    with StrataClient(session.address(), session.token) as strata:
        yield strata


def require_tenant(strata: StrataClient, tenant: str) -> None:
    """Let the page server say whether the token may read ``tenant`` (raises if not):
    before the console shows what it reads of that tenant on this machine."""
    strata.list_branches(tenant, limit=1)


def error_response(exc: Exception) -> Response:
    """The JSON answer for a failed request."""
    if isinstance(exc, ApiError):
        status, message = exc.status, exc.message
    elif isinstance(exc, ServerUnreachable):
        status, message = 503, f"page server not running at {exc.address}"
    elif isinstance(exc, ClientError):
        status, message = _STATUS_OF_CODE.get(exc.code, 500), exc.message
    elif isinstance(exc, CliError):
        status, message = _STATUS_OF_EXIT.get(exc.code, 409), exc.message
    elif isinstance(exc, LocalError):
        status, message = 500, exc.message
    elif isinstance(exc, ValueError):
        status, message = 400, str(exc)
    else:
        raise exc
    return JSONResponse({"error": _ERROR_NAMES.get(status, "failed"),
                         "error_description": message}, status_code=status)


_ERROR_NAMES: Final = {400: "invalid_request", 401: "invalid_token", 403: "forbidden",
                       404: "not_found", 409: "conflict", 429: "quota", 503: "unavailable",
                       504: "timeout"}
