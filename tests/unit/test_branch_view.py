"""The compute shim's core without a mount: ``BranchView`` over a fake page server.

File operations are called on the view directly, as FUSE would through the
adapter; a fake reader serves pages and a fake writer records the batches the
view ships (and fails on demand), so ordering, requeueing and the cache's
bookkeeping are checked without root, FUSE or a server. The page cache is the
real one, in a temporary directory.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from common.keys import PAGE_SIZE, ZERO_PAGE, Relation
from common.ops import (
    Batch,
    Chmod,
    Create,
    FileKind,
    FileOp,
    Mkdir,
    Rename,
    Truncate,
    Unlink,
    Write,
)
from compute.page_cache import MIB, PageCache, PageState
from compute.prefetch import CHUNK_PAGES
from compute.view import (
    MAX_EXTENT_BYTES,
    BranchView,
    Node,
    PageServerError,
    StorageFullError,
)

P = PAGE_SIZE
OLD = b"o" * P  # what the page server holds of file "f" at mount time
SERVER = b"s" * P  # what it answers for any other page
FILE_REL = Relation.synthetic(7).to_bytes()
SMALL_REL = Relation.synthetic(9).to_bytes()
BIG_REL = Relation.synthetic(11).to_bytes()
WAL_REL = Relation.synthetic(13).to_bytes()
WAL = "pg_wal/000000010000000000000001"  # a WAL segment: rewrites ship what they change
BIG_PAGES = 2048
WAIT_S = 10


class FakeReader:
    """Serves pages from a dict; ``gate`` (if set) holds every fetch until it opens."""

    def __init__(self) -> None:
        self.pages = {(FILE_REL, block): OLD for block in range(3)}
        self.pages[(SMALL_REL, 0)] = OLD
        self.pages.update({(WAL_REL, block): OLD for block in range(3)})
        self.calls: list[list[int]] = []
        self.entered = threading.Event()
        self.gate: threading.Event | None = None
        self.fail_from: int | None = None  # refuse requests for blocks from this one on

    def get_pages(self, relation: Relation, blocks: list[int]) -> list[bytes]:
        self.calls.append(list(blocks))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT_S)
        if self.fail_from is not None and blocks[0] >= self.fail_from:
            raise PageServerError("page server unreachable")
        return [self.pages.get((relation.to_bytes(), block), SERVER) for block in blocks]


class FakeWriter:
    """Records acknowledged batches; with ``accept`` set, acknowledges that many, then fails."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.attempts: list[Batch] = []
        self.accept: int | None = None
        self.storage_full = False  # what acknowledgements say
        self.refuse_storage = False  # refuse every batch for the storage quota

    def write(self, batch: Batch) -> int:
        self.attempts.append(batch)
        if self.refuse_storage:
            raise StorageFullError("tenant 't' uses 10 bytes of its storage quota of 5 bytes")
        if self.accept is not None:
            if self.accept == 0:
                raise PageServerError("page server unreachable")
            self.accept -= 1
        self.batches.append(batch)
        return len(self.batches)

    @property
    def ops(self) -> list[FileOp]:
        return [op for batch in self.batches for op in batch.ops]


class TicketSignallingCache(PageCache):
    """A page cache that says when the second fetch has taken its ticket."""

    def __init__(self, directory: Path, capacity_mb: float) -> None:
        super().__init__(directory, capacity_mb)
        self.tickets = 0
        self.second_ticket = threading.Event()

    def fetch_ticket(self) -> int:
        self.tickets += 1
        if self.tickets == 2:
            self.second_ticket.set()
        return super().fetch_ticket()


@dataclass
class Harness:
    view: BranchView
    cache: PageCache
    reader: FakeReader
    writer: FakeWriter


class MakeHarness(Protocol):
    def __call__(self, capacity_pages: int = 64, batch_bytes: int = 16 * 1024 * 1024,
                 cache_type: type[PageCache] = PageCache,
                 ship_after: int = 16 * 1024 * 1024) -> Harness: ...


@pytest.fixture
def make(tmp_path: Path) -> Iterator[MakeHarness]:
    caches: list[PageCache] = []
    views: list[BranchView] = []

    def build(capacity_pages: int = 64, batch_bytes: int = 16 * 1024 * 1024,
              cache_type: type[PageCache] = PageCache,
              ship_after: int = 16 * 1024 * 1024) -> Harness:
        tree = {
            "": Node("", FileKind.DIR, 0o700),
            "f": Node("f", FileKind.FILE, 0o600, 3 * P, FILE_REL),
            "small": Node("small", FileKind.FILE, 0o600, P, SMALL_REL),
            "big": Node("big", FileKind.FILE, 0o600, BIG_PAGES * P, BIG_REL),
            "pg_wal": Node("pg_wal", FileKind.DIR, 0o700),
            WAL: Node(WAL, FileKind.FILE, 0o600, 3 * P, WAL_REL),
        }
        cache = cache_type(tmp_path / f"cache{len(caches)}", capacity_pages * P / MIB)
        caches.append(cache)
        reader, writer = FakeReader(), FakeWriter()
        view = BranchView(tree, cache, reader, writer, batch_bytes=batch_bytes,
                          ship_after=ship_after)
        views.append(view)
        return Harness(view, cache, reader, writer)

    yield build
    for view in views:
        view.close()
    for cache in caches:
        cache.close()


def page(fill: bytes) -> bytes:
    return fill * P


def test_operations_ship_in_the_order_they_were_applied(make: MakeHarness) -> None:
    h = make(batch_bytes=P)  # a batch ends after each page of data
    view = h.view
    a = view.create("a", 0o600)
    view.write(a, page(b"1"), 0)
    view.truncate("a", 100)
    view.rename("a", "b")
    view.write(a, page(b"2"), P)  # through the handle: the file is "b" now
    view.mkdir("d", 0o700)
    view.rename("b", "d/c")
    view.unlink("f")
    view.chmod("d/c", 0o644)
    assert h.writer.batches == []  # nothing ships before a flush
    view.flush()
    assert h.writer.ops == [
        Create("a", 0o600, a.relation), Write("a", 0, page(b"1")), Truncate("a", 100),
        Rename("a", "b"), Write("b", P, page(b"2")), Mkdir("d", 0o700), Rename("b", "d/c"),
        Unlink("f"), Chmod("d/c", 0o644),
    ]
    assert len(h.writer.batches) == 3  # cut after each write, order kept across batches
    assert view.read(a, 2 * P, 0) == b"1" * 100 + bytes(P - 100) + page(b"2")


def test_blocks_past_a_pending_truncate_read_as_zeros_until_it_is_durable(
        make: MakeHarness) -> None:
    h = make()
    f = h.view.open("f")
    h.view.truncate("f", P)
    h.view.write(f, page(b"w"), 2 * P)  # block 1 is now a hole the server still holds
    assert h.view.read(f, P, P) == ZERO_PAGE
    assert h.reader.calls == []  # not even asked
    h.writer.accept = 0
    with pytest.raises(OSError):
        h.view.flush()
    assert h.view.read(f, P, P) == ZERO_PAGE  # the truncate is still not durable
    h.writer.accept = None
    h.view.flush()
    h.reader.pages[(FILE_REL, 1)] = SERVER  # the page server's copy is now the truth
    assert h.view.read(f, P, P) == SERVER
    assert h.reader.calls == [[1]]


def test_a_failed_flush_requeues_everything_for_the_next_one(make: MakeHarness) -> None:
    h = make()
    f = h.view.open("f")
    h.view.write(f, page(b"a"), 0)
    h.view.truncate("f", 2 * P)
    h.writer.accept = 0
    with pytest.raises(OSError) as failure:
        h.view.flush()
    assert failure.value.errno == errno.EIO
    assert isinstance(h.view.failed, PageServerError)
    assert h.writer.batches == []
    assert h.cache.state(f.key(0)) is PageState.DIRTY  # not durable: must not be evicted
    h.view.write(f, page(b"b"), P)
    h.writer.accept = None
    h.view.flush()
    assert h.writer.ops == [Write("f", 0, page(b"a")), Truncate("f", 2 * P),
                            Write("f", P, page(b"b"))]
    assert h.cache.state(f.key(0)) is PageState.CLEAN
    assert h.cache.state(f.key(1)) is PageState.CLEAN


def test_a_flush_that_failed_part_way_resumes_without_resending(make: MakeHarness) -> None:
    h = make(batch_bytes=P)  # a batch ends after each page of data
    view = h.view
    f = view.open("f")
    n = view.create("n", 0o600)
    view.write(n, page(b"n"), 2 * P)  # batch 1: blocks 0-1 of "n" are holes
    view.write(f, page(b"a"), 0)  # batch 2
    m = view.create("m", 0o600)
    view.write(m, page(b"m"), 2 * P)  # batch 3
    view.write(f, page(b"b"), P)  # batch 4
    view.chmod("f", 0o640)  # batch 5, not full
    expected = [Create("n", 0o600, n.relation), Write("n", 2 * P, page(b"n")),
                Write("f", 0, page(b"a")),
                Create("m", 0o600, m.relation), Write("m", 2 * P, page(b"m")),
                Write("f", P, page(b"b")), Chmod("f", 0o640), Mkdir("later", 0o700)]
    h.writer.accept = 2
    with pytest.raises(OSError):
        view.flush()
    assert h.writer.ops == expected[:3]
    in_flight = h.writer.attempts[-1]  # the page server may have applied it: the writer checks
    # Acknowledged pages are durable, hence clean; the others stay dirty.
    assert h.cache.state(n.key(2)) is PageState.CLEAN
    assert h.cache.state(f.key(0)) is PageState.CLEAN
    assert h.cache.state(m.key(2)) is PageState.DIRTY
    assert h.cache.state(f.key(1)) is PageState.DIRTY
    # "n" exists on the page server now; "m" does not yet.
    assert view.read(n, P, 0) == SERVER
    assert view.read(m, P, 0) == ZERO_PAGE
    view.mkdir("later", 0o700)
    h.writer.accept = None
    view.flush()
    assert h.writer.ops == expected  # batches 1 and 2 were not sent again
    assert h.writer.batches[2] == in_flight  # resent exactly as it was cut
    assert [len(batch.ops) for batch in h.writer.batches] == [2, 1, 2, 1, 1, 1]
    assert h.cache.state(f.key(1)) is PageState.CLEAN


def test_a_full_cache_is_flushed_and_the_write_retried(make: MakeHarness) -> None:
    h = make(capacity_pages=2)
    f = h.view.open("f")
    h.view.write(f, page(b"a"), 0)
    h.view.write(f, page(b"b"), P)  # every slot now holds an unflushed page
    h.view.write(f, page(b"c"), 2 * P)
    assert h.writer.ops == [Write("f", 0, page(b"a") + page(b"b"))]  # adjacent: one
    h.view.flush()
    assert h.writer.ops[1:] == [Write("f", 2 * P, page(b"c"))]
    assert len(h.writer.batches) == 2
    assert h.view.read(f, P, 2 * P) == page(b"c")


def test_a_write_racing_a_fetch_of_its_page_wins(make: MakeHarness) -> None:
    h = make()
    f = h.view.open("f")
    h.reader.gate = threading.Event()
    got: list[bytes] = []
    reading = threading.Thread(target=lambda: got.append(h.view.read(f, P, 0)))
    reading.start()
    assert h.reader.entered.wait(WAIT_S)  # the fetch of block 0 is in flight
    h.view.write(f, page(b"w"), 0)
    h.reader.gate.set()  # the fetch returns the page server's older copy
    reading.join(WAIT_S)
    assert got == [page(b"w")]
    assert h.cache.state(f.key(0)) is PageState.DIRTY
    assert h.view.read(f, P, 0) == page(b"w")


def test_concurrent_readers_of_a_page_share_one_fetch(make: MakeHarness) -> None:
    h = make(cache_type=TicketSignallingCache)
    cache = h.cache
    assert isinstance(cache, TicketSignallingCache)
    small = h.view.open("small")
    h.reader.gate = threading.Event()
    got: list[bytes] = []
    first = threading.Thread(target=lambda: got.append(h.view.read(small, P, 0)))
    first.start()
    assert h.reader.entered.wait(WAIT_S)  # the first reader's fetch is in flight
    second = threading.Thread(target=lambda: got.append(h.view.read(small, P, 0)))
    second.start()
    # The second reader takes its ticket and looks for fetches in flight in one step,
    # under the view's lock, which the first fetch needs before it can finish.
    assert cache.second_ticket.wait(WAIT_S)
    h.reader.gate.set()
    first.join(WAIT_S)
    second.join(WAIT_S)
    assert got == [OLD, OLD]
    assert h.reader.calls == [[0]]


def test_a_full_storage_quota_is_a_full_disk_and_loses_nothing(make: MakeHarness) -> None:
    h = make()
    h.view.mkdir("base", 0o700)
    h.view.mkdir("base/1", 0o700)
    relation = h.view.create("base/1/2", 0o600)  # a relation's file: keyed by its RelTag
    h.view.write(relation, page(b"r"), 0)
    h.view.flush()
    h.writer.refuse_storage = True
    h.view.write(relation, page(b"s"), P)
    with pytest.raises(OSError) as refused:
        h.view.flush()
    assert refused.value.errno == errno.ENOSPC
    assert h.view.failed is None  # a full disk, not a broken page server
    with pytest.raises(OSError) as extend:
        h.view.write(relation, page(b"t"), 2 * P)  # PostgreSQL: 53100 "could not extend file"
    assert extend.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        h.view.truncate("base/1/2", 3 * P)
    h.view.write(relation, page(b"u"), 0)  # overwrites pass
    h.view.write(h.view.open("f"), b"w", 10 * P)  # other files (the WAL) are left to the server

    h.writer.refuse_storage = False  # the quota was raised: the refused batch goes first
    h.view.flush()
    assert Write("base/1/2", P, page(b"s")) in h.writer.ops
    assert not h.view.storage_full
    h.view.write(relation, page(b"t"), 2 * P)


def test_an_acknowledgement_that_says_full_stops_relations_growing(make: MakeHarness) -> None:
    h = make()
    h.view.mkdir("base", 0o700)
    h.view.mkdir("base/1", 0o700)
    relation = h.view.create("base/1/2", 0o600)
    h.writer.storage_full = True
    h.view.write(relation, page(b"r"), 0)
    h.view.flush()  # acknowledged, and the tenant is now full
    with pytest.raises(OSError) as extend:
        h.view.write(relation, page(b"s"), P)
    assert extend.value.errno == errno.ENOSPC
    h.writer.storage_full = False
    h.view.write(relation, page(b"t"), 0)
    h.view.flush()
    h.view.write(relation, page(b"s"), P)


def test_batches_are_numbered_as_cut_and_resent_under_their_number(make: MakeHarness) -> None:
    """The page server tells a batch sent again by its number: a failed flush's batches
    keep theirs, and later batches continue the count."""
    h = make(batch_bytes=P)
    f = h.view.open("f")
    for block in (2, 1, 0):  # not adjacent: three writes, three batches
        h.view.write(f, page(bytes([65 + block])), block * P)
    h.writer.accept = 1
    with pytest.raises(OSError):
        h.view.flush()
    h.view.write(f, page(b"z"), 0)
    h.writer.accept = None
    h.view.flush()
    assert [batch.batch_id for batch in h.writer.attempts] == [1, 2, 2, 3, 4]
    assert [batch.batch_id for batch in h.writer.batches] == [1, 2, 3, 4]


def scan(view: BranchView, node: Node, pages: int, read_pages: int = 16) -> bytes:
    """Read ``pages`` from the start of ``node``, ``read_pages`` at a time, as a scan."""
    return b"".join(view.read(node, read_pages * P, at * P)
                    for at in range(0, pages, read_pages))


def test_a_sequential_scan_is_fetched_ahead_in_whole_requests(make: MakeHarness) -> None:
    h = make(capacity_pages=4096)
    big = h.view.open("big")
    assert scan(h.view, big, BIG_PAGES) == SERVER * BIG_PAGES
    fetches = h.view.fetches
    assert fetches.pages == BIG_PAGES == sum(len(call) for call in h.reader.calls)
    assert fetches.background >= fetches.requests - 4  # readers waited on read-ahead
    assert max(len(call) for call in h.reader.calls) == CHUNK_PAGES


def test_random_reads_fetch_only_what_was_asked(make: MakeHarness) -> None:
    h = make()
    big = h.view.open("big")
    for block in (1500, 3, 700, 1900):
        h.view.read(big, P, block * P)
    assert h.reader.calls == [[1500], [3], [700], [1900]]
    assert h.view.fetches.background == 0


def test_a_failed_read_ahead_leaves_the_reader_to_fetch_itself(make: MakeHarness) -> None:
    h = make(capacity_pages=4096)
    big = h.view.open("big")
    h.reader.fail_from = 64  # read-ahead past block 64 fails; the readers' own fetch too
    with pytest.raises(OSError) as failed:
        scan(h.view, big, 128)
    assert failed.value.errno == errno.EIO
    h.reader.fail_from = None
    assert scan(h.view, big, 256) == SERVER * 256  # nothing failed is kept


def test_a_write_racing_a_read_ahead_of_its_page_wins(make: MakeHarness) -> None:
    h = make(capacity_pages=4096)
    big = h.view.open("big")
    h.view.read(big, 16 * P, 0)
    h.reader.gate = threading.Event()
    reading = threading.Thread(target=lambda: h.view.read(big, 16 * P, 16 * P))
    reading.start()  # sequential: read-ahead from block 32 goes out, held at the gate
    deadline = time.monotonic() + WAIT_S
    while not any(call[0] == 32 for call in h.reader.calls):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    h.view.write(big, page(b"w"), 35 * P)
    h.reader.gate.set()  # the read-ahead returns the page server's older copy
    reading.join(WAIT_S)
    h.view.close()  # every read-ahead has landed
    assert h.cache.state(big.key(35)) is PageState.DIRTY
    assert h.view.read(big, P, 35 * P) == page(b"w")


def test_adjacent_writes_ship_as_one_extent_in_operation_order(make: MakeHarness) -> None:
    h = make()
    view = h.view
    f, small = view.open("f"), view.open("small")
    for index in range(3):
        view.write(f, page(bytes([65 + index])), index * P)  # A, B, C one after another
    view.write(small, page(b"s"), 0)  # another file: the extent is queued first
    view.write(f, page(b"D"), 3 * P)  # continues f, but after small's write
    view.write(f, page(b"E"), 0)  # not adjacent
    view.chmod("f", 0o640)
    view.flush()
    assert h.writer.ops == [
        Write("f", 0, page(b"A") + page(b"B") + page(b"C")), Write("small", 0, page(b"s")),
        Write("f", 3 * P, page(b"D")), Write("f", 0, page(b"E")), Chmod("f", 0o640)]
    assert h.cache.state(f.key(1)) is PageState.CLEAN  # the extent's pages were acknowledged
    assert view.read(f, 4 * P, 0) == page(b"E") + page(b"B") + page(b"C") + page(b"D")


def test_an_extent_stops_growing_at_its_limit(make: MakeHarness) -> None:
    h = make(capacity_pages=512)
    big = h.view.open("big")
    pages = MAX_EXTENT_BYTES // P + 1
    for index in range(pages):
        h.view.write(big, page(b"x"), index * P)
    h.view.flush()
    assert [len(op.data) for op in h.writer.ops if isinstance(op, Write)] == \
        [MAX_EXTENT_BYTES, P]


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_due_batch_ships_in_the_background_and_fsync_waits_for_the_rest(
        make: MakeHarness) -> None:
    h = make(ship_after=2 * P)
    f = h.view.open("f")
    h.view.write(f, page(b"a"), 0)
    assert h.writer.batches == []  # less than a batch queued
    h.view.write(f, page(b"b"), P)
    wait_for(lambda: len(h.writer.batches) == 1)  # shipped without a flush
    h.view.write(f, page(b"c"), 2 * P)
    h.view.flush()
    assert h.writer.ops == [Write("f", 0, page(b"a") + page(b"b")), Write("f", 2 * P, page(b"c"))]


def test_a_failed_background_flush_leaves_its_batch_to_the_next_flush(
        make: MakeHarness) -> None:
    h = make(ship_after=2 * P)
    f = h.view.open("f")
    h.writer.accept = 0
    h.view.write(f, page(b"a"), 0)
    h.view.write(f, page(b"b"), P)
    wait_for(lambda: len(h.writer.attempts) == 1)
    h.view.close()  # the background flush has ended
    assert h.writer.batches == [] and h.view.failed is not None
    h.writer.accept = None
    h.view.flush()
    assert h.writer.ops == [Write("f", 0, page(b"a") + page(b"b"))]
    assert [batch.batch_id for batch in h.writer.attempts] == [1, 1]


def test_read_into_fills_exactly_the_bytes_asked_for_cached_fetched_and_zero(
        make: MakeHarness) -> None:
    h = make()
    f = h.view.open("f")
    h.view.write(f, page(b"w"), 0)  # block 0 cached (dirty), block 1 on the server
    h.view.truncate("f", 2 * P)
    h.view.truncate("f", 3 * P)  # block 2: a hole the server may still hold, zeros
    out = bytearray(b"#" * (3 * P))  # a reused buffer: every byte read must be written
    assert h.view.read_into(f, memoryview(out)[: 2 * P], P // 2) == 2 * P
    assert out[: 2 * P] == b"w" * (P // 2) + OLD + bytes(P // 2)
    assert out[2 * P:] == b"#" * P  # nothing past what was asked
    assert h.view.read_into(f, memoryview(out), 3 * P) == 0  # at the end of the file


def test_a_fetched_page_written_while_in_flight_reads_as_the_write(make: MakeHarness) -> None:
    h = make()
    f = h.view.open("f")
    h.reader.gate = threading.Event()
    got: list[bytes] = []
    reading = threading.Thread(target=lambda: got.append(h.view.read(f, P, P)))
    reading.start()
    assert h.reader.entered.wait(WAIT_S)
    h.view.write(f, page(b"n"), P)  # the fetch in flight brings back the older page
    h.reader.gate.set()
    reading.join(WAIT_S)
    assert got == [page(b"n")]


def test_a_rewrite_of_a_cached_page_ships_only_the_bytes_it_changed(
        make: MakeHarness) -> None:
    h = make()
    view = h.view
    f = view.open(WAL)
    wal = bytearray(bytes(24) + bytes(P - 24))  # a WAL page: a header, then records
    view.write(f, bytes(wal), P)  # the page server holds OLD here: all of it differs
    view.flush()
    for record in (b"first commit", b"second, longer commit"):
        end = wal.index(bytes(32), 24)
        wal[end:end + len(record)] = record  # appended after the records already there
        view.write(f, bytes(wal), P)  # PostgreSQL rewrites the whole page at each commit
        view.flush()
    view.write(f, bytes(wal), P)  # the same bytes again
    view.flush()
    view.write(f, bytes(P), 2 * P)  # the next WAL page, zero-filled as a new segment is
    view.flush()
    wal[-len(b"fills the page"):] = b"fills the page"  # a flush crossing into the next page
    following = b"rest" + bytes(P - 4)
    view.write(f, bytes(wal) + following, P)
    view.flush()
    assert h.writer.ops == [
        Write(WAL, P, bytes(wal[:24]) + bytes(P - 24)),
        Write(WAL, P + 24, b"first commit"),
        Write(WAL, P + 24 + len(b"first commit"), b"second, longer commit"),
        Write(WAL, 2 * P - 1, b"\0"),
        Write(WAL, 2 * P, bytes(P)),  # the zero fill: differs from OLD everywhere
        Write(WAL, 2 * P - len(b"fills the page"), b"fills the pagerest"),
    ]
    server = OLD * 2  # what the page server makes of them, applying each over its pages
    for op in h.writer.ops:
        assert isinstance(op, Write)
        start = op.offset - P
        server = server[:start] + op.data + server[start + len(op.data):]
    assert server == bytes(wal) + following == view.read(f, 2 * P, P)


def test_writes_that_grow_or_are_not_cached_ship_whole(make: MakeHarness) -> None:
    h = make()
    view = h.view
    f, big = view.open("f"), view.open("big")
    view.write(f, OLD[:100] + b"x" * (P - 100), 2 * P + 100)  # past the end: grows f
    view.write(f, page(b"y"), P // 2)  # two pages, neither cached
    view.write(big, b"z", 5 * P + 7)  # a page not in the cache
    view.flush()
    assert h.writer.ops == [Write("f", 2 * P + 100, OLD[:100] + b"x" * (P - 100)),
                            Write("f", P // 2, page(b"y")), Write("big", 5 * P + 7, b"z")]


def test_a_rewrite_outside_the_wal_ships_whole(make: MakeHarness) -> None:
    """A data page's small change (a visibility flag) is not cut down: the page server
    would have to read the page's older version to lay it over."""
    h = make()
    small = h.view.open("small")
    assert h.view.read(small, P, 0) == OLD  # cached
    flagged = b"v" + OLD[1:]
    h.view.write(small, flagged, 0)
    h.view.flush()
    assert h.writer.ops == [Write("small", 0, flagged)]
