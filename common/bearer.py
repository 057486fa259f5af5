"""How a bearer token travels with a gRPC call: ``authorization: Bearer <token>`` metadata.

Apart from ``auth``, which verifies tokens with PyJWT, so that clients (the CLI, the mount
daemon) start without importing it.
"""

from __future__ import annotations

from typing import Final

HEADER: Final = "authorization"


def call_credentials_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The metadata carrying ``token``: pass it as ``metadata=`` on every call.

    gRPC call credentials would attach it automatically but need a secure (TLS or local)
    channel; plain metadata also works over an insecure loopback channel.
    """
    return ((HEADER, f"Bearer {token}"),)
