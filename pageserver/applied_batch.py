"""A timeline's record of the last batch a writer numbered, and the rule for the next one.

A writer numbers its batches, increasing by one within its writer epoch. The
timeline records the last numbered batch it applied as (epoch, id, LSN); the
record travels with the batch into the ingest log and, once the batch is in
layers, into the timeline manifest, so it survives a page-server restart.

A writer that lost an acknowledgement (a broken stream, a failed flush) sends
its batch again. That batch is then exactly the recorded one: it is answered
with the LSN it got and not applied twice. Any other id at or below the
record, and any id past the next one (a gap: batches in between were never
applied), is refused: the writer has lost track of what the branch holds.
A batch without an id (0) opts out: it is applied and not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.errors import FailedPreconditionError


@dataclass(frozen=True)
class AppliedBatch:
    """The last numbered batch a timeline applied; all zero when there is none."""

    writer_epoch: int = 0
    batch_id: int = 0
    lsn: int = 0

    def to_json(self) -> dict[str, int]:
        return {"writer_epoch": self.writer_epoch, "batch_id": self.batch_id, "lsn": self.lsn}

    @staticmethod
    def from_json(obj: dict[str, Any] | None) -> AppliedBatch:
        """The record of a manifest; a manifest older than the record has none."""
        if obj is None:
            return AppliedBatch()
        return AppliedBatch(int(obj["writer_epoch"]), int(obj["batch_id"]), int(obj["lsn"]))


def resent_lsn(last: AppliedBatch, writer_epoch: int, batch_id: int) -> int | None:
    """The LSN of batch ``batch_id`` of ``writer_epoch`` if it is the ``last`` one applied
    (a re-send); None if it is new and comes next; refused if it is out of order."""
    if not batch_id or last.writer_epoch != writer_epoch:
        return None  # unnumbered, or the epoch's first numbered batch
    if batch_id == last.batch_id:
        return last.lsn
    if batch_id < last.batch_id:
        raise FailedPreconditionError(
            f"batch {batch_id} of writer epoch {writer_epoch} was applied before batch "
            f"{last.batch_id}; only the last applied batch may be sent again")
    if batch_id > last.batch_id + 1:
        raise FailedPreconditionError(
            f"batch {batch_id} of writer epoch {writer_epoch} follows batch "
            f"{last.batch_id}: the batches in between were never applied")
    return None
