"""Read-ahead detection and the in-flight registry of the compute shim."""

from __future__ import annotations

import threading

from compute.prefetch import MAX_WINDOW, MIN_WINDOW, InFlight, Prefetcher

REL = b"r" * 13


def test_random_reads_fetch_only_what_was_asked() -> None:
    prefetcher = Prefetcher()
    assert prefetcher.extend(REL, [5000], 10_000) == [5000]
    assert prefetcher.extend(REL, [7, 8], 10_000) == [7, 8]
    assert prefetcher.extend(REL, [9000], 10_000) == [9000]


def test_a_scan_earns_a_growing_window_up_to_the_maximum() -> None:
    prefetcher = Prefetcher()
    got = prefetcher.extend(REL, [0, 1], 100_000)
    sizes = []
    for _ in range(8):
        got = prefetcher.extend(REL, [got[-1] + 1], 100_000)
        sizes.append(len(got) - 1)
    assert sizes[0] == MIN_WINDOW and sizes[-1] == MAX_WINDOW
    assert sizes == sorted(sizes)


def test_concurrent_readahead_inside_the_last_range_stays_sequential() -> None:
    """The kernel sends the reads of one scan on several threads, out of order."""
    prefetcher = Prefetcher()
    prefetcher.extend(REL, [0], 100_000)
    first = prefetcher.extend(REL, [1], 100_000)  # sequential: window MIN_WINDOW
    overlapping = prefetcher.extend(REL, [first[0] + 3], 100_000)  # started inside that range
    assert len(overlapping) - 1 == 2 * MIN_WINDOW


def test_read_ahead_stops_at_the_end_of_the_file() -> None:
    prefetcher = Prefetcher()
    prefetcher.extend(REL, [0], 10)
    assert prefetcher.extend(REL, [1], 10) == list(range(1, 10))


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
