"""The proxy's SCRAM-SHA-256 server against a client computed from the RFC's formulas, its
client against that server, and the doomed exchange for users it will not name."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from common.scram import ITERATIONS, Verifier
from strata.proxy.scram import (
    ScramClient,
    ScramError,
    ScramExchange,
    mock_salt,
    mock_verifier,
)


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


def _run(client: ScramClient, exchange: ScramExchange) -> None:
    server_first = exchange.server_first(client.client_first())
    client.verify(exchange.server_final(client.client_final(server_first)))


def test_the_client_logs_in_to_the_server_with_the_right_password_only() -> None:
    verifier = Verifier.from_password("tenant-password")
    _run(ScramClient("tenant-password"), ScramExchange(verifier))
    with pytest.raises(ScramError, match="password authentication failed"):
        _run(ScramClient("other"), ScramExchange(verifier))


def test_the_client_refuses_a_server_that_does_not_know_the_verifier() -> None:
    """A server that lets anyone in (its signature made without the password) is caught."""
    client = ScramClient("pw")
    exchange = ScramExchange(Verifier.from_password("pw"))
    client.client_final(exchange.server_first(client.client_first()))
    with pytest.raises(ScramError, match="signature does not match"):
        client.verify("v=" + base64.b64encode(b"\0" * 32).decode())
    with pytest.raises(ScramError, match="refused: invalid-proof"):
        client.verify("e=invalid-proof")
    with pytest.raises(ScramError, match="nonce"):
        ScramClient("pw").client_final("r=someone-elses,s=c2FsdA==,i=4096")


def test_the_doomed_exchange_fails_even_with_a_matching_proof() -> None:
    """The mock verifier's keys are all zero bytes; even a client that got them right (by
    chance) is refused, and the salt depends only on the secret and the user name."""
    secret = b"s" * 32
    verifier = mock_verifier(secret, "nobody")
    assert (verifier.salt, verifier.iterations) == (mock_salt(secret, "nobody"), ITERATIONS)
    assert mock_salt(secret, "nobody") == mock_salt(secret, "nobody") != mock_salt(
        secret, "somebody")
    assert mock_salt(secret, "nobody") != mock_salt(b"t" * 32, "nobody")
    assert len(mock_salt(secret, "nobody")) == len(Verifier.from_password("x").salt) == 16
    with pytest.raises(ScramError, match="password authentication failed"):
        _run(ScramClient("anything"), ScramExchange(verifier, doomed=True))
    honest = Verifier.from_password("pw", salt=verifier.salt)
    with pytest.raises(ScramError, match="password authentication failed"):
        _run(ScramClient("pw"), ScramExchange(honest, doomed=True))
    _run(ScramClient("pw"), ScramExchange(honest))  # the same, not doomed: it passes


def test_mock_and_real_server_first_messages_have_the_same_shape() -> None:
    real = ScramExchange(Verifier.from_password("pw")).server_first("n,,n=,r=abc")
    mock = ScramExchange(mock_verifier(b"k" * 32, "x"), doomed=True).server_first("n,,n=,r=abc")
    shape = [(part[:2], len(part)) for part in real.split(",")]
    assert shape == [(part[:2], len(part)) for part in mock.split(",")]
