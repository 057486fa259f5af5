"""``strata audit``: who changed what, and when, from the page server's audit log; who
connected to which branch, from the proxy's (``strata.local.connect_log``); and which
token called which MCP tool, from ``strata mcp``'s (``strata.local.mcp_log``)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from common.client import StrataClient
from common.durations import parse_duration_s
from proto import strata_pb2 as pb
from strata.cli.params import DURATION
from strata.cli.render import emit_json, print_table
from strata.cli.session import Session, api_command, tenant_given
from strata.cli.units import iso_time, local_time
from strata.local import connect_log, mcp_log


def _entry_dict(entry: pb.AuditEntry) -> dict[str, Any]:
    return {"at": iso_time(entry.at_us), "at_us": entry.at_us, "action": entry.action,
            "tenant": entry.tenant, "target": entry.target or None,
            "token_id": entry.token_id or None, "scope": entry.scope or None,
            "peer": entry.peer or None,
            "details": json.loads(entry.details) if entry.details else {}}


@click.command()
@click.option("--since", type=DURATION, help="Only the last DURATION, e.g. 1h or 7d.")
@api_command
def audit(session: Session, since: str | None) -> None:
    """Show the audit log: who (token id, scope, address) changed what, and when.

    Branch, checkpoint, token and tenant changes, oldest first: all the token in use may
    see (a tenant token: its tenant's), or those of --tenant when it is given; and the
    connects through this machine's proxy (target: the branch; scope: owner, read-only
    or role), for whoever may read the home's connect log (its owner); and the calls of
    MCP tools (action mcp.TOOL) with the token that made them.
    """
    since_us = 0
    if since:
        since_us = time.time_ns() // 1000 - parse_duration_s(since) * 1_000_000
    with session.client() as client:
        entries = collect(session, client, since_us)
    if tenant_given():
        entries = [entry for entry in entries if entry["tenant"] == session.tenant]
    if session.json:
        emit_json({"entries": entries})
        return
    print_table(("when", "action", "tenant", "target", "token", "scope", "from"),
                [(local_time(e["at_us"]), e["action"], e["tenant"], e["target"] or "-",
                  e["token_id"] or "-", e["scope"] or "-", e["peer"] or "-")
                 for e in entries])


def collect(session: Session, client: StrataClient, since_us: int) -> list[dict[str, Any]]:
    """Every entry since ``since_us`` oldest first: the page server's that ``client``'s
    token may see, and this home's connects and MCP calls (those this user may read)."""
    changes = [_entry_dict(e) for e in client.read_audit(since_us)]
    connects = [_local_dict(c) for c in connect_log.read(session.home, since_us)]
    tool_calls = [_local_dict(c) for c in mcp_log.read(session.home, since_us)]
    return sorted(changes + connects + tool_calls, key=lambda entry: int(entry["at_us"]))


def _local_dict(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry of one of this home's logs (connects, MCP calls) as the page server's are."""
    details = entry.get("details") or ""
    return {"at": iso_time(entry["at_us"]), "at_us": entry["at_us"],
            "action": entry.get("action") or "connect",
            "tenant": entry.get("tenant", ""), "target": entry.get("target") or None,
            "token_id": entry.get("token_id") or None, "scope": entry.get("scope") or None,
            "peer": entry.get("peer") or None,
            "details": json.loads(details) if details else {}}
