"""The tools on branches and their history: list, show, create (TTL required, N forks),
leased forks and their renewal, delete, checkpoints, restore, reset and undo, each a thin
use of the CLI's client session and local orchestration (``strata.local.computes``: a
restored branch's compute is paused around it, a deleted one's removed)."""

# No ``from __future__ import annotations``: the SDK reads each tool's JSON schema from
# its annotations.

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from common.client import NEWEST, ClientError, HistoryPoint, StrataClient
from common.durations import parse_duration_s
from proto import strata_pb2 as pb
from strata.cli.render import branch_dict, checkpoint_dict
from strata.cli.session import Session
from strata.cli.units import parse_time_us
from strata.local import computes
from strata.local.forks import MAX_COUNT, create_forks, fork_names, renew
from strata.local.undo import undo as undo_branch
from strata.mcp import guard
from strata.mcp.caller import Caller
from strata.mcp.calls import Calls
from strata.mcp.params import ADDS, DESTROYS, READS, Branch, PreserveAs


def _summary(info: pb.BranchInfo) -> dict[str, Any]:
    """What a listing shows of a branch."""
    full = branch_dict(info)
    return {key: full[key] for key in ("name", "parent", "protected", "expires_at",
                                       "lease_s", "created_at", "logical_size", "children")}


def register(server: MCPServer, calls: Calls) -> None:
    """Add the branch tools to ``server``, each call run through ``calls``."""
    @server.tool(annotations=READS)
    def list_branches(ctx: Context) -> dict[str, Any]:
        """List the tenant's branches (name, parent, protection, expiry, size)."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                branches = client.list_branches(session.tenant)
            return {"tenant": session.tenant, "branches": [  # not time-travel endpoints
                _summary(b) for b in branches if not b.ephemeral]}
        return calls.run(ctx, "list_branches", "", {}, action)

    @server.tool(annotations=READS)
    def show_branch(ctx: Context, name: Branch) -> dict[str, Any]:
        """Show every field of one branch, and whether this token may change it."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                info = client.get_branch(session.tenant, name)
            return {**branch_dict(info), "may_change": guard.may_change(caller, info)}
        return calls.run(ctx, "show_branch", name, {}, action)

    @server.tool(annotations=ADDS)
    def create_branch(
            ctx: Context, name: Branch,
            ttl: Annotated[str, Field(description=(
                "Required lifetime, e.g. 30m, 2h, 1d: the branch is deleted after it "
                "(capped by the tenant's quota)."))],
            parent: Annotated[str, Field(description="Branch to fork.")] = "main",
            count: Annotated[int | None, Field(
                description=f"Make this many forks, named NAME-1 .. NAME-N (at most "
                            f"{MAX_COUNT}).", ge=1, le=MAX_COUNT)] = None,
            at_checkpoint: Annotated[str | None, Field(
                description="Fork the parent at this checkpoint instead of its newest "
                            "state.")] = None) -> dict[str, Any]:
        """Fork a branch (copy-free, milliseconds) with a TTL; count makes N forks."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            ttl_s = parse_duration_s(ttl)
            if ttl_s <= 0:
                raise ValueError("ttl must be positive, e.g. 2h")
            with session.client() as client:
                quota = _max_ttl_s(client, session.tenant)
                capped = bool(quota) and ttl_s > quota
                ttl_used = quota if capped else ttl_s
                at = HistoryPoint(checkpoint=at_checkpoint) if at_checkpoint else NEWEST
                made = create_forks(client, session.tenant, fork_names(name, count),
                                    parent=parent, at=at, ttl_s=ttl_used)
            return {"branches": [_summary(b) for b in made], "ttl_s": ttl_used,
                    "ttl_capped_by_quota": capped}
        return calls.run(ctx, "create_branch", name,
                         {"ttl": ttl, "parent": parent, "count": count,
                          "at_checkpoint": at_checkpoint}, action)

    @server.tool(annotations=ADDS)
    def create_leased_forks(
            ctx: Context, name: Branch,
            lease: Annotated[str, Field(description=(
                "e.g. 10m: each fork is deleted this long after its last renew_leases "
                "call, so the forks of an agent that stopped go by themselves."))],
            count: Annotated[int, Field(
                description=f"Forks to make, named NAME-1 .. NAME-N (at most {MAX_COUNT}).",
                ge=1, le=MAX_COUNT)] = 1,
            parent: Annotated[str, Field(description="Branch to fork.")] = "main"
    ) -> dict[str, Any]:
        """Fork a branch N times with a lease: the forks live while renew_leases is called."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            lease_s = parse_duration_s(lease)
            if lease_s <= 0:
                raise ValueError("lease must be positive, e.g. 10m")
            with session.client() as client:
                made = create_forks(client, session.tenant, fork_names(name, count),
                                    parent=parent, lease_s=lease_s)
            return {"branches": [_summary(b) for b in made], "lease_s": lease_s}
        return calls.run(ctx, "create_leased_forks", name,
                         {"lease": lease, "count": count, "parent": parent}, action)

    @server.tool(annotations=ADDS)
    def renew_leases(ctx: Context, names: Annotated[list[str], Field(
            description="Leased branches, or the NAME their forks were made under.",
            min_length=1, max_length=MAX_COUNT)]) -> dict[str, Any]:
        """Renew leased forks: each expires a lease from now again."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                renewed = renew(client, session.tenant, names)
            return {"branches": [_summary(b) for b in renewed]}
        return calls.run(ctx, "renew_leases", ",".join(names), {}, action)

    @server.tool(annotations=DESTROYS)
    def undo(ctx: Context, branch: Branch) -> dict[str, Any]:
        """Undo a branch's last DROP/TRUNCATE/DELETE/UPDATE without WHERE, in place."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                guard.check_change(caller, client.get_branch(session.tenant, branch), "undo")
                done = undo_branch(session.home, client, session.address(), session.tenant,
                                   branch)
            return {"branch": branch, "undid": done.checkpoint.statement,
                    "checkpoint": checkpoint_dict(done.checkpoint),
                    "compute_restarted": done.compute_restarted}
        return calls.run(ctx, "undo", branch, {}, action)

    @server.tool(annotations=DESTROYS)
    def delete_branch(ctx: Context, name: Branch) -> dict[str, Any]:
        """Delete a branch, its compute and its checkpoints (not one with children)."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client, computes.branch_lock(
                    computes.workdir(session.home, session.tenant, name)):
                info = client.get_branch(session.tenant, name)
                guard.check_change(caller, info, "delete")
                computes.forget(session.home, session.tenant, [name])
                done = client.delete_branch(session.tenant, name,
                                            force=guard.protected(info))
            computes.forget_deleted(session.home, session.tenant, list(done.deleted))
            return {"deleted": list(done.deleted), "checkpoints": list(done.checkpoints),
                    "freed_bytes": done.freed_bytes}
        return calls.run(ctx, "delete_branch", name, {}, action)

    @server.tool(annotations=ADDS)
    def create_checkpoint(
            ctx: Context, branch: Branch,
            name: Annotated[str, Field(description="Checkpoint name, unique in the tenant.",
                                       min_length=1, max_length=63)]) -> dict[str, Any]:
        """Pin a branch's current state under a name, to restore or fork from later."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                return checkpoint_dict(client.create_checkpoint(session.tenant, branch, name))
        return calls.run(ctx, "create_checkpoint", branch, {"name": name}, action)

    @server.tool(annotations=READS)
    def list_checkpoints(ctx: Context, branch: Annotated[str | None, Field(
            description="Only this branch's checkpoints.")] = None) -> dict[str, Any]:
        """List checkpoints (or one branch's), with the bytes each holds and would free."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                found = client.list_checkpoints(session.tenant, sizes=True)
            return {"checkpoints": [checkpoint_dict(c, sizes=True) for c in found
                                    if branch is None or c.branch == branch]}
        return calls.run(ctx, "list_checkpoints", branch or "", {}, action)

    @server.tool(annotations=DESTROYS)
    def restore_branch(
            ctx: Context, name: Branch,
            checkpoint: Annotated[str | None, Field(
                description="Restore to this checkpoint.")] = None,
            time: Annotated[str | None, Field(
                description="Or to this time: ISO 8601, -10m, '10 minutes ago'.")] = None,
            lsn: Annotated[int | None, Field(description="Or to this LSN.", ge=0)] = None,
            preserve_as: PreserveAs = None) -> dict[str, Any]:
        """Put a branch back to a checkpoint, time or LSN in place (same connection URI)."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            point = HistoryPoint(lsn=lsn, time_us=parse_time_us(time) if time else None,
                                 checkpoint=checkpoint)
            if point.ways_given != 1:
                raise ValueError("give exactly one of checkpoint, time and lsn")
            return _restore(session, caller, name, point, preserve_as)
        return calls.run(ctx, "restore_branch", name,
                         {"checkpoint": checkpoint, "time": time, "lsn": lsn,
                          "preserve_as": preserve_as}, action)

    @server.tool(annotations=DESTROYS)
    def reset_branch(ctx: Context, name: Branch,
                     preserve_as: PreserveAs = None) -> dict[str, Any]:
        """Reset a branch to its parent's newest state, dropping its own changes."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            return _restore(session, caller, name, NEWEST, preserve_as)
        return calls.run(ctx, "reset_branch", name, {"preserve_as": preserve_as}, action)




def _max_ttl_s(client: StrataClient, tenant: str) -> int:
    """The tenant's TTL quota in seconds (0: none, or not visible to this token)."""
    try:
        return int(client.get_tenant(tenant).quotas.max_ttl_s)
    except ClientError:
        return 0  # a token limited to branches may not read the tenant: the server still caps


def _restore(session: Session, caller: Caller, name: str, to: HistoryPoint,
             preserve_as: str | None) -> dict[str, Any]:
    """Restore (or, to NEWEST, reset) a branch the caller may change, pausing its compute."""
    with session.client() as client:
        guard.check_change(caller, client.get_branch(session.tenant, name),
                           "reset" if to is NEWEST else "restore")
        with computes.paused(session.home, client, session.address(), session.tenant,
                             name) as restarted:
            response = client.restore_branch(session.tenant, name, to=to,
                                             preserve_as=preserve_as or "")
    return {**_summary(response.branch), "branch_lsn": response.branch.branch_lsn,
            "preserved_as": response.preserved_as or None, "compute_restarted": restarted}
