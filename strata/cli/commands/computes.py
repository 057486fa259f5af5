"""``strata compute``: start, stop and list PostgreSQL computes of branches on this machine."""

from __future__ import annotations

import time
from typing import Any

import click

from strata.cli.errors import CliError, ExitCode
from strata.cli.progress import working
from strata.cli.render import emit_json, emit_text, print_table
from strata.cli.session import Session, api_command, local_command
from strata.cli.units import local_time
from strata.local import computes

_FPW = click.Choice(["on", "off"])


@click.group()
def compute() -> None:
    """Start, stop and list computes: PostgreSQL 15 on a branch, its disk on the page server.

    Needs root (a FUSE mount for the postgres user), fuse3 and PostgreSQL 15.
    """


@compute.command("start")
@click.argument("branch")
@click.option("--port", type=click.IntRange(1, 65535),
              help="PostgreSQL port on 127.0.0.1 [default: the previous one, else the first "
                   "free from 55432].")
@click.option("--cache-mb", type=click.IntRange(min=8),
              help="Size of the local page cache [default: previous, else 256].")
@click.option("--cache-keep-mb", type=click.IntRange(min=0),
              help="MB of the page cache kept on disk while the compute is stopped or "
                   "suspended, for a warmer next start [default: previous, else 0: none].")
@click.option("--shared-buffers", metavar="SIZE",
              help="PostgreSQL shared_buffers, e.g. 128MB [default: previous, else 128MB].")
@click.option("--full-page-writes", type=_FPW,
              help="The shim never tears a page, so off is safe and cuts WAL [default: previous, "
                   "else off].")
@click.option("--wal-level", type=click.Choice(computes.WAL_LEVELS),
              help="minimal: no WAL for data loaded into tables created or truncated in the "
                   "same transaction (faster bulk loads; no replicas) [default: previous, "
                   "else replica].")
@click.option("--force", is_flag=True,
              help="Take the branch from a compute elsewhere that still holds it (fences it).")
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="Seconds to wait until PostgreSQL accepts connections.")
@api_command
def start(session: Session, branch: str, port: int | None, cache_mb: int | None,
          cache_keep_mb: int | None, shared_buffers: str | None,
          full_page_writes: str | None, wal_level: str | None, force: bool,
          timeout: float) -> None:
    """Start PostgreSQL on BRANCH (the proxy does this on connect by itself).

    It listens on a unix socket only root and postgres can reach; clients come through
    the proxy (`strata connect BRANCH`). Refused if a compute already writes the branch.
    Settings for the compute go on PostgreSQL's command line, never into the branch's files.
    """
    began = time.monotonic()
    spinner = working(f"starting compute on {branch!r}", session.interactive)
    with session.client() as client, spinner:
        node = computes.start(
            session.home, client, session.address(), session.tenant, branch, port=port,
            cache_mb=cache_mb, shared_buffers=shared_buffers,
            full_page_writes=None if full_page_writes is None else full_page_writes == "on",
            wal_level=wal_level, force=force, timeout_s=timeout, cache_keep_mb=cache_keep_mb)
    seconds = time.monotonic() - began
    if session.json:
        emit_json({**computes.describe(node), "start_seconds": round(seconds, 3)})
    else:
        emit_text(f"compute on branch {branch!r} accepts connections ({seconds:.1f} s) on "
                  f"{node.spec.socket_path} (root and postgres only); clients: "
                  f"`strata connect {branch}`")


@compute.command("stop")
@click.argument("branch")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for PostgreSQL and the mount to exit.")
@local_command
def stop(session: Session, branch: str, timeout: float) -> None:
    """Stop the compute on BRANCH: fast shutdown, ship every change, unmount, release.

    Stopping a compute that is not running does nothing; a crashed one is cleaned up.
    """
    node = computes.find(session.home, session.tenant, branch)
    if node is None:
        raise CliError(f"no compute was ever started on branch {branch!r}", ExitCode.NOT_FOUND)
    with working(f"stopping compute on {branch!r}", session.interactive):
        before = computes.stop(node, timeout)
    if session.json:
        emit_json({"tenant": session.tenant, "branch": branch, "was": before.value})
        return
    emit_text({"running": f"stopped the compute on branch {branch!r}",
               "crashed": f"the compute on branch {branch!r} had crashed; cleaned up",
               "stopped": f"the compute on branch {branch!r} was not running"}[before.value])


@compute.command("list")
@local_command
def list_(session: Session) -> None:
    """List the tenant's computes on this machine."""
    nodes = computes.listing(session.home, session.tenant)
    proxy = computes.proxy_view(session.home)
    documents = [computes.describe(node, proxy) for node in nodes]
    if session.json:
        emit_json({"tenant": session.tenant, "computes": documents})
        return
    rows = []
    for node, document in zip(nodes, documents, strict=True):
        running = document["status"] == "running"
        idle = document["idle_s"]
        rows.append((node.spec.branch, document["status"],
                     str(document["clients"]) if running else "-",
                     f"{idle:.0f} s" if idle is not None else "-",
                     local_time(int(node.started_at * 1e6)) if running else "-",
                     f"{node.spec.cache_mb} MB", _hit_ratio(node.stats()),
                     "on" if node.spec.full_page_writes else "off"))
    print_table(("branch", "status", "clients", "idle", "started", "cache", "cache hits",
                 "full_page_writes"), rows)


def _hit_ratio(stats: dict[str, Any] | None) -> str:
    cache = (stats or {}).get("cache") or {}
    lookups = cache.get("hits", 0) + cache.get("misses", 0)
    return f"{cache['hits'] / lookups:.0%} of {lookups}" if lookups else "-"
