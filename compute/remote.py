"""The compute's connections to the page server: page reads and the ordered ingest stream.

Both retry transient failures (the page server restarting, a broken stream,
a page server busy with as many streams as it admits, the tenant detached and not
attached anywhere yet) with backoff for a bounded time, and follow the tenant when the
page server says it moved to another (its address in the trailing metadata): the next
attempt goes there, and ingest resumes from the first unacknowledged batch. Past the
budget they give up with ``PageServerUnavailable`` so the shim can answer EIO:
PostgreSQL then stops safely, and nothing was acknowledged that is not durable. A batch
refused by the tenant's storage quota is not retried: it
raises ``StorageFullError`` at once, which the shim answers with ENOSPC.

Given a ``data_plane`` address, both speak the framed protocol (``compute/framed.py``,
rfcs/0020) to the page server they started with, and gRPC streams otherwise; after
following the tenant to another page server they use gRPC there (the framed address of
the new home is not recorded anywhere they could learn it).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar, cast

import grpc
from google.protobuf.message import Message

from common.client import ClientError, StrataClient
from common.convert import op_to_pb, relation_to_pb
from common.errors import STORAGE_FULL
from common.frames import Buffer
from common.keys import Relation
from common.ops import Batch
from compute.framed import FramedIngest, FramedPages, FramedRefused
from compute.view import PageServerError, StorageFullError
from proto import strata_pb2 as pb

_T = TypeVar("_T")
_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)
CLOSE_WAIT_S = 5.0
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED})


class PageServerUnavailable(PageServerError):
    """The page server could not be reached within the retry budget."""


class PageServerRefused(PageServerError):
    """The page server answered with a definite error (e.g. a stale writer epoch)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code


def retrying(what: str, attempt: Callable[[], _T], budget_s: float,
             client: StrataClient | None = None) -> _T:
    """``attempt()`` until it succeeds, retrying transient gRPC failures for ``budget_s``.

    A failure saying that the tenant moved to another page server points ``client`` there
    and is retried at once; one saying it is attached nowhere (between a detach and the
    next attach) is retried with backoff like any other UNAVAILABLE.
    """
    deadline = time.monotonic() + budget_s
    delay = 0.05
    while True:
        try:
            return attempt()
        except (grpc.RpcError, ClientError, FramedRefused) as exc:
            code, message = _status(exc)
            if refused_for_storage(exc):
                raise StorageFullError(message) from exc
            if code not in RETRYABLE:
                raise PageServerRefused(code, message) from exc
            if client is not None and _followed(client, exc):
                delay = 0.05
                continue
            if time.monotonic() + delay > deadline:
                raise PageServerUnavailable(f"{what}: {code.name} for {budget_s:g} s") from exc
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


_Failure = grpc.RpcError | ClientError | FramedRefused


def _followed(client: StrataClient, exc: _Failure) -> bool:
    """Whether ``exc`` named a new home of the tenant that ``client`` now calls (a unary
    call's ClientError: the client followed it already, if it follows moves)."""
    if isinstance(exc, ClientError):
        return bool(exc.location) and exc.location == client.address
    if isinstance(exc, FramedRefused):
        return client.follow_to(exc.location)
    return client.follow(exc)


def refused_for_storage(exc: _Failure) -> bool:
    """Whether the page server refused for the tenant's storage quota (its trailing
    metadata or ERROR frame says so; a busy server's RESOURCE_EXHAUSTED does not)."""
    if isinstance(exc, FramedRefused):
        return exc.storage_quota
    if not isinstance(exc, grpc.Call):
        return False
    return STORAGE_FULL in tuple(exc.trailing_metadata() or ())


def _refused_as_busy(exc: grpc.RpcError | FramedRefused) -> bool:
    if isinstance(exc, FramedRefused):
        return exc.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    return isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


class _Home:
    """Which transport the data path uses: framed to ``data_plane`` while ``client`` still
    calls the page server it started with, gRPC otherwise."""

    def __init__(self, client: StrataClient, data_plane: str) -> None:
        self._client = client
        self._data_plane = data_plane
        self._started_at = client.address

    def framed(self) -> str:
        """The data-plane address to use now; "" for gRPC."""
        return self._data_plane if self._client.address == self._started_at else ""


class PageReader:
    """Batched GetPages over a small pool of long-lived streams.

    The pool is bounded: each open stream holds a worker thread of the page
    server, so one compute must not open a stream per FUSE thread; and a stream is
    opened only when every open one is busy. A stream the
    page server refuses to open (its tenant has as many as it may) gives up its
    slot for good while another stream is open, so reads share the open ones;
    with none open, the read backs off and tries again.
    """

    def __init__(self, client: StrataClient, tenant: str, branch: str,
                 retry_budget_s: float = 30.0, streams: int = 4, data_plane: str = "") -> None:
        self._client = client
        self._tenant = tenant
        self._branch = branch
        self._budget = retry_budget_s
        self._home = _Home(client, data_plane)
        # Last in, first out: a call takes the stream used last, and opens another only
        # when every open one is busy, so a compute holds as many streams as its reads
        # have needed at once (a scan's read-ahead), not the whole pool.
        self._pool: queue.LifoQueue[_Pages | None] = queue.LifoQueue()
        for _ in range(streams):
            self._pool.put(None)  # opened on first use
        self._ids = iter(range(1, 1 << 62))
        self._open_lock = threading.Lock()
        self.open_streams = 0
        self.round_trips = 0

    def get_pages(self, relation: Relation, blocks: list[int]) -> Sequence[Buffer]:
        """The newest durable images of ``blocks`` (over the framed data plane: views into
        the buffer the answer arrived in)."""
        request_id = next(self._ids)

        def attempt() -> Sequence[Buffer] | PageServerRefused:
            stream = self._pool.get()
            fresh, keep_slot = stream is None, True
            try:
                stream = stream or self._open()
                response = stream.fetch(request_id, relation, blocks)
                if fresh:
                    self._count_open(+1)
                return response
            except (grpc.RpcError, FramedRefused) as exc:
                if stream is not None:
                    stream.close()
                if not fresh:
                    self._count_open(-1)
                elif _refused_as_busy(exc):
                    keep_slot = self._retire_slot()
                stream = None
                raise
            finally:
                if keep_slot:
                    self._pool.put(stream)

        response = retrying("GetPages", attempt, self._budget, self._client)
        self.round_trips += 1
        if isinstance(response, PageServerRefused):
            raise response
        return response

    def _open(self) -> _Pages:
        address = self._home.framed()
        if address:
            return _FramedPages(address, self._client.token, self._tenant, self._branch)
        return _GrpcPages(self._client, self._tenant, self._branch)

    def _count_open(self, change: int) -> None:
        with self._open_lock:
            self.open_streams += change

    def _retire_slot(self) -> bool:
        """Give up a slot whose stream the page server refused, if another stream is open;
        False if the slot was retired."""
        with self._open_lock:
            return self.open_streams == 0

    def close(self) -> None:
        """End every open stream, waiting at most ``CLOSE_WAIT_S`` for all of them."""
        deadline = time.monotonic() + CLOSE_WAIT_S
        while not self._pool.empty():
            stream = self._pool.get_nowait()
            if stream is not None:
                stream.close(max(deadline - time.monotonic(), 0.0))


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _status(exc: _Failure) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ClientError):
        return exc.code, str(exc)
    if isinstance(exc, FramedRefused):
        return exc.code, exc.message
    call = exc if isinstance(exc, grpc.Call) else None
    if call is None:
        return grpc.StatusCode.UNKNOWN, str(exc)
    return call.code(), call.details() or ""


class _Exchange(Generic[_Req, _Resp]):
    """One bidirectional stream used as request/response pairs, one at a time."""

    def __init__(self, open_stream: Callable[[Iterator[_Req]], Iterator[_Resp]],
                 first: _Req | None = None) -> None:
        self._requests: queue.Queue[_Req | None] = queue.Queue()
        if first is not None:
            self._requests.put(first)
        self._responses = open_stream(self._feed())

    def _feed(self) -> Iterator[_Req]:
        while (request := self._requests.get()) is not None:
            yield request

    def exchange(self, request: _Req) -> _Resp:
        self._requests.put(request)
        return next(self._responses)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """End the stream: half-close it and wait up to ``wait_s`` for the page server to
        end its side, so that the server sees a clean end rather than a cancel when the
        channel closes next. A stream still open after that is cancelled."""
        self._requests.put(None)
        call = cast("grpc.Future[object]", self._responses)
        try:
            call.exception(timeout=wait_s)
        except grpc.FutureTimeoutError:
            call.cancel()
        except grpc.FutureCancelledError:
            pass


class _Pages(Protocol):
    """A GetPages stream of either transport."""

    def fetch(self, request_id: int, relation: Relation,
              blocks: list[int]) -> Sequence[Buffer] | PageServerRefused:
        """The pages, or the page server's in-band refusal of this request."""

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None: ...


class _Ingest(Protocol):
    """An Ingest stream of either transport, opened at the writer's epoch."""

    def send(self, batch: Batch) -> tuple[int, bool]:
        """The batch's LSN once durable, and whether the tenant's storage is full."""

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None: ...


class _GrpcPages:
    def __init__(self, client: StrataClient, tenant: str, branch: str) -> None:
        self._at = pb.ReadPoint(tenant=tenant, branch=branch, latest=True)
        self._stream: _Exchange[pb.GetPagesRequest, pb.GetPagesResponse] = _Exchange(
            client.open_page_stream)

    def fetch(self, request_id: int, relation: Relation,
              blocks: list[int]) -> Sequence[Buffer] | PageServerRefused:
        response = self._stream.exchange(pb.GetPagesRequest(
            request_id=request_id, relation=relation_to_pb(relation), blocks=blocks,
            at=self._at))
        if response.status.code:
            return PageServerRefused(_CODES.get(response.status.code,
                                                grpc.StatusCode.UNKNOWN),
                                     response.status.message)
        return list(response.pages)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        self._stream.close(wait_s)


class _FramedPages:
    def __init__(self, address: str, token: str, tenant: str, branch: str) -> None:
        self._stream = FramedPages(address, token, tenant, branch)

    def fetch(self, request_id: int, relation: Relation,
              blocks: list[int]) -> Sequence[Buffer] | PageServerRefused:
        try:
            return self._stream.fetch(request_id, relation, blocks)
        except FramedRefused as exc:
            if exc.ends_connection:
                raise
            return PageServerRefused(exc.code, exc.message)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        self._stream.close(wait_s)


class _GrpcIngest:
    def __init__(self, client: StrataClient, tenant: str, branch: str, epoch: int) -> None:
        opening = pb.IngestRequest(open=pb.IngestOpen(tenant=tenant, branch=branch,
                                                      writer_epoch=epoch))
        self._stream: _Exchange[pb.IngestRequest, pb.IngestResponse] = _Exchange(
            client.open_ingest_stream, opening)

    def send(self, batch: Batch) -> tuple[int, bool]:
        message = pb.IngestBatch(batch_id=batch.batch_id, wal_lsn=batch.wal_lsn,
                                 timestamp_us=batch.timestamp_us,
                                 ops=[op_to_pb(op) for op in batch.ops])
        response = self._stream.exchange(pb.IngestRequest(batch=message))
        return int(response.lsn), response.storage_full

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        self._stream.close(wait_s)


class BatchWriter:
    """Ships batches in order over one Ingest stream; each call returns once durable.

    Exactly once across reconnects: batches carry the writer's numbers (the view
    numbers them as it cuts them). Before a stream is opened, the writer asks the
    page server for the last numbered batch the branch made durable; a batch of
    this writer's epoch with that number was applied before the old stream broke
    and is not sent again. One sent again anyway (its first sending was still in
    flight) is answered by the page server with the LSN it got. No LSN comparison
    decides it: the branch's LSN also moves for a writer that fenced this one.
    """

    def __init__(self, client: StrataClient, tenant: str, branch: str, epoch: int,
                 acked_lsn: int, retry_budget_s: float = 30.0, data_plane: str = "") -> None:
        self._client = client
        self._home = _Home(client, data_plane)
        self._tenant = tenant
        self._branch = branch
        self._epoch = epoch
        self._budget = retry_budget_s
        self.acked_lsn = acked_lsn
        self._lock = threading.Lock()
        self._stream: _Ingest | None = None
        self.storage_full = False

    def write(self, batch: Batch) -> int:
        """Make ``batch`` (numbered, ``batch_id`` > 0) durable on the page server; returns
        its LSN."""
        if not batch.batch_id:
            raise ValueError("the writer ships numbered batches only")
        with self._lock:

            def attempt() -> int:
                if self._stream is None:
                    applied = self._applied_lsn(batch.batch_id)
                    if applied is not None:
                        return applied
                    self._stream = self._open()
                try:
                    lsn, self.storage_full = self._stream.send(batch)
                    return lsn
                except (grpc.RpcError, FramedRefused):
                    self._stream.close()
                    self._stream = None
                    raise

            lsn = retrying("Ingest", attempt, self._budget, self._client)
            self.acked_lsn = lsn
            return lsn

    def _open(self) -> _Ingest:
        address = self._home.framed()
        if address:
            return FramedIngest(address, self._client.token, self._tenant, self._branch,
                                self._epoch)
        return _GrpcIngest(self._client, self._tenant, self._branch, self._epoch)

    def _applied_lsn(self, batch_id: int) -> int | None:
        """The LSN of this writer's batch ``batch_id`` if the branch holds it durably
        already; None if its record does not show it (not applied, or not durable yet:
        then the page server answers it sent again with the LSN it got)."""
        last = self._client.get_branch(self._tenant, self._branch).last_batch
        if last.writer_epoch != self._epoch or last.batch_id < batch_id:
            return None  # another epoch's record: the stream's open decides on fencing
        if last.batch_id > batch_id:
            raise PageServerRefused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the branch holds batch {last.batch_id} of writer epoch {self._epoch}, "
                f"past batch {batch_id} being sent")
        return int(last.lsn)

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
