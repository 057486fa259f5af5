"""The few pieces of the PostgreSQL wire protocol (v3) the proxy speaks itself.

Startup packets (no type byte: length, then a code), ErrorResponse, and reading typed
backend messages until the connection is ready, to learn its cancel key. Everything
after that is relayed as bytes. See PostgreSQL's "Message Formats" chapter.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Final

PROTOCOL_3: Final = 196608  # 3.0
SSL_REQUEST: Final = 80877103
GSSENC_REQUEST: Final = 80877104
CANCEL_REQUEST: Final = 80877102
MAX_STARTUP_BYTES: Final = 10_000  # PostgreSQL's own limit for a startup packet


class ProtocolError(Exception):
    """The client sent something that is not a valid startup."""


@dataclass(frozen=True)
class Startup:
    """A StartupMessage: protocol 3.0 and its parameters (user, database, options...)."""

    params: dict[str, str]

    def encode(self) -> bytes:
        body = struct.pack("!I", PROTOCOL_3)
        for name, value in self.params.items():
            body += name.encode() + b"\0" + value.encode() + b"\0"
        body += b"\0"
        return struct.pack("!I", len(body) + 4) + body


@dataclass(frozen=True)
class CancelKey:
    """What a CancelRequest names: the backend's pid and secret key."""

    pid: int
    secret: int

    def encode(self) -> bytes:
        return struct.pack("!IIII", 16, CANCEL_REQUEST, self.pid, self.secret)


async def read_startup_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One untyped startup packet: its code and the bytes after the code."""
    header = await reader.readexactly(8)
    length, code = struct.unpack("!II", header)
    if not 8 <= length <= MAX_STARTUP_BYTES:
        raise ProtocolError(f"invalid startup packet length {length}")
    return code, await reader.readexactly(length - 8)


def parse_startup(body: bytes) -> Startup:
    """The parameters of a StartupMessage body (after the protocol code)."""
    parts = body.split(b"\0")
    if len(parts) < 2 or parts[-1] != b"" or parts[-2] != b"":
        raise ProtocolError("startup parameters are not NUL-terminated")
    fields = parts[:-2]
    if len(fields) % 2:
        raise ProtocolError("a startup parameter has no value")
    try:
        names = [field.decode() for field in fields[0::2]]
        values = [field.decode() for field in fields[1::2]]
    except UnicodeDecodeError as exc:
        raise ProtocolError("startup parameters are not UTF-8") from exc
    return Startup(dict(zip(names, values, strict=True)))


def parse_cancel(body: bytes) -> CancelKey:
    if len(body) != 8:
        raise ProtocolError("a CancelRequest carries exactly a pid and a key")
    pid, secret = struct.unpack("!II", body)
    return CancelKey(pid, secret)


def error_response(code: str, message: str, severity: str = "FATAL") -> bytes:
    """An ErrorResponse that clients show as ``severity: message`` with SQLSTATE ``code``."""
    body = b""
    for tag, value in ((b"S", severity), (b"V", severity), (b"C", code), (b"M", message)):
        body += tag + value.encode() + b"\0"
    body += b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One typed message, as (type byte, whole message bytes including the header)."""
    header = await reader.readexactly(5)
    (length,) = struct.unpack("!I", header[1:])
    if length < 4:
        raise ProtocolError(f"invalid message length {length}")
    return header[:1], header + await reader.readexactly(length - 4)


def backend_key(message: bytes) -> CancelKey:
    """The key of a BackendKeyData ('K') message."""
    pid, secret = struct.unpack("!II", message[5:13])
    return CancelKey(pid, secret)


def authentication(code: int, data: bytes = b"") -> bytes:
    """An Authentication* message ('R'): 0 ok, 10 SASL, 11 SASL continue, 12 SASL final."""
    return b"R" + struct.pack("!II", len(data) + 8, code) + data


def sasl_initial(message: bytes) -> tuple[str, bytes]:
    """Mechanism and data of a SASLInitialResponse ('p') message."""
    body = message[5:]
    name, sep, rest = body.partition(b"\0")
    if not sep or len(rest) < 4:
        raise ProtocolError("malformed SASLInitialResponse")
    (length,) = struct.unpack("!i", rest[:4])
    data = rest[4:]
    if length != len(data):
        raise ProtocolError("SASLInitialResponse length does not match its data")
    return name.decode(errors="replace"), data
