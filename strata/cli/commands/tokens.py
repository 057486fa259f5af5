"""``strata token``: create, list and revoke the page server's bearer tokens."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from common.durations import parse_duration_s
from proto import strata_pb2 as pb
from strata.cli.errors import CliError, ExitCode
from strata.cli.params import DURATION
from strata.cli.render import emit_json, emit_text, print_table
from strata.cli.session import Session, api_command, tenant_given
from strata.cli.units import iso_time, local_time

ALL_TENANTS = "*"


@click.group()
def token() -> None:
    """Create, list and revoke bearer tokens for the page server's API."""


@token.command("create")
@click.option("--scope", type=click.Choice(["admin", "tenant", "compute"]), required=True,
              help="admin: everything; tenant: one tenant's management and data; "
                   "compute: one tenant's data path.")
@click.option("--ttl", type=DURATION, help="Lifetime, e.g. 24h (default: the server's, 24h).")
@click.option("--branch", "branches", multiple=True, metavar="NAME",
              help="Only this branch (repeatable); default: every branch of the tenant.")
@click.option("--read-only", is_flag=True, help="Only reads: no ingest, no changes.")
@api_command
def create(session: Session, scope: str, ttl: str | None, branches: tuple[str, ...],
           read_only: bool) -> None:
    """Create a token.

    It is for --tenant; an admin token covers all tenants. Without --json only the token
    is printed; --json also gives its id, for `strata token revoke`.
    """
    tenant = session.tenant
    if scope == "admin":
        explicit = click.get_current_context().get_parameter_source("tenant")
        if explicit is ParameterSource.COMMANDLINE and tenant != ALL_TENANTS:
            raise CliError("an admin token covers all tenants: leave out --tenant",
                           ExitCode.USAGE)
        tenant = ALL_TENANTS
    with session.client() as client:
        response = client.create_token(tenant, scope, parse_duration_s(ttl) if ttl else 0,
                                       branches=branches, read_only=read_only)
    if session.json:
        emit_json({"token": response.token, "id": response.token_id, "tenant": tenant,
                   "scope": scope, "branches": list(branches) or None,
                   "read_only": read_only,
                   "expires_at": iso_time(response.expires_at * 1_000_000),
                   "expires_at_s": response.expires_at})
    else:
        emit_text(response.token)


def _token_dict(info: pb.TokenInfo) -> dict[str, Any]:
    return {"id": info.token_id, "tenant": info.tenant, "scope": info.scope,
            "branches": list(info.branches) or None, "read_only": info.read_only,
            "created_at": iso_time(info.created_at * 1_000_000),
            "expires_at": iso_time(info.expires_at * 1_000_000),
            "revoked_at": iso_time(info.revoked_at * 1_000_000),
            "renewed_from": info.renewed_from or None}


@token.command("list")
@api_command
def list_(session: Session) -> None:
    """List the tokens the page server issued (never the tokens themselves).

    All the token in use may see, or those of --tenant when it is given.
    """
    with session.client() as client:
        tokens = client.list_tokens()
    if tenant_given():
        tokens = [t for t in tokens if t.tenant == session.tenant]
    if session.json:
        emit_json({"tokens": [_token_dict(t) for t in tokens]})
        return
    print_table(("id", "tenant", "scope", "branches", "read-only", "created", "expires",
                 "revoked"),
                [(t.token_id, t.tenant, t.scope, ",".join(t.branches) or "all",
                  "yes" if t.read_only else "no", local_time(t.created_at * 1_000_000),
                  local_time(t.expires_at * 1_000_000), local_time(t.revoked_at * 1_000_000))
                 for t in tokens])


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@api_command
def revoke(session: Session, token_id: str) -> None:
    """Revoke token ID (from `strata token list`): refused from now on, for good.

    Streams it opened before (a compute's page reads) end when they reconnect; a
    compute's token is renewed with itself, so revoking it stops renewals too.
    """
    with session.client() as client:
        info = client.revoke_token(token_id)
    if session.json:
        emit_json(_token_dict(info))
    else:
        emit_text(f"revoked token {info.token_id} ({info.scope}, tenant {info.tenant})")
