"""``strata audit``: who changed what, and when, from the page server's audit log."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from common.durations import parse_duration_s
from proto import strata_pb2 as pb
from strata.cli.params import DURATION
from strata.cli.render import emit_json, print_table
from strata.cli.session import Session, api_command, tenant_given
from strata.cli.units import iso_time, local_time


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
    see (a tenant token: its tenant's), or those of --tenant when it is given.
    """
    since_us = 0
    if since:
        since_us = time.time_ns() // 1000 - parse_duration_s(since) * 1_000_000
    with session.client() as client:
        entries = client.read_audit(since_us)
    if tenant_given():
        entries = [e for e in entries if e.tenant == session.tenant]
    if session.json:
        emit_json({"entries": [_entry_dict(e) for e in entries]})
        return
    print_table(("when", "action", "tenant", "target", "token", "scope", "from"),
                [(local_time(e.at_us), e.action, e.tenant, e.target or "-",
                  e.token_id or "-", e.scope or "-", e.peer or "-") for e in entries])
