"""Undo's watch over a client's stream that the C pump cannot relay (a TLS session, whose
bytes are decrypted in asyncio): the frontend messages are followed here as
``_pump.watch`` follows them, and the ones it would hold are held the same way.

Held, and shown to the watch before they go on (``_pump.message_suspect``, the C
pump's own test): a Query whose SQL the pre-filter flags, a Parse whose query it flags
or that defines one of the watched prepared statements again, a Bind of one of those.
Every other message, and a declared length under 4 (not a message: the rest goes on as
it is, PostgreSQL ends it), passes without a look at its body. A looked-at message over
16 MiB is shown only in part (``whole`` False) and the rest follows unlooked at.
tests/unit/test_frontend_watch.py checks that this holds back exactly what
``_pump.watch`` does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from strata.proxy._pump import message_suspect
from strata.proxy.relay import BUFFER_BYTES, Watch

HELD_MAX: Final = 16 * 1024 * 1024  # _pump.c's HELD_MAX
_EVERYTHING: Final = 1 << 64
log = logging.getLogger("strata.proxy")


class Framing:
    """A client's bytes, split into what may go on and the messages to hold."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0  # bytes of the current message still to pass unlooked at

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def rest(self) -> bytes:
        """Everything still buffered (at the client's EOF: a torn last message)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    def next(self, names: bytes) -> tuple[bytes, bytes | None, bool]:
        """The bytes that may go on now; then the message to hold before anything after
        it (None: no such message is complete yet) and whether it is whole."""
        buffer, at = self._buffer, 0
        while at < len(buffer):
            if self._skip:
                step = min(self._skip, len(buffer) - at)
                at += step
                self._skip -= step
                continue
            if len(buffer) - at < 5:
                break
            kind = buffer[at]
            declared = int.from_bytes(buffer[at + 1:at + 5], "big")
            if declared < 4:
                self._skip = _EVERYTHING
                continue
            total = 1 + declared
            if not (kind in b"QP" or (kind == ord("B") and names)):
                self._skip = total
                continue
            if len(buffer) - at >= total:
                message = bytes(buffer[at:at + total])
                if message_suspect(message, names):
                    passed = bytes(buffer[:at])
                    del buffer[:at + total]
                    return passed, message, True
                at += total
                continue
            if total > HELD_MAX:
                passed, held = bytes(buffer[:at]), bytes(buffer[at:])
                self._skip = total - len(held)
                buffer.clear()
                return passed, held, False
            break
        passed = bytes(buffer[:at])
        del buffer[:at]
        return passed, None, False


async def relay_watched(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        watch: Watch) -> None:
    """The client's messages from ``reader`` (from a message's start) to ``writer``, each
    held one shown to ``watch`` first (in a thread: it waits for the page server); the
    client's EOF becomes a half-close."""
    framing, names = Framing(), b""
    while data := await reader.read(BUFFER_BYTES):
        framing.feed(data)
        while True:
            passed, held, whole = framing.next(names)
            writer.write(passed)
            if held is None:
                break
            await writer.drain()
            try:
                names = await asyncio.to_thread(watch, held, whole)
            except Exception:  # a bug in the watch costs an undo, never the session
                log.exception("the watch failed; the statement goes on")
            writer.write(held)
        await writer.drain()
    writer.write(framing.rest())
    await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
