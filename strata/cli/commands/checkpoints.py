"""``strata checkpoint``: named, pinned points in a branch's history; ``strata undo``: back
to the automatic one the proxy took before a branch's last destructive statement."""

from __future__ import annotations

from typing import Any

import click

from proto import strata_pb2 as pb
from strata.cli.params import LSN
from strata.cli.render import branch_dict, checkpoint_dict, emit_json, emit_text, print_table
from strata.cli.session import Session, api_command
from strata.cli.units import human_size, local_time

STATEMENT_COLUMN_CHARS = 60  # of an automatic checkpoint's statement, in the table


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
    """List the tenant's checkpoints, with what each costs.

    "holds": the history below its branch's GC cutoff that reads at the checkpoint reach
    (shared with checkpoints and branch points reading it too). "delete frees": what
    deleting it alone would reclaim (the history only it reads, at the next GC, and a
    reset branch's past only it kept).

    Automatic ones (auto-TIME-KIND) were taken by the proxy before a destructive
    statement, which they show; they expire (24 h by default) and `strata undo` uses them.
    """
    with session.client() as client:
        checkpoints = client.list_checkpoints(session.tenant, sizes=True)
    if session.json:
        emit_json({"checkpoints": [checkpoint_dict(c, sizes=True) for c in checkpoints]})
        return
    print_table(("name", "branch", "LSN", "created", "expires", "holds", "delete frees",
                 "before statement"),
                [(c.name, c.branch or "-", str(c.lsn), local_time(c.created_at_us),
                  local_time(c.expires_at_us, "never"), human_size(c.held_bytes),
                  human_size(c.reclaim_bytes), _cut(c.statement) or "-")
                 for c in checkpoints], right=("LSN", "holds", "delete frees"))


def _cut(statement: str) -> str:
    if len(statement) <= STATEMENT_COLUMN_CHARS:
        return statement
    return statement[:STATEMENT_COLUMN_CHARS - 3] + "..."


@checkpoint.command("delete")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Say what the delete would free; delete nothing.")
@api_command
def delete(session: Session, name: str, dry_run: bool) -> None:
    """Delete checkpoint NAME.

    A reset branch's past only it kept goes at once; the history only it reads goes at
    the next GC.
    """
    with session.client() as client:
        done = client.delete_checkpoint(session.tenant, name, dry_run=dry_run)
    if session.json:
        emit_json(checkpoint_deletion_dict(name, done, dry_run=dry_run))
        return
    verb = "would delete" if dry_run else "deleted"
    emit_text(f"{verb} checkpoint {name!r}: frees {human_size(done.freed_bytes)} now and "
              f"{human_size(done.gc_bytes)} at the next GC")


def checkpoint_deletion_dict(name: str, done: pb.DeleteCheckpointResponse, *,
                             dry_run: bool) -> dict[str, Any]:
    """What deleting a checkpoint freed (``dry_run``: would free), as JSON."""
    return {"deleted": None if dry_run else name, "checkpoint": name, "dry_run": dry_run,
            "freed_bytes": done.freed_bytes, "gc_bytes": done.gc_bytes,
            "reclaim_bytes": done.freed_bytes + done.gc_bytes}


@click.command()
@click.argument("branch")
@api_command
def undo(session: Session, branch: str) -> None:
    """Undo BRANCH's last destructive statement (back to its automatic checkpoint).

    It restores BRANCH in place (same URI) to the automatic checkpoint the proxy took
    before that statement.

    The proxy takes one before DROP, TRUNCATE, ALTER ... DROP, and DELETE or UPDATE
    without WHERE, and keeps it 24 h. Everything written after that checkpoint goes, also
    by other sessions. Its compute, if running here, is stopped first and started again
    after. Run it again to go one destructive statement further back.
    """
    from strata.local.undo import undo as undo_branch

    with session.client() as client:
        done = undo_branch(session.home, client, session.address(), session.tenant, branch)
    taken = done.checkpoint
    if session.json:
        emit_json({"branch": branch, "undid": taken.statement,
                   "checkpoint": checkpoint_dict(taken), "branch_lsn": done.branch.branch_lsn,
                   "compute_restarted": done.compute_restarted,
                   "state": branch_dict(done.branch)})
        return
    again = "; compute restarted" if done.compute_restarted else ""
    emit_text(f"undid on {branch!r}: {taken.statement}\n"
              f"(run at {local_time(taken.created_at_us)}; back to checkpoint {taken.name!r}, "
              f"LSN {taken.lsn}{again})")
