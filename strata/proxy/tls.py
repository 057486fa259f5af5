"""TLS for the proxy's clients: the server context, the SSLRequest upgrade, and the relay
of TLS sessions.

A client that sends SSLRequest gets 'S' and a TLS handshake when the proxy has a
certificate (``--tls-cert``/``--tls-key``; ``strata up`` makes one from a local CA), 'N'
otherwise. A TLS session cannot leave asyncio (its TLS state lives in asyncio's transport),
so its bytes are relayed by two asyncio tasks rather than by the C pumps of
``strata.proxy.relay``: slower, which is why the URI ``strata connect`` prints for a
loopback proxy asks for no TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

from strata.proxy.pgwire import ProtocolError
from strata.proxy.relay import BUFFER_BYTES, Streams

log = logging.getLogger("strata.proxy")


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the certificate chain in ``cert_file``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


async def accept(context: ssl.SSLContext, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    """Answer an SSLRequest with 'S' and run the handshake; afterwards ``reader`` and
    ``writer`` carry the decrypted stream.

    Bytes the client sent after its SSLRequest, before the handshake, would be taken as
    if they had come encrypted (an injection PostgreSQL refuses too, CVE-2021-23214):
    they are a ``ProtocolError``. asyncio shows what it buffered only in a private field.
    """
    if getattr(reader, "_buffer", b""):
        raise ProtocolError("the client sent data after its SSLRequest, before TLS")
    writer.write(b"S")
    await writer.drain()
    await writer.start_tls(context)


async def relay(client: Streams, server: Streams) -> None:
    """Relay a TLS session in asyncio until the server's end (or an error on either side);
    the client's EOF reaches the server as a half-close. Closes both."""
    client_reader, client_writer = client
    server_reader, server_writer = server
    up = asyncio.create_task(_pump(client_reader, server_writer, half_close=True))
    down = asyncio.create_task(_pump(server_reader, client_writer, half_close=False))
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down not in done and up.exception() is None:  # the client is done sending
            await asyncio.wait({down})
    finally:
        for task in (up, down):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, ssl.SSLError):
                await task
        for writer in (server_writer, client_writer):
            writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                half_close: bool) -> None:
    while data := await reader.read(BUFFER_BYTES):
        writer.write(data)
        await writer.drain()
    if half_close and writer.can_write_eof():
        writer.write_eof()
