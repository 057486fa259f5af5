"""Sequential-read detection: a run of consecutive misses grows a read-ahead window."""

from __future__ import annotations

import threading

MIN_WINDOW = 8  # pages fetched ahead once a scan looks sequential
MAX_WINDOW = 256  # 2 MB per round trip at most


class Prefetcher:
    """Per relation: where the last miss ended and how long the sequential run is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_end: dict[bytes, int] = {}
        self._window: dict[bytes, int] = {}

    def extend(self, relation: bytes, indexes: list[int], limit: int) -> list[int]:
        """``indexes`` (sorted misses) plus the read-ahead a sequential scan has earned.

        ``limit`` is the number of blocks in the file: read-ahead never passes it.
        """
        with self._lock:
            sequential = self._last_end.get(relation) == indexes[0]
            window = self._window.get(relation, 0)
            window = min(MAX_WINDOW, max(MIN_WINDOW, window * 2)) if sequential else 0
            self._window[relation] = window
            end = min(limit, indexes[-1] + 1 + window)
            self._last_end[relation] = end
        ahead = list(range(indexes[-1] + 1, end))
        return indexes + ahead
