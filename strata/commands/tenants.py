"""``strata tenant``: create (initdb + import on the server), list and delete tenants."""

from __future__ import annotations

import sys
import time

import click

from strata.errors import CliError, ExitCode
from strata.progress import working
from strata.render import emit_json, emit_text, print_table, tenant_dict
from strata.session import Session, api_command


@click.group()
def tenant() -> None:
    """Create, list and delete tenants.

    A tenant is one PostgreSQL cluster with many branches.
    """


@tenant.command("create")
@click.argument("name")
@click.option("--empty", is_flag=True, help="Skip initdb: an empty main branch.")
@api_command
def create(session: Session, name: str, empty: bool) -> None:
    """Create tenant NAME.

    Its branch main holds a fresh initdb cluster, unless --empty.
    """
    started = time.monotonic()
    what = f"creating tenant {name}" + ("" if empty else " (initdb + import)")
    with session.client() as client, working(what, session.interactive):
        response = client.create_tenant(name, empty=empty)
    if session.json:
        emit_json({"tenant": tenant_dict(response.tenant), "main_lsn": response.main_lsn})
        return
    emit_text(f"created tenant {name!r}: branch main at LSN {response.main_lsn} "
              f"({time.monotonic() - started:.1f} s)")


@tenant.command("list")
@api_command
def list_(session: Session) -> None:
    """List the tenants the token may see."""
    with session.client() as client:
        tenants = client.list_tenants()
    if session.json:
        emit_json({"tenants": [tenant_dict(t) for t in tenants]})
        return
    print_table(("tenant", "generation", "branches"),
                [(t.tenant, str(t.generation), str(t.branches)) for t in tenants],
                right=("generation", "branches"))


@tenant.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@api_command
def delete(session: Session, name: str, yes: bool) -> None:
    """Delete tenant NAME with all its branches and checkpoints."""
    if not yes:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise CliError(f"refusing to delete tenant {name!r} without --yes "
                           "(no terminal to confirm on)", ExitCode.USAGE)
        click.confirm(f"Delete tenant {name!r} with all its branches and checkpoints?",
                      abort=True, err=True)
    with session.client() as client:
        client.delete_tenant(name)
    if session.json:
        emit_json({"deleted": name})
    else:
        emit_text(f"deleted tenant {name!r}")
