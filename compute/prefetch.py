"""Read-ahead for sequential scans, and the pages being fetched right now.

The kernel splits a scan into concurrent reads (readahead runs on several FUSE threads),
so a read counts as sequential when it starts anywhere inside the recent read-ahead
range (up to a window behind its end), not only exactly at its end. Concurrent reads
of the same pages wait for the one fetch in flight instead of fetching them again.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable

MIN_WINDOW = 8  # pages fetched ahead once a scan looks sequential
MAX_WINDOW = 256  # 2 MB per round trip at most


class Prefetcher:
    """Per relation: the last read-ahead range and how far ahead a scan has earned."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[bytes, tuple[int, int]] = {}  # relation -> (start, end) of last fetch
        self._window: dict[bytes, int] = {}

    def extend(self, relation: bytes, indexes: list[int], limit: int) -> list[int]:
        """``indexes`` (sorted misses) plus the read-ahead a sequential scan has earned.

        ``limit`` is the number of blocks in the file: read-ahead never passes it.
        """
        with self._lock:
            start, end = self._last.get(relation, (-1, -1))
            # Out-of-order reads of one scan start anywhere in the recent read-ahead.
            sequential = min(start, end - MAX_WINDOW) <= indexes[0] <= end
            window = self._window.get(relation, 0)
            window = min(MAX_WINDOW, max(MIN_WINDOW, window * 2)) if sequential else 0
            self._window[relation] = window
            new_end = min(limit, indexes[-1] + 1 + window)
            self._last[relation] = (indexes[0], max(new_end, end) if sequential else new_end)
        return indexes + list(range(indexes[-1] + 1, new_end))


class InFlight:
    """Keys some thread is fetching: claim before fetching, release when done (or failed).

    Not thread-safe on its own: callers hold the lock that guards the page cache.
    """

    def __init__(self) -> None:
        self._events: dict[Hashable, threading.Event] = {}

    def waiting_for(self, key: Hashable) -> threading.Event | None:
        return self._events.get(key)

    def claim(self, keys: Iterable[Hashable]) -> None:
        for key in keys:
            self._events[key] = threading.Event()

    def release(self, keys: Iterable[Hashable]) -> None:
        for key in keys:
            event = self._events.pop(key, None)
            if event is not None:
                event.set()
