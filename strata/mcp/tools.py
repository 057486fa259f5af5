"""The tools ``strata mcp`` offers agents, each a thin use of the CLI's client session and
local orchestration, with a one-line description an agent can act on.

Safe defaults: a branch made here has a TTL (capped by the tenant's quota), SQL runs in a
read-only transaction as the read-only role unless ``write`` is asked for, protected
branches are not changed (``strata.mcp.guard``), and results are capped.
"""

# No ``from __future__ import annotations``: the SDK reads each tool's JSON schema from its
# annotations, and those of run_sql use the server's limits, which only the closure knows.

import difflib
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from common.client import NEWEST, ClientError, HistoryPoint
from common.durations import parse_duration_s
from proto import strata_pb2 as pb
from strata.cli.commands.branches import schema_dump
from strata.cli.commands.connect import proxy_target
from strata.cli.render import branch_dict, checkpoint_dict
from strata.cli.session import Session
from strata.cli.units import parse_time_us
from strata.local import computes
from strata.mcp import guard, sql
from strata.mcp.caller import Caller
from strata.mcp.calls import Calls
from strata.mcp.sql import Limits

MAX_COUNT = 50  # forks one create_branch call makes

Branch = Annotated[str, Field(description="Branch name.", min_length=1, max_length=63)]
Database = Annotated[str, Field(description="Database inside the branch's cluster.")]
PreserveAs = Annotated[str | None, Field(
    description="Keep the branch's current state as a new branch of this name.")]

_READS = ToolAnnotations(read_only_hint=True)
_ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False)
_DESTROYS = ToolAnnotations(read_only_hint=False, destructive_hint=True)


def _summary(info: pb.BranchInfo) -> dict[str, Any]:
    """What a listing shows of a branch."""
    full = branch_dict(info)
    return {key: full[key] for key in ("name", "parent", "protected", "expires_at",
                                       "created_at", "logical_size", "children")}


def build(calls: Calls) -> MCPServer:
    """The MCP server with every tool, each call run through ``calls``."""
    server: MCPServer = MCPServer(
        "strata", log_level="WARNING", instructions=(
            "Strata branches PostgreSQL databases in milliseconds. Work on a fork: "
            "create_branch (with a TTL) from main, run_sql on it (write=true for "
            "migrations), checkpoint before risky steps, restore_branch to undo, "
            "delete_branch when done. Protected branches such as main are read-only "
            "here."))
    limits = calls.settings.limits

    @server.tool(annotations=_READS)
    def list_branches(ctx: Context) -> dict[str, Any]:
        """List the tenant's branches (name, parent, protection, expiry, size)."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                branches = client.list_branches(session.tenant)
            return {"tenant": session.tenant, "branches": [_summary(b) for b in branches]}
        return calls.run(ctx, "list_branches", "", {}, action)

    @server.tool(annotations=_READS)
    def show_branch(ctx: Context, name: Branch) -> dict[str, Any]:
        """Show every field of one branch, and whether this token may change it."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                info = client.get_branch(session.tenant, name)
            return {**branch_dict(info), "may_change": guard.may_change(caller, info)}
        return calls.run(ctx, "show_branch", name, {}, action)

    @server.tool(annotations=_ADDS)
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
            names = [name] if count is None else [f"{name}-{i}" for i in range(1, count + 1)]
            made: list[pb.BranchInfo] = []
            with session.client() as client:
                quota = _max_ttl_s(client, session.tenant)
                capped = bool(quota) and ttl_s > quota
                ttl_used = quota if capped else ttl_s
                at = HistoryPoint(checkpoint=at_checkpoint) if at_checkpoint else NEWEST
                try:
                    for each in names:
                        made.append(client.create_branch(session.tenant, each, parent=parent,
                                                         at=at, ttl_s=ttl_used))
                except BaseException:
                    for info in made:  # all or none: a half-made batch is not left behind
                        client.delete_branch(session.tenant, info.name)
                    raise
            return {"branches": [_summary(b) for b in made], "ttl_s": ttl_used,
                    "ttl_capped_by_quota": capped}
        return calls.run(ctx, "create_branch", name,
                         {"ttl": ttl, "parent": parent, "count": count,
                          "at_checkpoint": at_checkpoint}, action)

    @server.tool(annotations=_DESTROYS)
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

    @server.tool(annotations=_ADDS)
    def create_checkpoint(
            ctx: Context, branch: Branch,
            name: Annotated[str, Field(description="Checkpoint name, unique in the tenant.",
                                       min_length=1, max_length=63)]) -> dict[str, Any]:
        """Pin a branch's current state under a name, to restore or fork from later."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                return checkpoint_dict(client.create_checkpoint(session.tenant, branch, name))
        return calls.run(ctx, "create_checkpoint", branch, {"name": name}, action)

    @server.tool(annotations=_READS)
    def list_checkpoints(ctx: Context, branch: Annotated[str | None, Field(
            description="Only this branch's checkpoints.")] = None) -> dict[str, Any]:
        """List the tenant's checkpoints (or one branch's)."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                found = client.list_checkpoints(session.tenant)
            return {"checkpoints": [checkpoint_dict(c) for c in found
                                    if branch is None or c.branch == branch]}
        return calls.run(ctx, "list_checkpoints", branch or "", {}, action)

    @server.tool(annotations=_DESTROYS)
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

    @server.tool(annotations=_DESTROYS)
    def reset_branch(ctx: Context, name: Branch,
                     preserve_as: PreserveAs = None) -> dict[str, Any]:
        """Reset a branch to its parent's newest state, dropping its own changes."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            return _restore(session, caller, name, NEWEST, preserve_as)
        return calls.run(ctx, "reset_branch", name, {"preserve_as": preserve_as}, action)

    @server.tool(annotations=_READS)
    def connection_string(
            ctx: Context, branch: Branch, database: Database = "postgres",
            read_only: Annotated[bool, Field(
                description="Log in as the read-only role.")] = False) -> dict[str, Any]:
        """A PostgreSQL URI that opens this branch only (read-only on protected branches)."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                info = client.get_branch(session.tenant, branch)
            why = None
            if caller.read_only:
                why = "the token is read-only"
            elif not guard.may_change(caller, info):
                why = f"branch {branch!r} is protected"
            target = proxy_target(session, branch, database, read_only or why is not None)
            return {"uri": target.uri, "branch": branch, "user": target.user,
                    "read_only": target.read_only, "read_only_because": why}
        return calls.run(ctx, "connection_string", branch,
                         {"database": database, "read_only": read_only}, action)

    @server.tool()
    def run_sql(
            ctx: Context, branch: Branch,
            statement: Annotated[str, Field(
                description="SQL; several statements separated by ';' run as one "
                            "transaction and the last result is returned.",
                min_length=1)],
            write: Annotated[bool, Field(description=(
                "Allow writes (DDL, DML); default false: a read-only transaction. "
                "Refused on protected branches and with read-only tokens."))] = False,
            database: Database = "postgres",
            max_rows: Annotated[int, Field(
                description=f"Rows returned at most (up to {limits.max_rows}).",
                ge=1, le=limits.max_rows)] = min(100, limits.max_rows),
            timeout_s: Annotated[float, Field(
                description=f"Statement timeout in seconds (up to {limits.timeout_s:g}).",
                gt=0, le=limits.timeout_s)] = limits.timeout_s) -> dict[str, Any]:
        """Run SQL on a branch: read-only unless write=true; rows, bytes and time capped."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                info = client.get_branch(session.tenant, branch)
            if write:
                guard.check_write(caller, info)
            target = proxy_target(session, branch, database, read_only=not write)
            return sql.run(target.uri, statement, write=write,
                           limits=Limits(max_rows, limits.max_bytes, timeout_s))
        return calls.run(ctx, "run_sql", branch,
                         {"statement": statement, "write": write, "database": database,
                          "max_rows": max_rows, "timeout_s": timeout_s}, action)

    @server.tool(annotations=_READS)
    def compute_status(ctx: Context, branch: Annotated[str | None, Field(
            description="Only this branch's compute.")] = None) -> dict[str, Any]:
        """Whether each branch's PostgreSQL runs, is suspended or stopped, and its clients."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                if branch is not None:
                    client.get_branch(session.tenant, branch)
                # The page server lists only what the token covers.
                visible = {b.name for b in client.list_branches(session.tenant)}
            view = computes.proxy_view(session.home)
            found = []
            for node in computes.listing(session.home, session.tenant):
                name = node.spec.branch
                if (branch is None or name == branch) and name in visible:
                    shown = computes.describe(node, view)
                    found.append({key: shown[key] for key in
                                  ("branch", "status", "clients", "idle_s", "started_at")})
            return {"computes": found}
        return calls.run(ctx, "compute_status", branch or "", {}, action)

    @server.tool(annotations=_READS)
    def schema_diff(ctx: Context, old: Branch, new: Branch,
                    database: Database = "postgres") -> dict[str, Any]:
        """Unified diff of the schemas of two branches (pg_dump --schema-only)."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                for each in (old, new):
                    client.get_branch(session.tenant, each)
            dumps = [schema_dump(session, each, database) for each in (old, new)]
            lines = list(difflib.unified_diff(dumps[0].splitlines(), dumps[1].splitlines(),
                                              fromfile=old, tofile=new, lineterm=""))
            kept, size = [], 0
            for line in lines:
                size += len(line) + 1
                if size > limits.max_bytes:
                    break
                kept.append(line)
            return {"old": old, "new": new, "same": not lines, "diff": kept,
                    "truncated": len(kept) < len(lines)}
        return calls.run(ctx, "schema_diff", new, {"old": old, "database": database}, action)

    return server


def _max_ttl_s(client: Any, tenant: str) -> int:
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
