"""Read-ahead detection and the in-flight registry of the compute shim."""

from __future__ import annotations

import itertools
import threading

from compute.prefetch import (
    CHUNK_PAGES,
    MAX_AHEAD,
    MIN_AHEAD,
    STREAM_PAGES,
    InFlight,
    Prefetcher,
)

REL = b"r" * 13


def scan(prefetcher: Prefetcher, reads: int, size: int = 1, limit: int = 100_000
         ) -> list[list[range]]:
    """What ``reads`` consecutive reads of ``size`` pages from block 0 send ahead."""
    return [prefetcher.plan(REL, at, at + size - 1, limit).ahead
            for at in range(0, reads * size, size)]


def test_random_reads_fetch_nothing_ahead() -> None:
    prefetcher = Prefetcher()
    for first in (5000, 7, 9000, 12):
        plan = prefetcher.plan(REL, first, first, 10_000)
        assert not plan.sequential and plan.ahead == []


def test_a_scan_keeps_several_whole_chunks_in_flight_ahead_of_the_reader() -> None:
    ahead = [chunk for chunks in scan(Prefetcher(), 400) for chunk in chunks]
    assert ahead[0].start == 2  # the second read is the first sequential one
    assert all(a.stop == b.start for a, b in itertools.pairwise(ahead))  # no gaps
    late = ahead[4:]
    assert late and all(len(chunk) == CHUNK_PAGES for chunk in late)
    # The last read (block 399) has everything up to MAX_AHEAD past it requested.
    assert 399 + MAX_AHEAD - CHUNK_PAGES <= ahead[-1].stop <= 400 + MAX_AHEAD


def test_the_distance_ahead_grows_from_the_minimum() -> None:
    first_sequential = Prefetcher()
    first_sequential.plan(REL, 0, 0, 100_000)
    plan = first_sequential.plan(REL, 1, 1, 100_000)
    assert plan.sequential and plan.ahead == [range(2, 2 + MIN_AHEAD)]


def test_concurrent_reads_inside_the_recent_range_stay_sequential() -> None:
    """The kernel sends the reads of one scan on several threads, out of order."""
    prefetcher = Prefetcher()
    scan(prefetcher, 10, size=32)
    assert prefetcher.plan(REL, 200, 231, 100_000).sequential  # behind the last read
    assert not prefetcher.plan(REL, 50_000, 50_000, 100_000).sequential


def test_the_kernels_large_reads_far_ahead_stay_sequential() -> None:
    prefetcher = Prefetcher()
    scan(prefetcher, 4, size=STREAM_PAGES)
    assert prefetcher.plan(REL, 5000, 5000 + STREAM_PAGES - 1, 100_000).sequential
    assert not prefetcher.plan(REL, 9000, 9000, 100_000).sequential  # a lone page: random


def test_read_ahead_stops_at_the_end_of_the_file() -> None:
    ahead = [chunk for chunks in scan(Prefetcher(), 10, limit=10) for chunk in chunks]
    assert ahead and ahead[-1].stop == 10


def test_in_flight_waiters_wake_on_release() -> None:
    in_flight = InFlight()
    in_flight.claim(["a", "b"])
    event = in_flight.waiting_for("a")
    assert event is not None and not event.is_set()
    woke = threading.Event()

    def waiter() -> None:
        event.wait()
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    in_flight.release(["a", "b"])
    thread.join(timeout=5)
    assert woke.is_set() and in_flight.waiting_for("a") is None


def test_the_kernels_large_read_earns_the_whole_distance_at_once() -> None:
    prefetcher = Prefetcher()
    prefetcher.plan(REL, 0, STREAM_PAGES - 1, 100_000)
    plan = prefetcher.plan(REL, STREAM_PAGES, 2 * STREAM_PAGES - 1, 100_000)
    start = 2 * STREAM_PAGES
    assert plan.ahead == [range(at, at + CHUNK_PAGES)
                          for at in range(start, start + MAX_AHEAD, CHUNK_PAGES)]
