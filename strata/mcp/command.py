"""``strata mcp``: serve Strata's tools to agents over stdio or streamable HTTP."""

from __future__ import annotations

import click

from strata.cli.errors import CliError, ExitCode
from strata.cli.params import DURATION, SIZE
from strata.cli.session import Session, api_command

DEFAULT_LISTEN = "127.0.0.1:8765"
MIN_RESULT_BYTES = 1024  # a row or two of anything


@click.command()
@click.option("--http", "over_http", is_flag=True,
              help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.")
@click.option("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN, show_default=True,
              help="Where --http listens.")
@click.option("--max-rows", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Most rows run_sql returns.")
@click.option("--max-result-bytes", type=SIZE, default="256KiB", show_default=True,
              help="Most bytes of rows run_sql returns (as JSON), e.g. 64KiB.")
@click.option("--statement-timeout", type=DURATION, default="30s", show_default=True,
              help="Longest a run_sql call may run.")
@api_command
def mcp(session: Session, over_http: bool, listen: str, max_rows: int,
        max_result_bytes: int, statement_timeout: str) -> None:
    """Serve Strata's tools to agents over the Model Context Protocol.

    Over stdio (for an agent on this machine) every call uses the token of --token-file,
    $STRATA_TOKEN or the local admin token. Over --http each request must carry its own
    Strata token (Authorization: Bearer ...), checked by the page server; --token-file
    does not apply. Protected branches (main) are not changed, SQL is read-only unless a
    call asks to write, and results are capped.
    """
    from common.durations import parse_duration_s
    from strata.mcp.serve import serve_http, serve_stdio  # the MCP SDK: 2 s, not for --help
    from strata.mcp.sql import Limits

    if max_result_bytes < MIN_RESULT_BYTES:
        raise CliError(f"--max-result-bytes must be at least {MIN_RESULT_BYTES}",
                       ExitCode.USAGE)
    limits = Limits(max_rows, max_result_bytes, float(parse_duration_s(statement_timeout)))
    if not over_http:
        serve_stdio(session, limits)
        return
    if session.token is not None:
        raise CliError("over --http each agent sends its own token: drop --token-file and "
                       "$STRATA_TOKEN", ExitCode.USAGE)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--listen {listen!r}: give HOST:PORT, e.g. {DEFAULT_LISTEN}",
                       ExitCode.USAGE)
    serve_http(session, limits, host.strip("[]"), int(port))
