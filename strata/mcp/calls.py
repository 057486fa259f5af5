"""How every tool call runs: find the caller's token, build the CLI's ``Session`` for it,
run the tool's action, turn an anticipated failure into a tool error the agent reads, and
put the call on the MCP audit log with the token that made it.

Over stdio the one token is the server's (``--token-file``, ``$STRATA_TOKEN`` or the local
admin token, as for the CLI); over HTTP each request brings its own bearer token, which
``strata.mcp.http_gate`` checked with the page server and which this module hands on to
every page server call of the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from strata.cli.errors import CliError
from strata.cli.session import Session
from strata.local.errors import LocalError
from strata.local.home import Home
from strata.local.mcp_log import McpLog
from strata.mcp.caller import BadToken, Caller, caller_of
from strata.mcp.guard import Refused
from strata.mcp.http_gate import PEER_HEADER
from strata.mcp.sql import Limits, SqlError

_LOGGED_TEXT_CHARS: Final = 2000  # of an argument's text (SQL) on the audit log

Action = Callable[[Session, Caller], dict[str, Any]]


@dataclass(frozen=True)
class Settings:
    """What ``strata mcp`` was started with."""

    home: Home
    tenant: str  # acted on with an admin token; a tenant token acts on its own tenant
    server: str | None  # the page server; None: the local one
    token: str | None  # stdio: the token of every call; HTTP: None (each request's own)
    limits: Limits  # the most run_sql returns or runs for, whatever a call asks


class Calls:
    """Runs the tool calls of one server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._log = McpLog(settings.home)

    def close(self) -> None:
        self._log.close()

    def caller(self, ctx: Context) -> Caller:
        """The token of this call and its claims."""
        headers: Mapping[str, str] | None = ctx.headers
        if headers is None:  # stdio
            token = self.settings.token or self.settings.home.admin_token()
            if not token:
                raise ToolError("no token: start `strata mcp` with --token-file or "
                                "$STRATA_TOKEN, or run `strata up` for the local admin token")
            peer = "stdio"
        else:
            scheme, _, token = (headers.get("authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ToolError("missing bearer token")
            token, peer = token.strip(), headers.get(PEER_HEADER) or "http"
        try:
            return caller_of(token, peer)
        except BadToken as exc:
            raise ToolError(str(exc)) from None

    def run(self, ctx: Context, tool: str, target: str, arguments: dict[str, Any],
            action: Action) -> dict[str, Any]:
        """Run ``action`` for the caller of ``ctx`` on the session of its token, and log
        the call of ``tool`` on ``target`` with ``arguments`` and how it ended."""
        caller = self.caller(ctx)
        tenant = caller.tenant_or(self.settings.tenant)
        session = Session(self.settings.home, tenant, True, self.settings.server,
                          caller.token)
        outcome: dict[str, Any] = {"ok": False}
        try:
            result = action(session, caller)
            outcome = {"ok": True}
            return result
        except (CliError, LocalError, Refused, SqlError, ValueError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            outcome = {"ok": False, "error": message}
            raise ToolError(message) from None
        finally:
            self._log.record(tool=tool, tenant=tenant, target=target,
                             token_id=caller.token_id, scope=caller.scope, peer=caller.peer,
                             details={"arguments": _loggable(arguments), **outcome})


def _loggable(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the audit log keeps them: long text cut."""
    return {key: value[:_LOGGED_TEXT_CHARS] if isinstance(value, str) else value
            for key, value in arguments.items() if value is not None}
