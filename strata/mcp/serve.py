"""Start the MCP server on a transport: stdio, or streamable HTTP behind the bearer gate."""

from __future__ import annotations

import sys

import anyio
import uvicorn

from strata.cli.session import Session
from strata.mcp import tools
from strata.mcp.calls import Calls, Settings
from strata.mcp.http_gate import BearerGate, page_server_check
from strata.mcp.sql import Limits


def serve_stdio(session: Session, limits: Limits) -> None:
    """Serve one agent on stdin/stdout until it closes them."""
    calls = Calls(Settings(session.home, session.tenant, session.server, session.token,
                           limits))
    try:
        tools.build(calls).run("stdio")
    finally:
        calls.close()


def serve_http(session: Session, limits: Limits, host: str, port: int) -> None:
    """Serve streamable HTTP at http://HOST:PORT/mcp until interrupted."""
    calls = Calls(Settings(session.home, session.tenant, session.server, None, limits))
    app = tools.build(calls).streamable_http_app(host=host, stateless_http=True,
                                                 json_response=True)
    gated = BearerGate(app, page_server_check(
        session.address(),
        lambda client, caller: client.list_branches(caller.tenant_or(session.tenant),
                                                    limit=1)))
    server = uvicorn.Server(uvicorn.Config(gated, host=host, port=port, log_level="warning",
                                           lifespan="on"))
    print(f"strata mcp: serving http://{host}:{port}/mcp", file=sys.stderr, flush=True)
    try:
        anyio.run(server.serve)
    finally:
        calls.close()
