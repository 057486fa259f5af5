"""Who makes a tool call: the bearer token and what it says about itself.

The MCP server holds no key and verifies nothing itself: every call it makes for an agent
carries the agent's token to the page server, which checks signature, expiry, revocation,
tenant and branches. Only after such a call succeeded does the server act on the claims
read here (its SQL goes through the proxy, not the page server), so a token altered to
claim more fails at the page server before any of its claims is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

ALL_TENANTS = "*"


class BadToken(Exception):
    """The token is not one the page server issues (not a JWT with its claims)."""


@dataclass(frozen=True)
class Caller:
    """A token and its claims, as the page server wrote them into it."""

    token: str
    tenant: str  # "*": an admin token, for every tenant
    scope: str
    token_id: str
    branches: tuple[str, ...] | None  # None: every branch of the tenant
    read_only: bool
    peer: str  # where the call came from: "stdio" or the HTTP client's address

    def names(self, branch: str) -> bool:
        """Whether the token names ``branch`` itself: the only way a token lets an agent
        change a protected branch through MCP."""
        return self.branches is not None and branch in self.branches

    def tenant_or(self, default: str) -> str:
        """The tenant the call acts on: the token's, or ``default`` for an admin token."""
        return default if self.tenant == ALL_TENANTS else self.tenant


def caller_of(token: str, peer: str) -> Caller:
    """The claims of ``token`` (read without checking the signature: see the module doc)."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise BadToken("the bearer token is not a Strata token") from None
    tenant, scope, token_id = (claims.get(key) for key in ("tenant", "scope", "jti"))
    branches = claims.get("branches")
    if not (isinstance(tenant, str) and isinstance(scope, str) and isinstance(token_id, str)
            and (branches is None or isinstance(branches, list))):
        raise BadToken("the bearer token lacks the claims of a Strata token")
    return Caller(token, tenant, scope, token_id,
                  tuple(str(b) for b in branches) if branches is not None else None,
                  claims.get("ro") is True, peer)
