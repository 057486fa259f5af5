"""Page arithmetic of writes and truncates, shared by the page server and the compute shim.

Both sides must turn a write or a truncate into the same page images: which
pages a write at ``offset`` touches and how a partial page merges over the old
one; how many pages a truncate keeps and how it zeroes the tail of the last.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from common.keys import PAGE_SIZE


def blocks_for(size: int) -> int:
    """The number of pages a file of ``size`` bytes spans."""
    return (size + PAGE_SIZE - 1) // PAGE_SIZE


@dataclass(frozen=True)
class PageSlice:
    """The part of a write that falls into one page."""

    index: int  # the page, counted from the start of the file
    start: int  # where the data begins inside the page
    data: memoryview

    @property
    def whole(self) -> bool:
        """True if the slice covers the page: the old page does not matter."""
        return len(self.data) == PAGE_SIZE

    def onto(self, old: bytes) -> bytes:
        """The page ``old`` with this slice written over it."""
        page = bytearray(old)
        page[self.start:self.start + len(self.data)] = self.data
        return bytes(page)


def write_slices(offset: int, data: bytes) -> Iterator[PageSlice]:
    """The pages a write of ``data`` at ``offset`` touches, in order, with their parts."""
    if not data:
        return
    end = offset + len(data)
    view = memoryview(data)
    for index in range(offset // PAGE_SIZE, (end - 1) // PAGE_SIZE + 1):
        page_start = index * PAGE_SIZE
        lo, hi = max(offset, page_start), min(end, page_start + PAGE_SIZE)
        yield PageSlice(index, lo - page_start, view[lo - offset:hi - offset])


def truncate_tail(size: int) -> tuple[int, int]:
    """For a truncate to ``size``: the pages kept, and the bytes kept of the last (0: all)."""
    return blocks_for(size), size % PAGE_SIZE


def cut_page(page: bytes, tail: int) -> bytes:
    """The page with every byte from ``tail`` on zeroed (the last page after a truncate)."""
    return bytes(page[:tail]) + bytes(PAGE_SIZE - tail)
