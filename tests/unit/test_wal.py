"""The WAL position a segment write reveals: the end of its last complete record, also
when a walk resumes where the previous write's walk stopped."""

from __future__ import annotations

import struct

from compute.wal import WAL_PAGE_BYTES, WAL_SEGMENT_BYTES, WalPositions

SEGMENT = "pg_wal/000000010000000000000003"
BASE = 3 * WAL_SEGMENT_BYTES


def _page(address: int, records: bytes, *, rem_len: int = 0, long: bool = False) -> bytes:
    header = struct.pack("<HHIQI", 0xD110, 2 if long else 0, 1, address, rem_len)
    header = header.ljust(40 if long else 24, b"\0")
    return (header + records).ljust(WAL_PAGE_BYTES, b"\0")


def wal_position(path: str, offset: int, data: bytes) -> int | None:
    """The position a walk from the write's start finds (nothing remembered)."""
    return WalPositions().position(path, offset, data)


def _record(total: int) -> bytes:
    body = struct.pack("<I", total) + b"\x07" * (total - 4)
    return body.ljust((total + 7) & ~7, b"\0")


def test_two_flushes_of_one_page_give_two_positions() -> None:
    offset = 5 * WAL_PAGE_BYTES
    first = _page(BASE + offset, _record(50) + _record(30))
    second = _page(BASE + offset, _record(50) + _record(30) + _record(61))
    assert wal_position(SEGMENT, offset, first) == BASE + offset + 24 + 56 + 32
    assert wal_position(SEGMENT, offset, second) == BASE + offset + 24 + 56 + 32 + 64


def test_record_spanning_pages_ends_after_the_second_header() -> None:
    offset = 2 * WAL_PAGE_BYTES
    room = WAL_PAGE_BYTES - 24
    spanning = _record(room + 100)
    data = (_page(BASE + offset, spanning[:room])
            + _page(BASE + offset + WAL_PAGE_BYTES, spanning[room:], rem_len=100))
    assert wal_position(SEGMENT, offset, data) == BASE + offset + WAL_PAGE_BYTES + 24 + 104


def test_a_write_that_starts_inside_a_record() -> None:
    offset = 7 * WAL_PAGE_BYTES
    data = _page(BASE + offset, b"\x05" * 104 + _record(40), rem_len=100)
    assert wal_position(SEGMENT, offset, data) == BASE + offset + 24 + 104 + 40
    unfinished = _page(BASE + offset, b"\x05" * (WAL_PAGE_BYTES - 24), rem_len=20_000)
    assert wal_position(SEGMENT, offset, unfinished) is None


def test_first_page_of_a_segment_has_the_long_header() -> None:
    data = _page(BASE, _record(100), long=True)
    assert wal_position(SEGMENT, 0, data) == BASE + 40 + 104


def test_other_files_and_unreadable_writes() -> None:
    assert wal_position("base/1/1259", 0, b"\0" * WAL_PAGE_BYTES) is None
    assert wal_position(SEGMENT, 100, b"\x01" * 10) == BASE + 110  # not whole pages
    foreign = _page(BASE + 99 * WAL_PAGE_BYTES, _record(40))  # address of another page
    assert wal_position(SEGMENT, 0, foreign) == BASE + WAL_PAGE_BYTES


def test_resumed_walks_find_what_fresh_walks_find() -> None:
    """Commits that each rewrite the page with one more record, then a flush that spills
    onto the next page, then the next page alone: the remembering walker agrees with a
    fresh walk on every write."""
    offset = 4 * WAL_PAGE_BYTES
    positions = WalPositions()
    records = b""
    for total in (50, 30, 61, 24, 200, 33):
        records += _record(total)
        page = _page(BASE + offset, records)
        assert positions.position(SEGMENT, offset, page) == wal_position(SEGMENT, offset, page)
    room = WAL_PAGE_BYTES - 24 - len(records)
    spanning = _record(room + 100)
    two = (_page(BASE + offset, records + spanning[:room])
           + _page(BASE + offset + WAL_PAGE_BYTES, spanning[room:] + _record(40), rem_len=100))
    assert positions.position(SEGMENT, offset, two) == wal_position(SEGMENT, offset, two) \
        == BASE + offset + WAL_PAGE_BYTES + 24 + 104 + 40
    second = two[WAL_PAGE_BYTES:]
    assert positions.position(SEGMENT, offset + WAL_PAGE_BYTES, second) \
        == BASE + offset + WAL_PAGE_BYTES + 24 + 104 + 40


def test_a_rewritten_prefix_is_walked_again() -> None:
    """After a page was rewritten with other records (PostgreSQL recovered and wrote
    anew), the remembered walk does not apply: the answer is a fresh walk's."""
    offset = 6 * WAL_PAGE_BYTES
    positions = WalPositions()
    before = _page(BASE + offset, _record(50) + _record(30) + _record(61))
    assert positions.position(SEGMENT, offset, before) == BASE + offset + 24 + 56 + 32 + 64
    after = _page(BASE + offset, _record(50) + _record(200))
    assert positions.position(SEGMENT, offset, after) == wal_position(SEGMENT, offset, after) \
        == BASE + offset + 24 + 56 + 200
