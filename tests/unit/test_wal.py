"""The WAL position a segment write reveals: the end of its last complete record."""

from __future__ import annotations

import struct

from compute.wal import WAL_PAGE_BYTES, WAL_SEGMENT_BYTES, wal_position

SEGMENT = "pg_wal/000000010000000000000003"
BASE = 3 * WAL_SEGMENT_BYTES


def _page(address: int, records: bytes, *, rem_len: int = 0, long: bool = False) -> bytes:
    header = struct.pack("<HHIQI", 0xD110, 2 if long else 0, 1, address, rem_len)
    header = header.ljust(40 if long else 24, b"\0")
    return (header + records).ljust(WAL_PAGE_BYTES, b"\0")


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
