"""``strata connect``: how to reach a branch through the proxy."""

from __future__ import annotations

import click

from strata import computes, passwords, proxy_lifecycle
from strata.errors import CliError, ExitCode
from strata.render import emit_json, emit_text
from strata.session import Session, api_command


@click.command()
@click.argument("branch")
@click.option("--database", default="postgres", show_default=True,
              help="Database inside the branch's cluster.")
@api_command
def connect(session: Session, branch: str, database: str) -> None:
    """Print the connection URI of BRANCH through the proxy, password included.

    The user names the tenant (its password is made on first use and kept in
    $STRATA_HOME/passwords), the database names the branch (BRANCH or BRANCH:DATABASE);
    the proxy starts the branch's compute on the first connect.
    """
    with session.client() as client:
        client.get_branch(session.tenant, branch)  # a clear error for a branch that is not
    listen = proxy_lifecycle.address(session.home)
    if listen is None:
        raise CliError("the proxy is not running; run `strata up` (as root)",
                       ExitCode.UNREACHABLE)
    host, _, port = listen.rpartition(":")
    dbname = branch if database == "postgres" else f"{branch}:{database}"
    password = passwords.ensure(session.home, session.tenant)
    uri = f"postgresql://{session.tenant}:{password}@{host}:{port}/{dbname}"
    if not session.json:
        emit_text(uri)
        return
    node = computes.find(session.home, session.tenant, branch)
    emit_json({"tenant": session.tenant, "branch": branch, "host": host, "port": int(port),
               "user": session.tenant, "password": password, "dbname": dbname, "uri": uri,
               "compute": node.status().value if node else "stopped"})
