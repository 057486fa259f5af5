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
MAX_AUTH_MESSAGE_BYTES: Final = 10_000  # a client's authentication messages: SCRAM's are tiny


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


async def read_message(reader: asyncio.StreamReader,
                       max_length: int | None = None) -> tuple[bytes, bytes]:
    """One typed message, as (type byte, whole message bytes including the header); one
    longer than ``max_length`` is a ``ProtocolError`` before its body is read."""
    header = await reader.readexactly(5)
    (length,) = struct.unpack("!I", header[1:])
    if length < 4 or (max_length is not None and length > max_length):
        raise ProtocolError(f"invalid message length {length}")
    return header[:1], header + await reader.readexactly(length - 4)


def backend_key(message: bytes) -> CancelKey:
    """The key of a BackendKeyData ('K') message."""
    pid, secret = struct.unpack("!II", message[5:13])
    return CancelKey(pid, secret)


def password_failed(user: str) -> bytes:
    """PostgreSQL's answer to a wrong password, also the proxy's to users it will not name."""
    return error_response("28P01", f'password authentication failed for user "{user}"')


def error_fields(message: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse ('E') by their tag (C: SQLSTATE, M: message...)."""
    fields = {}
    for field in message[5:].split(b"\0"):
        if field:
            fields[field[:1].decode(errors="replace")] = field[1:].decode(errors="replace")
    return fields


def authentication_code(message: bytes) -> int:
    """The code of an Authentication* ('R') message (see ``authentication``)."""
    if len(message) < 9:
        raise ProtocolError("an authentication message without a code")
    (code,) = struct.unpack("!I", message[5:9])
    return int(code)


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    """A SASLInitialResponse ('p'): the chosen mechanism and the client's first message."""
    body = mechanism.encode() + b"\0" + struct.pack("!i", len(data)) + data
    return b"p" + struct.pack("!I", len(body) + 4) + body


def sasl_response(data: bytes) -> bytes:
    """A SASLResponse ('p'): the client's next message of the exchange."""
    return b"p" + struct.pack("!I", len(data) + 4) + data


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
