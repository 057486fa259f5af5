"""Output: API messages as JSON-ready dicts, and as tables, key/value lists and trees.

JSON keys mirror the proto fields in snake_case. LSNs are integers; a WAL position also
comes as PostgreSQL's ``X/Y`` text under ``<field>_str``; a time comes as an ISO 8601 UTC
string (``created_at``, null when unset) next to its raw number (``created_at_us``).

rich is imported only to draw: JSON output does not load it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from strata.cli.units import format_wal_lsn, human_duration, human_size, iso_time, local_time

if TYPE_CHECKING:
    from rich.console import Console

    from proto import strata_pb2 as pb

_PIPE_WIDTH = 240  # rich would squeeze tables to 80 columns when stdout is not a terminal


def stdout_console() -> Console:
    """A console for human output; names are never read as rich markup."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH, markup=False,
                   highlight=False)


def emit_json(document: Any) -> None:
    """Print ``document`` as the one JSON document of the command's output."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def emit_text(text: str) -> None:
    """Print one line of human output."""
    sys.stdout.write(text + "\n")


def tenant_dict(tenant: pb.TenantInfo) -> dict[str, Any]:
    """A tenant and where it is attached (null page server: none recorded, or detached)."""
    return {"tenant": tenant.tenant, "generation": tenant.generation, "branches": tenant.branches,
            "attached_here": tenant.here, "detached": tenant.detached,
            "pageserver_id": None if tenant.detached else tenant.pageserver_id or None,
            "address": None if tenant.detached else tenant.address or None}


def branch_dict(branch: pb.BranchInfo) -> dict[str, Any]:
    return {
        "name": branch.name,
        "timeline_id": branch.timeline_id,
        "parent": branch.parent or None,
        "branch_lsn": branch.branch_lsn,
        "last_lsn": branch.last_lsn,
        "last_wal_lsn": branch.last_wal_lsn,
        "last_wal_lsn_str": format_wal_lsn(branch.last_wal_lsn),
        "last_time": iso_time(branch.last_time_us),
        "last_time_us": branch.last_time_us,
        "children": list(branch.children),
        "created_at": iso_time(branch.created_at_us),
        "created_at_us": branch.created_at_us,
        "expires_at": iso_time(branch.expires_at_us),
        "expires_at_us": branch.expires_at_us,
        "lease_s": branch.lease_s or None,
        "undo": not branch.undo_off,
        "logical_size": branch.logical_size,
        "owned_bytes": branch.owned_bytes,
        "history_bytes": branch.history_bytes,
        "history_s": branch.history_s or None,
        "history_window_s": branch.history_window_s,
        "history_window_from": branch.history_window_from,
        "writer_epoch": branch.writer_epoch,
        "writer": branch.writer or None,
        "suspend_timeout_s": branch.suspend_timeout_s or None,
        "protected": branch.protected,
        "ephemeral": branch.ephemeral,
        "gc_cutoff": branch.gc_cutoff,
    }


def checkpoint_dict(checkpoint: pb.CheckpointInfo, *, sizes: bool = False) -> dict[str, Any]:
    """A checkpoint as JSON; with ``sizes`` (listed with them), what it holds and frees."""
    sized = {"held_bytes": checkpoint.held_bytes,
             "reclaim_bytes": checkpoint.reclaim_bytes} if sizes else {}
    return {**sized,
        "name": checkpoint.name,
        "branch": checkpoint.branch or None,
        "timeline_id": checkpoint.timeline_id,
        "lsn": checkpoint.lsn,
        "created_at": iso_time(checkpoint.created_at_us),
        "created_at_us": checkpoint.created_at_us,
        "automatic": bool(checkpoint.statement),
        "statement": checkpoint.statement or None,
        "expires_at": iso_time(checkpoint.expires_at_us),
        "expires_at_us": checkpoint.expires_at_us,
    }


def storage_history_dict(tenant: str, history: pb.StorageHistoryResponse) -> dict[str, Any]:
    """A tenant's sampled storage as JSON (``strata tenant storage``, the console)."""
    return {"tenant": tenant, "period_s": history.period_s, "samples": [{
        "at": iso_time(taken.at_us), "at_us": taken.at_us, "stored_bytes": taken.stored_bytes,
        "branches": [{"name": b.name, "owned_bytes": b.owned_bytes,
                      "history_bytes": b.history_bytes, "logical_size": b.logical_size}
                     for b in taken.branches],
        "checkpoints": [{"name": c.name, "branch": c.branch or None,
                         "held_bytes": c.held_bytes, "reclaim_bytes": c.reclaim_bytes}
                        for c in taken.checkpoints],
    } for taken in history.samples]}


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]],
                right: Sequence[str] = ()) -> None:
    """A table on stdout; columns named in ``right`` are right-aligned (numbers)."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    stdout_console().print(table)


def print_fields(fields: Sequence[tuple[str, str]]) -> None:
    """``label: value`` lines with aligned values."""
    from rich.table import Table

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for label, value in fields:
        table.add_row(label, value)
    stdout_console().print(table)


BRANCH_COLUMNS = ("name", "parent", "branch LSN", "last LSN", "last WAL position",
                  "last write", "created", "expires", "lease", "logical size", "owned")
BRANCH_NUMBERS = ("branch LSN", "last LSN", "last WAL position", "logical size", "owned")


def branch_row(branch: pb.BranchInfo) -> tuple[str, ...]:
    return (branch.name, branch.parent or "-", str(branch.branch_lsn), str(branch.last_lsn),
            format_wal_lsn(branch.last_wal_lsn), local_time(branch.last_time_us),
            local_time(branch.created_at_us), local_time(branch.expires_at_us, "never"),
            lease_text(branch.lease_s), human_size(branch.logical_size),
            human_size(branch.owned_bytes))


def lease_text(lease_s: int) -> str:
    """``10m`` for a leased branch (renewals move its expiry that far ahead), else ``-``."""
    if not lease_s:
        return "-"
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
        if lease_s % seconds == 0:
            return f"{lease_s // seconds}{unit}"
    return f"{lease_s}s"


def branch_fields(branch: pb.BranchInfo) -> list[tuple[str, str]]:
    return [
        ("name", branch.name),
        ("timeline", branch.timeline_id),
        ("parent", branch.parent or "- (root)"),
        ("branch LSN", str(branch.branch_lsn)),
        ("last LSN", str(branch.last_lsn)),
        ("last WAL position", format_wal_lsn(branch.last_wal_lsn)),
        ("last write", local_time(branch.last_time_us)),
        ("created", local_time(branch.created_at_us)),
        ("expires", local_time(branch.expires_at_us, "never")),
        ("lease", f"{lease_text(branch.lease_s)} (renew: strata branch renew {branch.name})"
         if branch.lease_s else "- (a TTL, or none)"),
        ("undo", "off" if branch.undo_off else "on (automatic checkpoints before "
                                                "destructive statements)"),
        ("logical size", f"{human_size(branch.logical_size)} ({branch.logical_size} bytes)"),
        ("owned bytes", f"{human_size(branch.owned_bytes)} ({branch.owned_bytes} bytes)"),
        ("history bytes", f"{human_size(branch.history_bytes)} ({branch.history_bytes} bytes)"),
        ("history window", f"{human_duration(branch.history_window_s)} "
                           f"({branch.history_window_from})"),
        ("writer epoch", str(branch.writer_epoch)),
        ("writer", branch.writer or "- (no compute)"),
        ("suspend timeout", f"{branch.suspend_timeout_s} s" if branch.suspend_timeout_s
         else "the proxy's default"),
        ("protected", "yes" if branch.protected else "no"),
        ("GC cutoff", str(branch.gc_cutoff)),
        ("children", ", ".join(branch.children) or "-"),
    ]


def _roots(branches: Sequence[pb.BranchInfo]) -> list[pb.BranchInfo]:
    names = {branch.name for branch in branches}
    return [branch for branch in branches if not branch.parent or branch.parent not in names]


def lineage(branches: Sequence[pb.BranchInfo]) -> list[dict[str, Any]]:
    """The branches as nested ``{"name", "branch_lsn", "last_lsn", "children"}`` dicts."""
    by_name = {branch.name: branch for branch in branches}

    def node(branch: pb.BranchInfo) -> dict[str, Any]:
        children = [by_name[name] for name in sorted(branch.children) if name in by_name]
        return {"name": branch.name, "branch_lsn": branch.branch_lsn,
                "last_lsn": branch.last_lsn, "children": [node(child) for child in children]}

    return [node(root) for root in _roots(branches)]


def print_lineage(tenant: str, nodes: Sequence[dict[str, Any]]) -> None:
    """Draw ``lineage(...)`` as a tree under the tenant's name."""
    from rich.text import Text
    from rich.tree import Tree

    tree = Tree(Text(tenant, "bold"))

    def add(parent: Tree, node: dict[str, Any]) -> None:
        branch = parent.add(Text.assemble((node["name"], "bold"),
                                          f"  branch LSN {node['branch_lsn']}",
                                          (f"  (last LSN {node['last_lsn']})", "dim")))
        for child in node["children"]:
            add(branch, child)

    for root in nodes:
        add(tree, root)
    stdout_console().print(tree)
