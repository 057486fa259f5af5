"""Pages that read-ahead brought and no read has taken yet, outside the page cache's slots.

A sequential scan reads each page once: caching it in a slot of the page cache cost a
slot (often evicting another scan page first), a copy into the memory-mapped slots file
(a page fault when the file's page was clean) and the index's bookkeeping, only for the
kernel to read it once and the slot to be reused. Here a page waits in a ring of
``limit`` pages of anonymous memory, copied there once from the answer (whose buffer is
freed at once, as before), until a read takes it (copied once more, into the kernel's
buffer) or something makes it stale. The ring is reused round and round, so after its
first turn no page of it faults. When the ring comes round to a page no read took, that
page is dropped: it is clean, the page server still has it. ``PageCache`` owns one and
calls it under its own lock, so its writes, discards and fetch tickets cover these
pages as they cover its slots (rfcs/0033).
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

from common.keys import PAGE_SIZE

PageKey = tuple[bytes, int]
PageData = bytes | bytearray | memoryview


class AheadPages:
    """Untaken read-ahead pages by key, in a ring of ``limit`` pages, oldest overwritten.

    Not thread-safe: the page cache calls it under its lock. A page handed out (``peek``,
    ``take``) is a view of the ring, valid until the next ``add``: copy it before that.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"read-ahead pages limit must be at least 1, got {limit}")
        self._limit = limit
        self._ring = memoryview(mmap.mmap(-1, limit * PAGE_SIZE))  # untouched until used
        self._owner: list[PageKey | None] = [None] * limit  # the key each page was added for
        self._where: dict[PageKey, int] = {}  # key -> its page in the ring
        self._next = 0
        self.dropped = 0
        """Pages overwritten untaken (read-ahead that ran ahead of every reader)."""

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def add(self, keys: Sequence[PageKey], pages: Sequence[PageData]) -> None:
        """Keep pages the cache holds in no other form, overwriting the oldest."""
        ring, owner, where, limit = self._ring, self._owner, self._where, self._limit
        at = self._next
        for key, page in zip(keys, pages, strict=True):
            if len(page) != PAGE_SIZE:
                raise ValueError(f"a page is {PAGE_SIZE} bytes, got {len(page)}")
            old = owner[at]
            if old is not None and where.get(old) == at:
                del where[old]
                self.dropped += 1
            owner[at] = key
            where[key] = at
            ring[at * PAGE_SIZE:(at + 1) * PAGE_SIZE] = page
            at = at + 1 if at + 1 < limit else 0
        self._next = at

    def peek(self, key: PageKey) -> memoryview | None:
        at = self._where.get(key)
        return None if at is None else self._ring[at * PAGE_SIZE:(at + 1) * PAGE_SIZE]

    def take(self, key: PageKey) -> memoryview | None:
        """The page, no longer kept (a read has it now), or None."""
        at = self._where.pop(key, None)
        return None if at is None else self._ring[at * PAGE_SIZE:(at + 1) * PAGE_SIZE]

    def drop(self, key: PageKey) -> bool:
        """Forget ``key`` (written or discarded: the kept page is stale); whether it was kept."""
        return self._where.pop(key, None) is not None

    def drop_relation_from(self, relation: bytes, first_block: int) -> int:
        """Forget every page of ``relation`` at ``first_block`` or after (truncate, unlink);
        how many were kept."""
        gone = [key for key in self._where if key[0] == relation and key[1] >= first_block]
        for key in gone:
            del self._where[key]
        return len(gone)

    def clear(self) -> None:
        self._where.clear()
        self._owner = [None] * self._limit
