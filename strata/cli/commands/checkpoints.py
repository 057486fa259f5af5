"""``strata checkpoint``: named, pinned points in a branch's history."""

from __future__ import annotations

import click

from strata.cli.params import LSN
from strata.cli.render import checkpoint_dict, emit_json, emit_text, print_table
from strata.cli.session import Session, api_command
from strata.cli.units import local_time


@click.group()
def checkpoint() -> None:
    """Create, list and delete checkpoints.

    A checkpoint pins a point of a branch: GC keeps what it needs, and
    `strata branch create --at-checkpoint` starts a branch there. It keeps naming that
    branch and stays usable when the branch is restored or reset; deleting the branch
    deletes it.
    """


@checkpoint.command("create")
@click.argument("branch")
@click.argument("name")
@click.option("--lsn", type=LSN, help="LSN to pin (default: the branch's newest).")
@api_command
def create(session: Session, branch: str, name: str, lsn: int | None) -> None:
    """Pin BRANCH at an LSN under NAME."""
    with session.client() as client:
        info = client.create_checkpoint(session.tenant, branch, name, lsn)
    if session.json:
        emit_json(checkpoint_dict(info))
    else:
        emit_text(f"created checkpoint {name!r} on {branch!r} at LSN {info.lsn}")


@checkpoint.command("list")
@api_command
def list_(session: Session) -> None:
    """List the tenant's checkpoints."""
    with session.client() as client:
        checkpoints = client.list_checkpoints(session.tenant)
    if session.json:
        emit_json({"checkpoints": [checkpoint_dict(c) for c in checkpoints]})
        return
    print_table(("name", "branch", "LSN", "created"),
                [(c.name, c.branch or "-", str(c.lsn), local_time(c.created_at_us))
                 for c in checkpoints], right=("LSN",))


@checkpoint.command("delete")
@click.argument("name")
@api_command
def delete(session: Session, name: str) -> None:
    """Delete checkpoint NAME.

    GC may then remove the history it pinned.
    """
    with session.client() as client:
        client.delete_checkpoint(session.tenant, name)
    if session.json:
        emit_json({"deleted": name})
    else:
        emit_text(f"deleted checkpoint {name!r}")
