"""``strata undo`` (and the MCP ``undo`` tool): put a branch back, in place, to its last
automatic checkpoint, the one the proxy took before its latest destructive statement.

The restore is the ordinary one (same name, same connection URI; the branch's compute, if
running here, is stopped around it and started again). The checkpoint is then deleted:
it is used up, so the next undo goes back one destructive statement further.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.client import HistoryPoint, StrataClient
from proto import strata_pb2 as pb
from strata.local import computes
from strata.local.errors import LocalError
from strata.local.home import Home


@dataclass(frozen=True)
class Undone:
    """What an undo did: the checkpoint it went back to (its statement and time), the
    branch as it is now, and whether its compute was restarted."""

    checkpoint: pb.CheckpointInfo
    branch: pb.BranchInfo
    compute_restarted: bool


def last_automatic(client: StrataClient, tenant: str, branch: str) -> pb.CheckpointInfo | None:
    """The newest automatic checkpoint taken on ``branch``; None if it has none."""
    taken = [c for c in client.list_checkpoints(tenant) if c.branch == branch and c.statement]
    return max(taken, key=lambda c: (c.created_at_us, c.name), default=None)


def undo(home: Home, client: StrataClient, address: str, tenant: str, branch: str) -> Undone:
    """Restore ``branch`` to its last automatic checkpoint, then delete that checkpoint."""
    checkpoint = last_automatic(client, tenant, branch)
    if checkpoint is None:
        raise LocalError(f"branch {branch!r} has no automatic checkpoint to go back to: none "
                         "of its destructive statements went through the proxy in the "
                         "retention (24 h by default), or undo is off for it")
    with computes.paused(home, client, address, tenant, branch) as restarted:
        response = client.restore_branch(tenant, branch,
                                         to=HistoryPoint(checkpoint=checkpoint.name))
    client.delete_checkpoint(tenant, checkpoint.name)
    return Undone(checkpoint, response.branch, restarted)
