"""Who a client is: the three ways the proxy authenticates a connection.

- The tenant's owner role (user == tenant) and the read-only role: the proxy checks the
  client's SCRAM proof against the credential of the branch it names (``verify``), then
  logs in to the compute as that role with a password no client has (``owner_login``,
  SCRAM as a client).
- Any other role of an existing branch: the compute checks that role's own password; the
  proxy passes the exchange through untouched (``pass_through``).
- Users the proxy will not name (unknown tenant or branch, ``postgres``, ``pg_*``): a
  doomed exchange with a fake salt per user name (``verify`` with a mock verifier), ending
  as a wrong password does.

A failed password ends, in all three, in exactly ``pgwire.password_failed(user)``, so a
client cannot tell an unknown name from a wrong password by the answer.
"""

from __future__ import annotations

import asyncio
import logging

from strata.proxy.pgwire import (
    MAX_AUTH_MESSAGE_BYTES,
    ProtocolError,
    authentication,
    authentication_code,
    error_fields,
    error_response,
    password_failed,
    read_message,
    sasl_initial,
    sasl_initial_response,
    sasl_response,
)
from strata.proxy.scram import MECHANISM, ScramClient, ScramError, ScramExchange

log = logging.getLogger("strata.proxy")
AUTH_OK = 0
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


async def verify(user: str, exchange: ScramExchange, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> bool:
    """Run the server side of ``exchange`` with the client; True once it proved the
    password (the client got SASLFinal, not yet AuthenticationOk), else False and the
    client got ``password_failed``."""
    writer.write(authentication(AUTH_SASL, MECHANISM.encode() + b"\0\0"))
    await writer.drain()
    try:
        kind, message = await read_message(reader, MAX_AUTH_MESSAGE_BYTES)
        mechanism, first = sasl_initial(message) if kind == b"p" else ("", b"")
        if mechanism != MECHANISM:
            raise ScramError(f"expected a {MECHANISM} response")
        writer.write(authentication(AUTH_SASL_CONTINUE,
                                    exchange.server_first(first.decode()).encode()))
        await writer.drain()
        kind, message = await read_message(reader, MAX_AUTH_MESSAGE_BYTES)
        if kind != b"p":
            raise ScramError("expected a SASL response")
        final = exchange.server_final(message[5:].decode())
    except (ScramError, UnicodeDecodeError, ProtocolError) as exc:
        log.info("authentication of user %r failed: %s", user, exc)
        writer.write(password_failed(user))
        await writer.drain()
        return False
    writer.write(authentication(AUTH_SASL_FINAL, final.encode()))
    return True


async def owner_login(password: str, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bytes:
    """Log in to a compute (its startup already sent) with ``password``: SCRAM if it asks,
    nothing if it trusts. The compute's first message after its side of the exchange:
    AuthenticationOk, or the ErrorResponse that ended the login."""
    try:
        return await _owner_exchange(password, reader, writer)
    except ScramError as exc:
        return error_response("28000", f"the proxy could not log in to the compute: {exc}")


async def _owner_exchange(password: str, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> bytes:
    client: ScramClient | None = None
    while True:
        kind, message = await read_message(reader)
        if kind != b"R":
            return message
        code = authentication_code(message)
        if code == AUTH_OK:
            return message
        if code == AUTH_SASL and MECHANISM.encode() in message[9:].split(b"\0"):
            client = ScramClient(password)
            writer.write(sasl_initial_response(MECHANISM, client.client_first().encode()))
        elif code == AUTH_SASL_CONTINUE and client is not None:
            writer.write(sasl_response(client.client_final(message[9:].decode()).encode()))
        elif code == AUTH_SASL_FINAL and client is not None:
            client.verify(message[9:].decode())
            continue
        else:
            return error_response("28000", f"the compute asked for authentication {code}, "
                                           f"which the proxy does not speak")
        await writer.drain()


async def pass_through(user: str, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                       server: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> bytes:
    """Relay the compute's authentication of ``user`` (its startup already sent) with the
    client: each request the compute makes goes to the client, each answer back. The
    compute's first message after it: AuthenticationOk, or the ErrorResponse that ended
    it (a failed password as ``password_failed``, whatever the compute's own wording)."""
    client_reader, client_writer = client
    server_reader, server_writer = server
    while True:
        kind, message = await read_message(server_reader)
        if kind == b"E" and error_fields(message).get("C") == "28P01":
            return password_failed(user)
        if kind != b"R" or authentication_code(message) == AUTH_OK:
            return message
        client_writer.write(message)
        await client_writer.drain()
        if authentication_code(message) == AUTH_SASL_FINAL:
            continue  # nothing to answer: AuthenticationOk follows
        kind, answer = await read_message(client_reader, MAX_AUTH_MESSAGE_BYTES)
        if kind != b"p":
            raise ProtocolError(f"expected an authentication response, not {kind!r}")
        server_writer.write(answer)
        await server_writer.drain()
