"""IngestService: one compute's ordered stream of batches for one branch, fenced by epoch
and held to its tenant's storage quota. A tenant that leaves this page server (detached,
or attached by another) ends the stream UNAVAILABLE, naming where it went."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from common.convert import batch_from_pb
from common.errors import FailedPreconditionError, InvalidArgumentError
from pageserver.api.handlers import Malformed, checked
from pageserver.applied_batch import resent_lsn
from pageserver.engine import Engine
from pageserver.fencing import SupersededError
from pageserver.metrics import Metrics
from pageserver.storage_quota import check_storage, storage_full
from proto import strata_pb2 as pb

MAX_BATCH_BYTES = 64 * 1024 * 1024


class IngestServicer:
    """Applies batches in stream order; acknowledges each once durable."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self._engine = engine
        self._metrics = metrics
        self._batch_seconds = metrics.rpc_seconds.labels("IngestService/Ingest.batch")

    def Ingest(self, requests: Iterator[pb.IngestRequest | Malformed],
               context: grpc.ServicerContext) -> Iterator[pb.IngestResponse]:
        stream = checked(requests)
        first = next(stream, None)
        if first is None:
            return
        if first.WhichOneof("msg") != "open":
            raise InvalidArgumentError("an ingest stream must start with an open message")
        opened = first.open
        tenant = self._engine.tenant(opened.tenant)
        timeline = self._engine.timeline(opened.tenant, opened.branch or "main")
        if opened.writer_epoch != timeline.writer_epoch:
            raise FailedPreconditionError(
                f"writer epoch {opened.writer_epoch} is stale: branch {opened.branch!r} has "
                f"writer epoch {timeline.writer_epoch}; attach as writer first")
        for request in stream:
            if request.WhichOneof("msg") != "batch":
                raise InvalidArgumentError("only batches may follow the open message")
            size = sum(len(op.write.data) for op in request.batch.ops)
            if size > MAX_BATCH_BYTES:
                raise InvalidArgumentError(
                    f"batch carries {size} bytes; the limit is {MAX_BATCH_BYTES}")
            batch = batch_from_pb(request.batch)
            self._engine.tenant(opened.tenant)  # still served here: not detached meanwhile
            with self._batch_seconds.time():
                if resent_lsn(timeline.applied_batch, opened.writer_epoch,
                              batch.batch_id) is None:  # one sent again passed it already
                    check_storage(tenant, batch, timeline.files)
                try:
                    lsn = timeline.ingest(batch, opened.writer_epoch)
                except SupersededError as exc:  # attached elsewhere: the writer follows it
                    raise self._engine.elsewhere(opened.tenant) from exc
            self._metrics.ingest_batches.inc()
            self._metrics.ingest_bytes.inc(size)
            yield pb.IngestResponse(batch_id=request.batch.batch_id, lsn=lsn,
                                    storage_full=storage_full(tenant))
