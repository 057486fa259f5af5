"""The compute's data path, one implementation behind both transports.

The gRPC servicers (``ingest_service.py``, ``page_service.py``) and the framed socket
server (``framed_server.py``) parse their own requests and call these: opening an ingest
stream (fenced by writer epoch), applying one batch (exactly once across reconnects,
held to the tenant's storage quota), and reading pages. So both transports give the same
answers, statuses and guarantees; only the bytes on the wire differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.convert import batch_from_pb
from common.errors import FailedPreconditionError, InvalidArgumentError
from common.frames import decode_record
from common.keys import Relation
from common.ops import Batch, Write
from pageserver.applied_batch import resent_lsn
from pageserver.engine import Engine
from pageserver.fencing import SupersededError
from pageserver.metrics import Metrics
from pageserver.storage_quota import check_storage, storage_full
from proto import strata_pb2 as pb

MAX_BATCH_BYTES = 64 * 1024 * 1024
MAX_BLOCKS_PER_REQUEST = 4096  # 32 MB of pages in one response


@dataclass(frozen=True)
class Acknowledged:
    """A batch made durable: its number, its LSN, whether the tenant's storage is full."""

    batch_id: int
    lsn: int
    storage_full: bool


class IngestSession:
    """One writer's ordered batches for one branch, opened at its writer epoch.

    Opening refuses a stale epoch (FAILED_PRECONDITION); a batch arriving once another
    page server attached the tenant ends the session with TenantElsewhereError naming it.
    """

    def __init__(self, engine: Engine, metrics: Metrics, tenant: str, branch: str,
                 writer_epoch: int) -> None:
        self._engine = engine
        self._metrics = metrics
        self._tenant_id = tenant
        self._tenant = engine.tenant(tenant)
        self._timeline = engine.timeline(tenant, branch or "main")
        self._epoch = writer_epoch
        self._batch_seconds = metrics.rpc_seconds.labels("IngestService/Ingest.batch")
        if writer_epoch != self._timeline.writer_epoch:
            raise FailedPreconditionError(
                f"writer epoch {writer_epoch} is stale: branch {branch!r} has writer epoch "
                f"{self._timeline.writer_epoch}; attach as writer first")

    def apply(self, message: pb.IngestBatch) -> Acknowledged:
        """Make the batch durable (or answer one sent again with the LSN it got)."""
        size = sum(len(op.write.data) for op in message.ops)
        _check_size(size)
        return self._apply(batch_from_pb(message), size, None)

    def apply_record(self, record: bytearray) -> Acknowledged:
        """As ``apply``, for a batch in the ingest log's encoding (a RECORD frame), which
        the log then stores as it came; its writer epoch must be the stream's."""
        _check_size(len(record))
        batch = decode_record(record)
        if batch.writer_epoch != self._epoch:
            raise InvalidArgumentError(
                f"the record names writer epoch {batch.writer_epoch}; this stream was "
                f"opened at writer epoch {self._epoch}")
        size = sum(len(op.data) for op in batch.ops if isinstance(op, Write))
        return self._apply(batch, size, record)

    def _apply(self, batch: Batch, size: int, record: bytearray | None) -> Acknowledged:
        self._engine.tenant(self._tenant_id)  # still served here: not detached meanwhile
        timeline = self._timeline
        with self._batch_seconds.time():
            if resent_lsn(timeline.applied_batch, self._epoch,
                          batch.batch_id) is None:  # one sent again passed it already
                check_storage(self._tenant, batch, timeline.files)
            try:
                lsn = timeline.ingest(batch, self._epoch, record)
            except SupersededError as exc:  # attached elsewhere: the writer follows it
                raise self._engine.elsewhere(self._tenant_id) from exc
        self._metrics.ingest_batches.inc()
        self._metrics.ingest_bytes.inc(size)
        return Acknowledged(batch.batch_id, lsn, storage_full(self._tenant))


def _check_size(size: int) -> None:
    if size > MAX_BATCH_BYTES:
        raise InvalidArgumentError(f"batch carries {size} bytes; the limit is {MAX_BATCH_BYTES}")


class PageReads:
    """Reads of any branch at any readable LSN (None: the newest durable one)."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self._engine = engine
        self._metrics = metrics
        self._request_seconds = metrics.rpc_seconds.labels("PageService/GetPages.request")

    def read(self, tenant: str, branch: str, lsn: int | None, relation: Relation,
             blocks: np.ndarray) -> tuple[int, list[bytes]]:
        """The read LSN and the images of ``blocks`` there."""
        with self._request_seconds.time():
            if len(blocks) > MAX_BLOCKS_PER_REQUEST:
                raise InvalidArgumentError(
                    f"{len(blocks)} blocks in one request; the limit is "
                    f"{MAX_BLOCKS_PER_REQUEST}")
            timeline = self._engine.timeline(tenant, branch or "main")
            read_lsn = timeline.resolve_read_lsn(lsn)
            pages = timeline.get_pages(relation, blocks, read_lsn)
        self._metrics.pages_served.inc(len(pages))
        return read_lsn, pages
