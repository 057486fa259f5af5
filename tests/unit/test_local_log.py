"""The local log file: what is appended reads back in order, a torn tail ends it, damage
elsewhere is an error, stored segments are given back, and segments never grow."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import CorruptionError
from pageserver.local_log import LocalLog, read_local_logs
from pageserver.log_chunk import LogRecord, encode_record

SEGMENT = 4096


def records(first: int, count: int) -> list[LogRecord]:
    return [LogRecord("tl", lsn, bytes([lsn % 256]) * 300) for lsn in range(first, first + count)]


def write(log: LocalLog, batch: list[LogRecord], last_seqno: int) -> None:
    log.append([encode_record(record) for record in batch], last_seqno)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


def test_appends_read_back_in_order_across_segments(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "t", 7, SEGMENT)
    for group in range(10):  # 3 records of ~330 bytes a group: several segments
        write(log, records(group * 3 + 1, 3), group * 3 + 3)
    log.close()
    assert len(segments(tmp_path / "t")) > 2
    assert all(path.stat().st_size == SEGMENT for path in segments(tmp_path / "t"))
    [tail] = read_local_logs(tmp_path / "t")
    assert tail.generation == 7 and tail.records == records(1, 30)


def test_a_torn_last_record_ends_the_log(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "t", 1, SEGMENT)
    write(log, records(1, 2), 2)
    log.close()
    [path] = segments(tmp_path / "t")
    data = bytearray(path.read_bytes())
    end = 24 + 2 * len(encode_record(records(1, 1)[0]))
    torn = encode_record(records(3, 1)[0])[:100]  # a write cut short by the crash
    data[end:end + len(torn)] = torn
    path.write_bytes(bytes(data))
    [tail] = read_local_logs(tmp_path / "t")
    assert tail.records == records(1, 2)


def test_damage_before_the_last_segment_is_an_error(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "t", 1, SEGMENT)
    for group in range(6):
        write(log, records(group * 3 + 1, 3), group * 3 + 3)
    log.close()
    first = segments(tmp_path / "t")[0]
    data = bytearray(first.read_bytes())
    data[40] ^= 0xFF  # inside the first record
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="fails its crc"):
        read_local_logs(tmp_path / "t")


def test_stored_segments_are_deleted_never_the_current_one(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "t", 1, SEGMENT)
    for group in range(6):
        write(log, records(group * 3 + 1, 3), group * 3 + 3)
    assert len(segments(tmp_path / "t")) == 2  # 4 groups of 960 bytes fit a segment
    assert log.reclaim(11) == 0  # record 12 of the first segment is not stored yet
    assert log.reclaim(12) == 1
    assert read_local_logs(tmp_path / "t")[0].records[-1] == records(18, 1)[0]
    assert log.reclaim(18) == 0  # the one written to stays
    assert len(segments(tmp_path / "t")) == 1
    log.remove()
    assert not (tmp_path / "t").exists()
    assert read_local_logs(tmp_path / "t") == []


def test_a_group_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "t", 1, SEGMENT)
    write(log, records(1, 20), 20)  # about 6.6 KiB
    log.close()
    [tail] = read_local_logs(tmp_path / "t")
    assert tail.records == records(1, 20)
