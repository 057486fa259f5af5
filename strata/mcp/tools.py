"""The MCP server ``strata mcp`` runs: its instructions for agents and every tool
(``branch_tools``, ``database_tools``).

Safe defaults: a branch made here has a TTL (capped by the tenant's quota), SQL runs in a
read-only transaction as the read-only role unless ``write`` is asked for, protected
branches are not changed (``strata.mcp.guard``), and results are capped.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from strata.mcp import branch_tools, database_tools, history_tools
from strata.mcp.calls import Calls


def build(calls: Calls) -> MCPServer:
    """The MCP server with every tool, each call run through ``calls``."""
    server: MCPServer = MCPServer(
        "strata", log_level="WARNING", instructions=(
            "Strata branches PostgreSQL databases in milliseconds. Work on a fork: "
            "create_branch (with a TTL) from main, run_sql on it (write=true for "
            "migrations), checkpoint before risky steps, restore_branch to go back; "
            "undo puts a branch back to before its last DROP, TRUNCATE, or DELETE/UPDATE "
            "without WHERE. create_leased_forks makes forks that live while you call "
            "renew_leases. delete_branch when done. Protected branches such as main are "
            "read-only here. connect_at reads a branch as it was at a past time; "
            "branch_changes and data_diff say what a fork changed."))
    branch_tools.register(server, calls)
    database_tools.register(server, calls)
    history_tools.register(server, calls)
    return server
