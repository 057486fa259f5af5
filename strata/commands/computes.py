"""``strata compute``: start, stop and list PostgreSQL computes of branches on this machine."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from compute.node import ComputeNode, ComputeStatus
from strata import computes
from strata.errors import CliError, ExitCode
from strata.progress import working
from strata.render import emit_json, emit_text, print_table
from strata.session import Session, api_command, local_command
from strata.units import local_time

_FPW = click.Choice(["on", "off"])


@click.group()
def compute() -> None:
    """Start, stop and list computes: PostgreSQL 15 on a branch, its disk on the page server.

    Needs root (a FUSE mount for the postgres user), fuse3 and PostgreSQL 15.
    """


def _proxy_view(session: Session) -> dict[str, dict[str, Any]]:
    """What the proxy last published about clients, idle and suspended computes."""
    try:
        view = json.loads(session.home.proxy_state_file.read_text())
    except (OSError, ValueError):
        return {}
    return view if isinstance(view, dict) else {}


def compute_dict(node: ComputeNode, proxy: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = node.spec
    status = node.status()
    seen = (proxy or {}).get(f"{spec.tenant}/{spec.branch}") or {}
    running = status is ComputeStatus.RUNNING
    idle_since = seen.get("idle_since") if running else None
    suspended = status is ComputeStatus.STOPPED and seen.get("suspended_at") is not None
    return {
        "tenant": spec.tenant, "branch": spec.branch,
        "status": "suspended" if suspended else status.value,
        "clients": seen.get("clients", 0) if running else 0,
        "idle_s": round(time.time() - idle_since, 1) if idle_since else None,
        "host": str(spec.socket_dir), "port": spec.port, "user": "postgres",
        "dbname": "postgres",
        "uri": spec.uri(), "dsn": spec.dsn(),
        "pids": vars(node.pids) if node.pids and status is ComputeStatus.RUNNING else None,
        "started_at": node.started_at or None, "cache_mb": spec.cache_mb,
        "shared_buffers": spec.shared_buffers,
        "full_page_writes": "on" if spec.full_page_writes else "off",
        "workdir": str(spec.workdir),
        "stats": node.stats(),
    }


@compute.command("start")
@click.argument("branch")
@click.option("--port", type=click.IntRange(1, 65535),
              help="PostgreSQL port on 127.0.0.1 [default: the previous one, else the first "
                   "free from 55432].")
@click.option("--cache-mb", type=click.IntRange(min=8),
              help="Size of the local page cache [default: previous, else 256].")
@click.option("--shared-buffers", metavar="SIZE",
              help="PostgreSQL shared_buffers, e.g. 128MB [default: previous, else 128MB].")
@click.option("--full-page-writes", type=_FPW,
              help="The shim never tears a page, so off is safe and cuts WAL [default: on].")
@click.option("--force", is_flag=True,
              help="Take the branch from a compute elsewhere that still holds it (fences it).")
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="Seconds to wait until PostgreSQL accepts connections.")
@api_command
def start(session: Session, branch: str, port: int | None, cache_mb: int | None,
          shared_buffers: str | None, full_page_writes: str | None, force: bool,
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
            force=force, timeout_s=timeout)
    seconds = time.monotonic() - began
    if session.json:
        emit_json({**compute_dict(node), "start_seconds": round(seconds, 3)})
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
    emit_text({ComputeStatus.RUNNING: f"stopped the compute on branch {branch!r}",
               ComputeStatus.CRASHED: f"the compute on branch {branch!r} had crashed; "
                                      "cleaned up",
               ComputeStatus.STOPPED: f"the compute on branch {branch!r} was not running"}[before])


@compute.command("list")
@local_command
def list_(session: Session) -> None:
    """List the tenant's computes on this machine."""
    nodes = computes.listing(session.home, session.tenant)
    proxy = _proxy_view(session)
    documents = [compute_dict(node, proxy) for node in nodes]
    if session.json:
        emit_json({"tenant": session.tenant, "computes": documents})
        return
    rows = []
    for node, document in zip(nodes, documents, strict=True):
        running = document["status"] == ComputeStatus.RUNNING.value
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
