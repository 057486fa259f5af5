"""The proxy's SCRAM-SHA-256 server against a client computed from the RFC's formulas."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from strata.proxy.scram import ScramError, ScramExchange, Verifier


def _client_final(password: str, client_first_bare: str, server_first: str) -> str:
    attributes = dict(part.split("=", 1) for part in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(),
                                 base64.b64decode(attributes["s"]), int(attributes["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={attributes['r']}"
    auth = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored, auth, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}"


def test_the_right_password_passes_and_the_server_proves_itself() -> None:
    exchange = ScramExchange(Verifier.from_password("s3cret"))
    server_first = exchange.server_first("n,,n=,r=clientnonce")
    assert server_first.startswith("r=clientnonce")
    final = exchange.server_final(_client_final("s3cret", "n=,r=clientnonce", server_first))
    assert final.startswith("v=")


def test_a_wrong_password_or_a_tampered_nonce_fails() -> None:
    exchange = ScramExchange(Verifier.from_password("s3cret"))
    server_first = exchange.server_first("n,,n=,r=abc")
    with pytest.raises(ScramError, match="password authentication failed"):
        exchange.server_final(_client_final("guess", "n=,r=abc", server_first))
    with pytest.raises(ScramError, match="nonce"):
        exchange.server_final("c=biws,r=other,p=AAAA")
    with pytest.raises(ScramError, match="channel binding"):
        ScramExchange(Verifier.from_password("x")).server_first("p=tls-server-end-point,,n=,r=a")
