"""``strata gc`` and ``strata compact``: upkeep."""

from __future__ import annotations

import click

from strata.cli.progress import working
from strata.cli.render import emit_json, emit_text
from strata.cli.session import Session, api_command
from strata.cli.units import human_size


@click.command()
@api_command
def gc(session: Session) -> None:
    """Remove layers nothing needs any more.

    A layer stays while a branch, a checkpoint or the PITR window still needs it.
    """
    with session.client() as client, working("collecting garbage", session.interactive):
        result = client.gc(session.tenant)
    if session.json:
        emit_json({"timelines": result.timelines, "layers_removed": result.layers_removed,
                   "bytes_removed": result.bytes_removed})
    else:
        emit_text(f"gc: {result.layers_removed} layers ({human_size(result.bytes_removed)}) "
                  f"removed across {result.timelines} timelines")


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
