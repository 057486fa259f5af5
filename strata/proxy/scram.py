"""SCRAM-SHA-256 (RFC 5802 / 7677) as PostgreSQL speaks it, both sides, for the proxy.

Server side: the proxy checks a tenant's clients against a verifier
(``common.scram.Verifier``), the same thing PostgreSQL keeps in pg_authid, and runs a doomed
exchange with a per-user fake salt for users it will not name (``mock_salt``), as
PostgreSQL does for unknown roles. Client side: the proxy logs in to a compute as the
tenant's owner role with the tenant's password (``ScramClient``). Channel binding
(SCRAM-SHA-256-PLUS) is neither offered nor used. Passwords are not SASLprep-normalized:
the tenants' are ASCII (``strata.local.passwords``), which SASLprep leaves as they are.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from typing import Final

from common.scram import ITERATIONS, Verifier, scram_hmac

MECHANISM: Final = "SCRAM-SHA-256"


class ScramError(Exception):
    """The client's SCRAM messages are malformed or its proof is wrong."""


def _attributes(message: str) -> dict[str, str]:
    pairs = {}
    for part in message.split(","):
        name, sep, value = part.partition("=")
        if not sep or len(name) != 1:
            raise ScramError(f"malformed SCRAM attribute {part!r}")
        pairs[name] = value
    return pairs


def mock_salt(secret: bytes, user: str) -> bytes:
    """A fake salt for ``user``, the same on every attempt, so that probing the proxy with
    the same name twice shows the same salt, as a real user's would."""
    return scram_hmac(secret, b"mock salt " + user.encode())[:16]


def mock_verifier(secret: bytes, user: str) -> Verifier:
    """What a doomed exchange for ``user`` shows: its fake salt and the usual iterations."""
    return Verifier(mock_salt(secret, user), ITERATIONS, b"\0" * 32, b"\0" * 32)


class ScramExchange:
    """One server side of a SCRAM-SHA-256 exchange: first and final client messages in,
    server messages out. A ``doomed`` one fails at the end whatever the client proves."""

    def __init__(self, verifier: Verifier, doomed: bool = False) -> None:
        self._verifier = verifier
        self._doomed = doomed
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def server_first(self, client_first: str) -> str:
        gs2, sep, bare = client_first.partition(",,")  # "n,," : no channel binding, no authzid
        if not sep or gs2 not in ("n", "y"):
            raise ScramError("channel binding is not supported")
        client_nonce = _attributes(bare).get("r")
        if not client_nonce:
            raise ScramError("the client sent no nonce")
        self._client_first_bare = bare
        self._nonce = client_nonce + base64.b64encode(secrets.token_bytes(18)).decode()
        salt = base64.b64encode(self._verifier.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self._verifier.iterations}"
        return self._server_first

    def server_final(self, client_final: str) -> str:
        """The server's signature if the client's proof holds; else ``ScramError``."""
        without_proof, sep, proof_part = client_final.rpartition(",p=")
        if not sep:
            raise ScramError("the client sent no proof")
        attributes = _attributes(without_proof)
        if attributes.get("r") != self._nonce:
            raise ScramError("the nonce does not match")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}"
        signature = scram_hmac(self._verifier.stored_key, auth_message.encode())
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError as exc:
            raise ScramError("the proof is not base64") from exc
        if len(proof) != len(signature):
            raise ScramError("the proof has the wrong length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(),
                                   self._verifier.stored_key) or self._doomed:
            raise ScramError("password authentication failed")
        server_signature = scram_hmac(self._verifier.server_key, auth_message.encode())
        return "v=" + base64.b64encode(server_signature).decode()


@functools.lru_cache(maxsize=4096)
def _salted_password(password: bytes, salt: bytes, iterations: int) -> bytes:
    """SCRAM's SaltedPassword: 4096 rounds of PBKDF2, a few milliseconds each time. A
    compute's salt stays the same for a tenant's password, so the proxy pays them once
    per password, not on every login to a compute."""
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


class ScramClient:
    """One client side of a SCRAM-SHA-256 exchange, without channel binding: the proxy
    logging in to a compute. ``client_first``, then ``client_final`` of the server's
    first message, then ``verify`` the server's final message (the server knew the
    verifier, so it is the compute and not an impostor)."""

    def __init__(self, password: str) -> None:
        self._password = password.encode()
        self._nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self._client_first_bare = f"n=,r={self._nonce}"  # the user is the startup's
        self._server_signature = b""

    def client_first(self) -> str:
        return "n,," + self._client_first_bare

    def client_final(self, server_first: str) -> str:
        attributes = _attributes(server_first)
        nonce, salt_text, iterations_text = (attributes.get(key, "") for key in "rsi")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise ScramError("the server's nonce does not extend ours")
        try:
            salt = base64.b64decode(salt_text, validate=True)
            iterations = int(iterations_text)
        except ValueError as exc:
            raise ScramError(f"malformed server-first message {server_first!r}") from exc
        if not salt or iterations < 1:
            raise ScramError(f"malformed server-first message {server_first!r}")
        salted = _salted_password(self._password, salt, iterations)
        client_key = scram_hmac(salted, b"Client Key")
        without_proof = f"c=biws,r={nonce}"  # biws: base64 of "n,,"
        auth_message = f"{self._client_first_bare},{server_first},{without_proof}".encode()
        signature = scram_hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = scram_hmac(scram_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify(self, server_final: str) -> None:
        """``ScramError`` unless the server proved it knows the password's verifier."""
        attributes = _attributes(server_final)
        if "e" in attributes:
            raise ScramError(f"the server refused: {attributes['e']}")
        try:
            signature = base64.b64decode(attributes.get("v", ""), validate=True)
        except ValueError as exc:
            raise ScramError("the server's signature is not base64") from exc
        if not self._server_signature or not hmac.compare_digest(signature,
                                                                 self._server_signature):
            raise ScramError("the server's signature does not match")
