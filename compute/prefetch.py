"""Read-ahead for sequential scans, and the pages being fetched right now.

A relation read sequentially earns a read-ahead distance that doubles with every
sequential read, up to ``MAX_AHEAD`` pages past the read (a read as large as only the
kernel's own read-ahead sends earns all of it at once); the pages up to that distance
are fetched in the background in requests of up to ``CHUNK_PAGES``, so a scan keeps
several 1 MB requests in flight while PostgreSQL consumes the ones before them (the
reader waits only for pages no request holds yet). A request is issued only once a
whole chunk is due (or the file ends), so a long scan never sends small ones.

The kernel splits a scan into concurrent reads (readahead runs on several FUSE threads),
so a read counts as sequential when it starts anywhere inside the recent range (from
``MAX_AHEAD`` before the last read to the end of its read-ahead), not only exactly at
its end. A large read (``STREAM_PAGES`` or more) counts as sequential wherever it
starts: PostgreSQL reads 8 KB at a time, so only the kernel's read-ahead asks for that
much, and it runs up to its own window (8 MB, ``compute.readahead``) ahead of the
reader, past any range this module knows. Concurrent reads of the same
pages wait for the one fetch in flight instead of fetching them again.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

MIN_AHEAD = 8  # pages fetched ahead once a scan looks sequential
STREAM_PAGES = 32  # a read this large is the kernel's own read-ahead: sequential
CHUNK_PAGES = 128  # 1 MB: the largest background request
MAX_AHEAD = 8 * CHUNK_PAGES  # pages past the read (8 MB, the kernel's window): up to
# eight requests in flight


@dataclass(frozen=True)
class ReadPlan:
    """What to fetch for a read: whether it is sequential, and the background requests
    (ranges of blocks, each at most ``CHUNK_PAGES``)."""

    sequential: bool
    ahead: list[range]


@dataclass
class _Scan:
    start: int  # first index of the last read
    end: int  # end of the range known to the scan: last read or read-ahead, exclusive
    issued: int  # read-ahead was issued up to here, exclusive
    distance: int  # pages ahead this scan has earned


class Prefetcher:
    """Per relation: the recent range, how far ahead a scan has earned and was fetched."""

    def __init__(self, chunk_pages: int = CHUNK_PAGES, max_ahead: int = MAX_AHEAD) -> None:
        self._lock = threading.Lock()
        self._chunk = chunk_pages
        self._max_ahead = max_ahead
        self._scans: dict[bytes, _Scan] = {}

    def plan(self, relation: bytes, first: int, last: int, limit: int) -> ReadPlan:
        """The plan for a read of blocks ``first``..``last`` of ``relation``; read-ahead
        never reaches ``limit`` (the end of what the page server can have of the file)."""
        with self._lock:
            scan = self._scans.get(relation)
            sequential = scan is not None and (
                scan.start - self._max_ahead <= first <= scan.end
                or last + 1 - first >= STREAM_PAGES)
            if scan is None or not sequential:
                self._scans[relation] = _Scan(first, last + 1, last + 1, 0)
                return ReadPlan(False, [])
            if last + 1 - first >= STREAM_PAGES:  # the kernel's read-ahead: a scan for sure
                scan.distance = self._max_ahead
            else:
                scan.distance = min(self._max_ahead, max(MIN_AHEAD, scan.distance * 2))
            want = min(limit, last + 1 + scan.distance)
            issued = max(scan.issued, last + 1)
            ahead: list[range] = []
            due = min(self._chunk, scan.distance)
            while issued < want and (want - issued >= due or want == limit):
                end = min(want, issued + self._chunk)
                ahead.append(range(issued, end))
                issued = end
            scan.start, scan.issued = first, issued
            scan.end = max(scan.end, last + 1, issued)
            return ReadPlan(True, ahead)


class InFlight:
    """Keys some thread is fetching: claim before fetching, release when done (or failed).

    Not thread-safe on its own: callers hold the lock that guards the page cache.
    """

    def __init__(self) -> None:
        self._events: dict[Hashable, threading.Event] = {}

    def waiting_for(self, key: Hashable) -> threading.Event | None:
        return self._events.get(key)

    def claim(self, keys: Iterable[Hashable]) -> None:
        """Claim ``keys`` as one fetch: they share one event (an event per page cost
        several microseconds a page on a scan)."""
        event = threading.Event()
        for key in keys:
            self._events[key] = event

    def release(self, keys: Iterable[Hashable]) -> None:
        events = {self._events.pop(key, None) for key in keys}
        for event in events:
            if event is not None:
                event.set()
