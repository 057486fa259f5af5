"""The proxy's share of the PostgreSQL wire protocol."""

from __future__ import annotations

import asyncio
import struct

import pytest

from strata.proxy.pgwire import (
    CANCEL_REQUEST,
    PROTOCOL_3,
    CancelKey,
    ProtocolError,
    Startup,
    error_fields,
    error_response,
    parse_cancel,
    parse_startup,
    password_failed,
    read_message,
    read_startup_packet,
)


def _read(packet: bytes) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(packet)
        reader.feed_eof()
        return await read_startup_packet(reader)

    return asyncio.run(go())


def test_startup_round_trip() -> None:
    startup = Startup({"user": "acme", "database": "shop", "application_name": "psql"})
    code, body = _read(startup.encode())
    assert code == PROTOCOL_3
    assert parse_startup(body) == startup


def test_cancel_round_trip_and_bad_packets() -> None:
    key = CancelKey(1234, 0xDEADBEEF)
    code, body = _read(key.encode())
    assert code == CANCEL_REQUEST and parse_cancel(body) == key
    with pytest.raises(ProtocolError, match="length"):
        _read(struct.pack("!II", 1_000_000, PROTOCOL_3))
    with pytest.raises(ProtocolError, match="no value"):
        parse_startup(b"user\0acme\0database\0\0")
    with pytest.raises(ProtocolError, match="NUL"):
        parse_startup(b"user\0acme")


def test_error_response_fields() -> None:
    message = error_response("3D000", "no branch 'x'")
    assert message[:1] == b"E"
    assert struct.unpack("!I", message[1:5])[0] == len(message) - 1
    assert b"C3D000\0" in message and b"Mno branch 'x'\0" in message


def test_read_message_refuses_a_message_over_its_limit() -> None:
    async def go(limit: int) -> tuple[bytes, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"p" + struct.pack("!I", 1_000_004))  # a body that never comes
        return await read_message(reader, limit)

    with pytest.raises(ProtocolError, match="invalid message length 1000004"):
        asyncio.run(go(10_000))


def test_password_failed_is_postgres_answer_to_a_wrong_password() -> None:
    assert error_fields(password_failed("acme")) == {
        "S": "FATAL", "V": "FATAL", "C": "28P01",
        "M": 'password authentication failed for user "acme"'}
