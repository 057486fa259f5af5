"""The tools on a branch's history: a read-only endpoint at a past point (time travel),
what a branch changed since a point (from the page server's layers) and the row-level
difference of two branches, each through the CLI's client session and this home's
credentials, after the page server accepted the caller's token."""

# No ``from __future__ import annotations``: the SDK reads each tool's JSON schema from
# its annotations.

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from common.client import NEWEST
from common.durations import parse_duration_s
from strata.cli.commands.branches import changes_dict
from strata.cli.commands.connect import proxy_target
from strata.cli.points import FORMS, parse_point
from strata.cli.session import Session
from strata.local import travel
from strata.local.data_diff import data_diff as diff_rows
from strata.local.flush import checkpoint_compute
from strata.mcp.caller import Caller
from strata.mcp.calls import Calls
from strata.mcp.params import ADDS, READS, Branch, Database

Point = Annotated[str, Field(description=f"A point of the branch's history: {FORMS}.",
                             min_length=1)]


def register(server: MCPServer, calls: Calls) -> None:
    """Add the history tools to ``server``, each call run through ``calls``."""
    max_bytes = calls.settings.limits.max_bytes

    @server.tool(annotations=ADDS)
    def connect_at(ctx: Context, branch: Branch, at: Point,
                   database: Database = "postgres",
                   idle: Annotated[str, Field(
                       description="The endpoint goes after this long without clients.")]
                   = "10m") -> dict[str, Any]:
        """A read-only URI of a branch as it was at a time, LSN or checkpoint; expires idle."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            idle_s = parse_duration_s(idle)
            if idle_s <= 0:
                raise ValueError("idle must be positive, e.g. 10m")
            with session.client() as client:
                info = travel.open_endpoint(client, session.tenant, branch, parse_point(at),
                                            idle_s)
            target = proxy_target(session, info.name, database, read_only=True)
            return {"uri": target.uri, "branch": branch, "endpoint": info.name,
                    "at_lsn": info.branch_lsn, "read_only": True, "idle_timeout_s": idle_s}
        return calls.run(ctx, "connect_at", branch, {"at": at, "idle": idle}, action)

    @server.tool(annotations=READS)
    def branch_changes(ctx: Context, branch: Branch, since: Annotated[str, Field(
            description=f"fork (its branch point), or {FORMS}.")] = "fork"
            ) -> dict[str, Any]:
        """Tables and indexes a branch wrote since its fork or a point: pages, bytes."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            point = NEWEST if since == "fork" else parse_point(since)
            with session.client() as client:
                client.get_branch(session.tenant, branch)
                flushed = checkpoint_compute(session.home, session.tenant, branch)
                found = client.branch_changes(session.tenant, branch, point)
            return changes_dict(found, branch, since, flushed)
        return calls.run(ctx, "branch_changes", branch, {"since": since}, action)

    @server.tool(annotations=READS)
    def data_diff(ctx: Context, old: Branch, new: Branch, database: Database = "postgres",
                  sample: Annotated[int, Field(
                      description="Rows shown per table and kind of change.", ge=0, le=50)]
                  = 5) -> dict[str, Any]:
        """Rows inserted, deleted and updated from branch old to new, by primary key."""
        def action(session: Session, caller: Caller) -> dict[str, Any]:
            with session.client() as client:
                for each in (old, new):
                    client.get_branch(session.tenant, each)
            uris = [proxy_target(session, each, database, read_only=True).uri
                    for each in (old, new)]
            found = diff_rows(uris[0], uris[1], sample)
            cut = len(str(found)) > max_bytes  # within the byte cap: counts without rows
            if cut:
                for table in found["tables"]:
                    table["samples"] = {}
            return {"old": old, "new": new, **found, "samples_dropped": cut}
        return calls.run(ctx, "data_diff", new, {"old": old, "database": database}, action)
