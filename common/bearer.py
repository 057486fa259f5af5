"""How a bearer token travels with a gRPC call: ``authorization: Bearer <token>`` metadata.

Apart from ``auth``, which verifies tokens with PyJWT, so that clients (the CLI, the mount
daemon) start without importing it.
"""

from __future__ import annotations

import base64
import json
from typing import Final

HEADER: Final = "authorization"


def call_credentials_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The metadata carrying ``token``: pass it as ``metadata=`` on every call.

    gRPC call credentials would attach it automatically but need a secure (TLS or local)
    channel; plain metadata also works over an insecure loopback channel.
    """
    return ((HEADER, f"Bearer {token}"),)


def unverified_lifetime(token: str) -> tuple[int, int]:
    """When ``token`` was issued and expires (unix seconds), read without verifying it:
    only to schedule its renewal, which the page server verifies. ValueError if it is not
    a JWT carrying both."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        issued, expires = claims["iat"], claims["exp"]
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise ValueError("not a token with an issue and an expiry time") from exc
    if not (isinstance(issued, int) and isinstance(expires, int)):
        raise ValueError("not a token with an issue and an expiry time")
    return issued, expires
