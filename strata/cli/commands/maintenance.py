"""``strata gc``, ``strata compact`` and ``strata token``: upkeep and access."""

from __future__ import annotations

import click
from click.core import ParameterSource

from common.durations import parse_duration_s
from strata.cli.errors import CliError, ExitCode
from strata.cli.params import DURATION
from strata.cli.progress import working
from strata.cli.render import emit_json, emit_text
from strata.cli.session import Session, api_command
from strata.cli.units import human_size, iso_time

ALL_TENANTS = "*"


@click.command()
@api_command
def gc(session: Session) -> None:
    """Remove layers nothing needs any more.

    A layer stays while a branch, a checkpoint or the PITR window still needs it.
    """
    with session.client() as client, working("collecting garbage", session.interactive):
        result = client.gc(session.tenant)
    if session.json:
        emit_json({"timelines": result.timelines, "layers_removed": result.layers_removed,
                   "bytes_removed": result.bytes_removed})
    else:
        emit_text(f"gc: {result.layers_removed} layers ({human_size(result.bytes_removed)}) "
                  f"removed across {result.timelines} timelines")


@click.command()
@click.option("--force", is_flag=True, help="Compact even below the thresholds.")
@api_command
def compact(session: Session, force: bool) -> None:
    """Flush and compact the tenant's layers.

    Memtables are flushed to L0 deltas, which merge into L1 deltas; image layers are
    written where deltas stack up.
    """
    with session.client() as client, working("compacting", session.interactive):
        result = client.compact(session.tenant, force=force)
    if session.json:
        emit_json({"l0_merged": result.l0_merged, "l1_written": result.l1_written,
                   "images_written": result.images_written})
    else:
        emit_text(f"compact: {result.l0_merged} L0 layers merged, {result.l1_written} L1 "
                  f"layers and {result.images_written} image layers written")


@click.group()
def token() -> None:
    """Create bearer tokens for the page server's API."""


@token.command("create")
@click.option("--scope", type=click.Choice(["admin", "tenant", "compute"]), required=True,
              help="admin: everything; tenant: one tenant's management and data; "
                   "compute: one tenant's data path.")
@click.option("--ttl", type=DURATION, help="Lifetime, e.g. 24h (default: the server's, 24h).")
@api_command
def create(session: Session, scope: str, ttl: str | None) -> None:
    """Create a token.

    It is for --tenant; an admin token covers all tenants. Without --json only the token
    is printed.
    """
    tenant = session.tenant
    if scope == "admin":
        explicit = click.get_current_context().get_parameter_source("tenant")
        if explicit is ParameterSource.COMMANDLINE and tenant != ALL_TENANTS:
            raise CliError("an admin token covers all tenants: leave out --tenant",
                           ExitCode.USAGE)
        tenant = ALL_TENANTS
    with session.client() as client:
        response = client.create_token(tenant, scope, parse_duration_s(ttl) if ttl else 0)
    if session.json:
        emit_json({"token": response.token, "tenant": tenant, "scope": scope,
                   "expires_at": iso_time(response.expires_at * 1_000_000),
                   "expires_at_s": response.expires_at})
    else:
        emit_text(response.token)
