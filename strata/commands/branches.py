"""``strata branch``: create (at an LSN, WAL position, time or checkpoint), list, show,
delete and draw the lineage of branches."""

from __future__ import annotations

import click

from strata.errors import CliError, ExitCode
from strata.params import DURATION, LSN, TIMESTAMP, WAL_LSN
from strata.render import (
    BRANCH_COLUMNS,
    BRANCH_NUMBERS,
    branch_dict,
    branch_fields,
    branch_row,
    emit_json,
    emit_text,
    lineage,
    print_fields,
    print_lineage,
    print_table,
)
from strata.session import Session, api_command
from strata.units import local_time, parse_duration_s


@click.group()
def branch() -> None:
    """Create, list, show, delete and draw branches.

    A branch is a line of history cut from a parent at an LSN; creating one copies nothing.
    """


@branch.command("create")
@click.argument("name")
@click.option("--parent", default="main", show_default=True, help="Branch to fork.")
@click.option("--at-lsn", type=LSN, help="Page server LSN of the parent to branch at.")
@click.option("--at-wal-lsn", type=WAL_LSN,
              help="PostgreSQL WAL position X/Y: the first durable LSN that reached it.")
@click.option("--at-time", type=TIMESTAMP,
              help="ISO 8601 time (no zone: local time): the last durable LSN at or before it.")
@click.option("--at-checkpoint", metavar="NAME", help="A checkpoint's LSN (and timeline).")
@click.option("--ttl", type=DURATION, help="Delete the branch after this long, e.g. 2h.")
@api_command
def create(session: Session, name: str, parent: str, at_lsn: int | None,
           at_wal_lsn: int | None, at_time: int | None, at_checkpoint: str | None,
           ttl: str | None) -> None:
    """Create branch NAME.

    It forks --parent at one of the --at-* points, by default at the parent's newest LSN.
    """
    points = [at_lsn, at_wal_lsn, at_time, at_checkpoint]
    if sum(point is not None for point in points) > 1:
        raise CliError("give at most one of --at-lsn, --at-wal-lsn, --at-time and "
                       "--at-checkpoint", ExitCode.USAGE)
    with session.client() as client:
        info = client.create_branch(
            session.tenant, name, parent=parent, lsn=at_lsn, wal_lsn=at_wal_lsn,
            time_us=at_time, checkpoint=at_checkpoint,
            ttl_s=parse_duration_s(ttl) if ttl else 0)
    if session.json:
        emit_json(branch_dict(info))
        return
    expiry = f"; expires {local_time(info.expires_at_us)}" if info.expires_at_us else ""
    emit_text(f"created branch {name!r} from {info.parent!r} at LSN {info.branch_lsn}{expiry}")


@branch.command("list")
@api_command
def list_(session: Session) -> None:
    """List the tenant's branches."""
    with session.client() as client:
        branches = client.list_branches(session.tenant)
    if session.json:
        emit_json({"branches": [branch_dict(b) for b in branches]})
        return
    print_table(BRANCH_COLUMNS, [branch_row(b) for b in branches], right=BRANCH_NUMBERS)


@branch.command("show")
@click.argument("name")
@api_command
def show(session: Session, name: str) -> None:
    """Show every field of branch NAME."""
    with session.client() as client:
        info = client.get_branch(session.tenant, name)
    if session.json:
        emit_json(branch_dict(info))
    else:
        print_fields(branch_fields(info))


@branch.command("delete")
@click.argument("name")
@click.option("--cascade", is_flag=True, help="Also delete the branches forked from it.")
@api_command
def delete(session: Session, name: str, cascade: bool) -> None:
    """Delete branch NAME.

    Refused while it has children, unless --cascade.
    """
    with session.client() as client:
        deleted = client.delete_branch(session.tenant, name, cascade=cascade)
    if session.json:
        emit_json({"deleted": deleted})
    else:
        emit_text(f"deleted {'branch' if len(deleted) == 1 else 'branches'} "
                  + ", ".join(repr(d) for d in deleted))


@branch.command("tree")
@api_command
def tree(session: Session) -> None:
    """Draw the branches' lineage.

    Each node shows a branch's name and the LSN it was cut at.
    """
    with session.client() as client:
        nodes = lineage(client.list_branches(session.tenant))
    if session.json:
        emit_json({"tenant": session.tenant, "branches": nodes})
    else:
        print_lineage(session.tenant, nodes)
