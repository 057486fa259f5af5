"""IngestService: one compute's ordered stream of batches for one branch, fenced by epoch
and held to its tenant's storage quota. A tenant that leaves this page server (detached,
or attached by another) ends the stream UNAVAILABLE, naming where it went. The work is
``data_path.IngestSession``'s, shared with the framed transport."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from common.errors import InvalidArgumentError
from pageserver.api.data_path import IngestSession
from pageserver.api.handlers import Malformed, checked
from pageserver.engine import Engine
from pageserver.metrics import Metrics
from proto import strata_pb2 as pb


class IngestServicer:
    """Applies batches in stream order; acknowledges each once durable."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self._engine = engine
        self._metrics = metrics

    def Ingest(self, requests: Iterator[pb.IngestRequest | Malformed],
               context: grpc.ServicerContext) -> Iterator[pb.IngestResponse]:
        stream = checked(requests)
        first = next(stream, None)
        if first is None:
            return
        if first.WhichOneof("msg") != "open":
            raise InvalidArgumentError("an ingest stream must start with an open message")
        opened = first.open
        session = IngestSession(self._engine, self._metrics, opened.tenant, opened.branch,
                                opened.writer_epoch)
        for request in stream:
            if request.WhichOneof("msg") != "batch":
                raise InvalidArgumentError("only batches may follow the open message")
            done = session.apply(request.batch)
            yield pb.IngestResponse(batch_id=done.batch_id, lsn=done.lsn,
                                    storage_full=done.storage_full)
