"""In-memory page and metadata versions of one timeline above its last layer.

A memtable collects the effects of ingested batches until it is frozen and
written as an L0 delta layer. Versions of one key are kept in LSN order; a
second write of the same key within one batch replaces the first.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator

from common.keys import Relation
from pageserver.applied_batch import AppliedBatch

PageVersions = list[tuple[int, bytes | None]]

_ENTRY_OVERHEAD = 64  # rough bytes of bookkeeping per version, for the size threshold


class Memtable:
    """Mutable versions for LSNs in ``[lsn_start, ...)``; readers filter by LSN."""

    def __init__(self, lsn_start: int) -> None:
        self.lsn_start = lsn_start
        self.lsn_end = lsn_start  # one past the newest LSN put here
        self._first_batch_at: float | None = None
        self.size_bytes = 0
        self.pages: dict[Relation, dict[int, PageVersions]] = {}
        self.metas: dict[str, list[tuple[int, bytes | None]]] = {}
        self.batches: list[tuple[int, int, int]] = []
        self.log_seqno = 0  # ingest-log sequence number of its newest batch, set at freeze
        self.last_batch = AppliedBatch()  # the timeline's last numbered batch, set at freeze

    def __len__(self) -> int:
        return len(self.batches)

    def put_page(self, relation: Relation, block: int, lsn: int, value: bytes | None) -> None:
        versions = self.pages.setdefault(relation, {}).setdefault(block, [])
        _put_version(versions, lsn, value)
        self.size_bytes += _ENTRY_OVERHEAD + (len(value) if value is not None else 0)
        self.lsn_end = max(self.lsn_end, lsn + 1)

    def put_meta(self, path: str, lsn: int, value: bytes | None) -> None:
        _put_version(self.metas.setdefault(path, []), lsn, value)
        self.size_bytes += _ENTRY_OVERHEAD + len(path) + (len(value) if value else 0)
        self.lsn_end = max(self.lsn_end, lsn + 1)

    def age_s(self) -> float:
        """Seconds since the first batch arrived; 0 while empty."""
        first = self._first_batch_at
        return 0.0 if first is None else time.monotonic() - first

    def add_batch(self, lsn: int, wal_lsn: int, timestamp_us: int) -> None:
        if self._first_batch_at is None:
            self._first_batch_at = time.monotonic()
        self.batches.append((lsn, wal_lsn, timestamp_us))
        self.lsn_end = max(self.lsn_end, lsn + 1)

    def get_page(self, relation: Relation, block: int, lsn: int) -> tuple[int, bytes | None] | None:
        """Newest version of the page with LSN <= ``lsn``, or None."""
        versions = self.pages.get(relation, {}).get(block)
        return newest_version(versions, lsn) if versions else None

    def blocks_at(self, lsn: int) -> dict[Relation, list[int]]:
        """Per relation, the blocks with a version at or below ``lsn``."""
        found: dict[Relation, list[int]] = {}
        for relation, blocks in self.pages.items():
            present = [block for block, versions in blocks.items()
                       if any(version_lsn <= lsn for version_lsn, _ in versions)]
            if present:
                found[relation] = present
        return found

    def blocks_in(self, relation: Relation, lo: int, hi: int, lsn: int) -> list[int]:
        """The blocks in ``[lo, hi)`` of ``relation`` with a version at or below ``lsn``."""
        return [block for block, versions in self.pages.get(relation, {}).items()
                if lo <= block < hi and versions[0][0] <= lsn]

    def sorted_pages(self) -> Iterator[tuple[Relation, int, int, bytes | None]]:
        """Every page version ordered by (relation bytes, block, lsn), for layer writing."""
        for relation in sorted(self.pages, key=Relation.to_bytes):
            blocks = self.pages[relation]
            for block in sorted(blocks):
                for lsn, value in blocks[block]:
                    yield relation, block, lsn, value

    def sorted_metas(self) -> Iterator[tuple[str, int, bytes | None]]:
        for path in sorted(self.metas, key=str.encode):
            for lsn, value in self.metas[path]:
                yield path, lsn, value


def _put_version(versions: list[tuple[int, bytes | None]], lsn: int, value: bytes | None) -> None:
    if versions and versions[-1][0] == lsn:
        versions[-1] = (lsn, value)
    elif not versions or versions[-1][0] < lsn:
        versions.append((lsn, value))
    else:
        raise ValueError(f"version at LSN {lsn} older than the newest ({versions[-1][0]})")


def newest_version(
    versions: list[tuple[int, bytes | None]], lsn: int
) -> tuple[int, bytes | None] | None:
    """The newest of LSN-ordered ``versions`` at or below ``lsn``."""
    pos = bisect.bisect_right(versions, lsn, key=lambda version: version[0])
    return versions[pos - 1] if pos else None
