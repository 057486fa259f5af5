"""The tools on a branch's database: a connection string (branch-scoped credential), SQL
within limits (``strata.mcp.sql``), compute status and a schema diff, all through the
proxy with this home's credentials, after the page server accepted the caller's token on
the branch."""

# No ``from __future__ import annotations``: the SDK reads each tool's JSON schema from its
# annotations, and those of run_sql use the server's limits, which only the closure knows.

import difflib
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from strata.cli.commands.branches import schema_dump
from strata.cli.commands.connect import proxy_target
from strata.cli.session import Session
from strata.local import computes
from strata.mcp import guard, sql
from strata.mcp.caller import Caller
from strata.mcp.calls import Calls
from strata.mcp.params import READS, Branch, Database
from strata.mcp.sql import Limits


def register(server: MCPServer, calls: Calls) -> None:
    """Add the database tools to ``server``, each call run through ``calls``."""
    limits = calls.settings.limits

    @server.tool(annotations=READS)
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

    @server.tool(annotations=READS)
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

    @server.tool(annotations=READS)
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
