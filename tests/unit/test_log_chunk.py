"""The log chunk codec: what is written reads back, and damage of any kind is caught."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import CorruptionError, InvalidArgumentError
from pageserver.log_chunk import LogRecord, decode_chunk, encode_chunk, encode_record

records = st.lists(st.builds(
    LogRecord, st.text(min_size=1, max_size=40), st.integers(0, 2**64 - 1),
    st.binary(max_size=300)), max_size=20)


@given(records, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_roundtrip(chunk_records: list[LogRecord], generation: int, seq: int) -> None:
    data = encode_chunk(generation, seq, [encode_record(r) for r in chunk_records])
    chunk = decode_chunk(data, "c", seq)
    assert (chunk.generation, chunk.seq, chunk.records) == (generation, seq, chunk_records)


def _chunk() -> bytes:
    return encode_chunk(3, 7, [encode_record(LogRecord("tl", lsn, b"x" * 50))
                               for lsn in (1, 2, 3)])


def test_a_fence_holds_no_record() -> None:
    assert decode_chunk(encode_chunk(4, 9, []), "fence", 9).records == []


@pytest.mark.parametrize("cut", [0, 10, 36, 40, 100, -1])
def test_a_short_read_is_corruption(cut: int) -> None:
    with pytest.raises(CorruptionError, match="log chunk c"):
        decode_chunk(_chunk()[:cut], "c", 7)


def test_a_flipped_byte_is_corruption() -> None:
    data = bytearray(_chunk())
    data[-20] ^= 0x40
    with pytest.raises(CorruptionError, match="crc"):
        decode_chunk(bytes(data), "c", 7)


def test_a_chunk_under_another_name_is_corruption() -> None:
    with pytest.raises(CorruptionError, match="sequence number 7"):
        decode_chunk(_chunk(), "c", 8)
    with pytest.raises(CorruptionError, match="bad magic"):
        decode_chunk(b"X" + _chunk()[1:], "c", 7)


def test_a_record_that_cannot_be_framed_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="u64"):
        encode_record(LogRecord("tl", -1, b""))
    with pytest.raises(InvalidArgumentError, match="65535"):
        encode_record(LogRecord("t" * 70000, 1, b""))
