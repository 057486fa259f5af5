"""Pages that read-ahead brought and no read has taken yet, outside the page cache's slots.

A sequential scan reads each page once: caching it in a slot of the page cache cost a
slot (often evicting another scan page first), a copy into the memory-mapped slots file
(a page fault when the file's page was clean) and the index's bookkeeping, only for the
kernel to read it once and the slot to be reused. Here a page stays the view of the
answer it arrived in until a read takes it (copied once, into the kernel's buffer) or
something makes it stale. ``PageCache`` owns one and consults it under its own lock, so
its writes, discards and fetch tickets cover these pages as they cover its slots
(rfcs/0033).

Memory is bounded by answers, not pages: a page holds its whole answer alive, so at
most ``limit`` pages of answers are kept, and the oldest answer's untaken pages are
dropped (they are clean: the page server still has them) when a new one would pass it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from common.keys import PAGE_SIZE

PageKey = tuple[bytes, int]
PageData = bytes | bytearray | memoryview


class AheadPages:
    """Untaken read-ahead pages by key, at most ``limit`` pages of answers held.

    Not thread-safe: the page cache calls it under its lock.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"read-ahead pages limit must be at least 1, got {limit}")
        self._limit = limit
        self._pages: dict[PageKey, tuple[int, PageData]] = {}  # key -> (answer, page)
        self._answers: deque[tuple[int, Sequence[PageKey]]] = deque()  # oldest first
        self._held = 0  # pages of the answers in ``_answers``
        self._next_answer = 0
        self.dropped = 0
        """Pages dropped untaken to stay within the limit (read-ahead that ran too far)."""

    def __len__(self) -> int:
        return len(self._pages)

    def __contains__(self, key: object) -> bool:
        return key in self._pages

    def add(self, keys: Sequence[PageKey], pages: Sequence[PageData]) -> None:
        """Keep one answer's pages (keys the cache holds in no other form)."""
        answer = self._next_answer
        self._next_answer += 1
        for key, page in zip(keys, pages, strict=True):
            if len(page) != PAGE_SIZE:
                raise ValueError(f"a page is {PAGE_SIZE} bytes, got {len(page)}")
            self._pages[key] = (answer, page)
        self._answers.append((answer, keys))
        self._held += len(keys)
        while self._held > self._limit and len(self._answers) > 1:
            old, old_keys = self._answers.popleft()
            self._held -= len(old_keys)
            for key in old_keys:
                entry = self._pages.get(key)
                if entry is not None and entry[0] == old:
                    del self._pages[key]
                    self.dropped += 1

    def peek(self, key: PageKey) -> PageData | None:
        entry = self._pages.get(key)
        return None if entry is None else entry[1]

    def take(self, key: PageKey) -> PageData | None:
        """The page, no longer kept (a read has it now), or None."""
        entry = self._pages.pop(key, None)
        return None if entry is None else entry[1]

    def drop(self, key: PageKey) -> bool:
        """Forget ``key`` (written or discarded: the kept page is stale); whether it was kept."""
        return self._pages.pop(key, None) is not None

    def drop_relation_from(self, relation: bytes, first_block: int) -> int:
        """Forget every page of ``relation`` at ``first_block`` or after (truncate, unlink);
        how many were kept."""
        gone = [key for key in self._pages if key[0] == relation and key[1] >= first_block]
        for key in gone:
            del self._pages[key]
        return len(gone)

    def clear(self) -> None:
        self._pages.clear()
        self._answers.clear()
        self._held = 0
