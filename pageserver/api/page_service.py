"""PageService: batched page reads over a long-lived stream, and file-tree lookups at an LSN."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np

from common.convert import file_info, relation_from_pb
from common.errors import StrataError, TenantElsewhereError
from common.ops import FileKind
from common.pages import blocks_for
from pageserver.api.data_path import PageReads
from pageserver.api.handlers import Malformed
from pageserver.api.status import status_of
from pageserver.engine import Engine
from pageserver.metrics import Metrics
from pageserver.timeline import Timeline
from proto import strata_pb2 as pb


class PageServicer:
    """Serves reads of any branch at any readable LSN (``data_path.PageReads``, shared
    with the framed transport)."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self._engine = engine
        self._reads = PageReads(engine, metrics)

    def _resolve(self, at: pb.ReadPoint) -> tuple[Timeline, int]:
        timeline = self._engine.timeline(at.tenant, at.branch or "main")
        return timeline, timeline.resolve_read_lsn(None if at.latest else at.lsn)

    def GetPages(self, requests: Iterator[pb.GetPagesRequest | Malformed],
                 context: grpc.ServicerContext) -> Iterator[pb.GetPagesResponse]:
        """Answers each request in order; a bad request gets an in-band status. A tenant
        that left this page server ends the stream (UNAVAILABLE, naming where it went), so
        the compute reopens it there."""
        for request in requests:
            yield self._get_pages(request)

    def _get_pages(self, request: pb.GetPagesRequest | Malformed) -> pb.GetPagesResponse:
        if isinstance(request, Malformed):
            return pb.GetPagesResponse(status=pb.Status(
                code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                message=f"malformed request message: {request.error}"))
        try:
            at = request.at
            lsn, pages = self._reads.read(at.tenant, at.branch, None if at.latest else at.lsn,
                                          relation_from_pb(request.relation),
                                          np.array(request.blocks, dtype=np.int64))
        except TenantElsewhereError:
            raise
        except StrataError as exc:
            return pb.GetPagesResponse(request_id=request.request_id, status=pb.Status(
                code=status_of(exc).value[0], message=str(exc)))
        return pb.GetPagesResponse(request_id=request.request_id, lsn=lsn, pages=pages)

    def ListFiles(self, request: pb.ListFilesRequest,
                  context: grpc.ServicerContext) -> pb.ListFilesResponse:
        timeline, lsn = self._resolve(request.at)
        prefix = request.prefix.strip("/")
        files = [
            file_info(path, meta) for path, meta in timeline.list_files(lsn).items()
            if not prefix or path == prefix or path.startswith(prefix + "/")
        ]
        return pb.ListFilesResponse(lsn=lsn, files=files)

    def Stat(self, request: pb.StatRequest, context: grpc.ServicerContext) -> pb.StatResponse:
        timeline, lsn = self._resolve(request.at)
        return pb.StatResponse(lsn=lsn, file=file_info(request.path,
                                                       timeline.stat(request.path, lsn)))

    def RelationSize(self, request: pb.RelationSizeRequest,
                     context: grpc.ServicerContext) -> pb.RelationSizeResponse:
        """Blocks of a relation: the end of its furthest segment file at the LSN."""
        timeline, lsn = self._resolve(request.at)
        wanted = relation_from_pb(request.relation).to_bytes()
        blocks = max((
            meta.block_offset + blocks_for(meta.size)
            for meta in timeline.list_files(lsn).values()
            if meta.kind == FileKind.FILE and meta.relation == wanted
        ), default=0)
        return pb.RelationSizeResponse(lsn=lsn, blocks=blocks)



