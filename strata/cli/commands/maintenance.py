"""``strata gc`` and ``strata compact``: upkeep."""

from __future__ import annotations

from typing import Any

import click

from proto import strata_pb2 as pb
from strata.cli.progress import working
from strata.cli.render import emit_json, emit_text, print_table
from strata.cli.session import Session, api_command
from strata.cli.units import human_duration, human_size

KEPT = (("current", "current_bytes"), ("window", "window_bytes"),
        ("checkpoints", "checkpoint_bytes"), ("branch points", "branch_point_bytes"))


@click.command()
@api_command
def gc(session: Session) -> None:
    """Remove layers nothing needs any more, and say what keeps the rest.

    A layer stays while the newest data, the history window, a checkpoint or a child
    branch point still reads it. Per branch: its history window (where it comes from:
    `strata branch show`), bytes removed, then bytes kept for each of those (see
    OPERATIONS, "Sizes and history").
    """
    with session.client() as client, working("collecting garbage", session.interactive):
        result = client.gc(session.tenant)
    if session.json:
        emit_json({"timelines": result.timelines, "layers_removed": result.layers_removed,
                   "bytes_removed": result.bytes_removed,
                   "history_window_s": result.history_window_s,
                   "branches": [_report_dict(report) for report in result.reports]})
        return
    emit_text(f"gc: {result.layers_removed} layers ({human_size(result.bytes_removed)}) "
              f"removed across {result.timelines} timelines")
    kept = [f"kept: {label}" for label, _ in KEPT]
    print_table(("branch", "window", "removed", *kept, "kept for"),
                [(_label(report), human_duration(report.history_window_s),
                  human_size(report.bytes_removed),
                  *(human_size(getattr(report, field)) for _, field in KEPT),
                  ", ".join(report.pinned_by) or "-") for report in result.reports],
                right=("removed", *kept))
    window = sum(report.window_bytes for report in result.reports)
    if window:
        emit_text(f"{human_size(window)} of history stays until it is older than its "
                  "branch's window (`strata branch set NAME --history`, `strata tenant set "
                  "NAME --history`).")
    young = [_label(r) for r in result.reports if not r.cutoff_lsn]
    if not result.bytes_removed and young:
        emit_text(f"Nothing of {', '.join(young)} is older than its window yet: its older "
                  "page versions stay inside the layers that hold the current ones.")


def _report_dict(report: pb.GcTimelineReport) -> dict[str, Any]:
    return {"branches": list(report.branches), "timeline_id": report.timeline_id,
            "cutoff_lsn": report.cutoff_lsn, "layers_removed": report.layers_removed,
            "bytes_removed": report.bytes_removed,
            "kept_bytes": {label.replace(" ", "_"): getattr(report, field)
                           for label, field in KEPT},
            "kept_for": list(report.pinned_by),
            "history_window_s": report.history_window_s,
            "history_window_from": report.history_window_from}


def _label(report: pb.GcTimelineReport) -> str:
    return ", ".join(report.branches) or f"({report.timeline_id[:12]}, unnamed)"


@click.command()
@click.option("--force", is_flag=True, help="Compact even below the thresholds.")
@api_command
def compact(session: Session, force: bool) -> None:
    """Flush and compact the tenant's layers.

    Memtables are flushed to L0 deltas, which merge into L1 deltas; image layers are
    written where deltas stack up.
    """
    with session.client() as client, working("compacting", session.interactive):
        result = client.compact(session.tenant, force=force)
    if session.json:
        emit_json({"l0_merged": result.l0_merged, "l1_written": result.l1_written,
                   "images_written": result.images_written})
    else:
        emit_text(f"compact: {result.l0_merged} L0 layers merged, {result.l1_written} L1 "
                  f"layers and {result.images_written} image layers written")
