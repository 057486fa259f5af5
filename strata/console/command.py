"""``strata console``: serve the web console and its JSON API."""

from __future__ import annotations

from pathlib import Path

import click

from strata.cli.errors import CliError, ExitCode
from strata.local.home import DEFAULT_CONSOLE_PORT, LISTEN_HOST, Home

DEFAULT_LISTEN = f"{LISTEN_HOST}:{DEFAULT_CONSOLE_PORT}"


@click.command()
@click.option("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN, show_default=True,
              help="Where to serve HTTP (port 0: any free port).")
@click.option("--server", envvar="STRATA_SERVER", metavar="HOST:PORT",
              help="Page server address [env: STRATA_SERVER; default: the local one].")
@click.option("--metrics", metavar="HOST:PORT",
              help="The page server's metrics address [default: the local one's].")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True,
              help="Write the pid and URL here once listening (`strata up` uses it).")
def console(listen: str, server: str | None, metrics: str | None,
            ready_file: Path | None) -> None:
    """Serve the web console: branch tree, computes, storage, page server, audit.

    The page and its JSON API (under /api/, OpenAPI at /api/openapi.json) hold no token:
    each request carries its caller's (Authorization: Bearer TOKEN), which the page
    server checks and authorises, so a tenant token sees only its tenant. Plain HTTP:
    keep it on loopback or put a TLS proxy in front.
    """
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise CliError(f"--listen {listen!r}: give HOST:PORT, e.g. {DEFAULT_LISTEN}",
                       ExitCode.USAGE)
    from strata.console.access import Settings
    from strata.console.serve import serve

    serve(Settings(Home.from_environ(), server, metrics), host.strip("[]"), int(port),
          ready_file)
