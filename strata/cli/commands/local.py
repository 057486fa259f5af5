"""``strata up``, ``down`` and ``status``: the page server, the proxy and the web console on
this machine."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click

from strata.cli.errors import ExitCode
from strata.cli.params import DURATION
from strata.cli.render import emit_json, emit_text, print_table
from strata.cli.session import Session, local_command
from strata.cli.units import human_size
from strata.local import computes, console_lifecycle, lifecycle, proxy_lifecycle
from strata.local.home import UpOptions
from strata.local.layer_cache_status import layer_cache_stats


def _merge(saved: UpOptions, **given: Any) -> UpOptions:
    """``saved`` with the options given on the command line; checks they fit together."""
    changes = {name: value for name, value in given.items() if value is not None}
    if "port" in changes and "metrics_port" not in changes:
        changes["metrics_port"] = changes["port"] + 1 if changes["port"] else 0
    if changes.get("storage") == "local":
        changes.update(s3_endpoint="", s3_bucket="", s3_prefix="")
    merged = dataclasses.replace(saved, **changes)
    s3_given = any(name.startswith("s3_") and value for name, value in given.items())
    if merged.storage == "local" and s3_given:
        raise click.UsageError("the --s3-* options need --storage s3")
    if merged.storage == "s3" and not merged.s3_bucket:
        raise click.UsageError("--storage s3 needs --s3-bucket")
    if bool(merged.tls_cert) != bool(merged.tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    return merged


@click.command()
@click.option("--storage", type=click.Choice(["local", "s3"]),
              help="Object store: a local directory under $STRATA_HOME, or S3 [saved].")
@click.option("--s3-endpoint", metavar="URL", help="S3 endpoint, e.g. a MinIO URL [saved].")
@click.option("--s3-bucket", metavar="NAME", help="S3 bucket [saved].")
@click.option("--s3-prefix", metavar="PREFIX", help="Key prefix in the bucket [saved].")
@click.option("--port", type=click.IntRange(0, 65535),
              help="gRPC port on 127.0.0.1 (default 6400; 0: any free port) [saved].")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Prometheus port (default: port + 1; 0: any free port) [saved].")
@click.option("--pitr-window", type=DURATION,
              help="History kept readable, e.g. 24h (default 24h) [saved].")
@click.option("--proxy-port", type=click.IntRange(0, 65535),
              help="PostgreSQL port of the proxy (default 6432; 0: any free port) [saved].")
@click.option("--suspend-timeout", type=DURATION,
              help="Stop a compute after this long without clients (default 5m) [saved].")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, resolve_path=True),
              help="The proxy's TLS certificate (default: one from a local CA made under "
                   "$STRATA_HOME/tls) [saved].")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, resolve_path=True),
              help="Its private key [saved].")
@click.option("--require-tls/--no-require-tls", default=None,
              help="The proxy refuses clients without TLS (default off on loopback) [saved].")
@click.option("--console/--no-console", default=None,
              help="Also start the web console, `strata console` (default: on) [saved].")
@click.option("--console-port", type=click.IntRange(0, 65535),
              help="The console's HTTP port on 127.0.0.1 (default 6480; 0: any free port) "
                   "[saved].")
@click.option("--data-plane", type=click.Choice(["unix", "grpc"]),
              help="How computes ship commits and read pages: a framed protocol on a unix "
                   "socket (default), or gRPC streams [saved].")
@click.option("--timeout", type=click.FloatRange(min=1), default=lifecycle.START_TIMEOUT_S,
              show_default=True, help="Seconds to wait until it serves.")
@local_command
def up(session: Session, timeout: float, **given: Any) -> None:
    """Start the local page server and, as root, the proxy (idempotent).

    Both run in the background, with the web console unless --no-console; what already
    runs and serves is left alone. The proxy starts a branch's compute when a client
    connects and stops it when idle.

    Options are remembered in $STRATA_HOME/config.json, so a plain `strata up` repeats
    them. S3 credentials come from the AWS_* environment variables.
    """
    options = _merge(UpOptions.load(session.home), **given)
    as_root = os.geteuid() == 0
    also_needed = [*(proxy_lifecycle.ports_needed(session.home, options) if as_root else []),
                   *console_lifecycle.ports_needed(session.home, options)]
    state, started = lifecycle.up(session.home, options, timeout, also_needed)
    proxy: dict[str, Any] | None = None
    if as_root:
        proxy_state, proxy_started = proxy_lifecycle.up(session.home, options, timeout)
        proxy = {"started": proxy_started, **dataclasses.asdict(proxy_state)}
    console: dict[str, Any] | None = None
    if options.console:
        console_state, console_started = console_lifecycle.up(session.home, options, timeout)
        console = {"started": console_started, **dataclasses.asdict(console_state)}
    if session.json:
        emit_json({"started": started, **dataclasses.asdict(state), "proxy": proxy,
                   "console": console})
        return
    what = "started" if started else "already running"
    emit_text(f"page server {what} (pid {state.pid}) at {state.address}; "
              f"storage {state.storage}; log {state.log_file}")
    if proxy is None:
        emit_text("proxy not started: it starts computes, which need root")
    else:
        what = "started" if proxy["started"] else "already running"
        emit_text(f"proxy {what} (pid {proxy['pid']}) at {proxy['address']}; "
                  "connect with `strata connect BRANCH`")
    if console is not None:
        what = "started" if console["started"] else "already running"
        emit_text(f"console {what} (pid {console['pid']}) at {console['address']}; "
                  "log in with a token (`strata token create`, or the admin token in "
                  f"{session.home.admin_token_file})")


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0), default=lifecycle.STOP_TIMEOUT_S,
              show_default=True, help="Seconds to wait after SIGTERM before SIGKILL.")
@local_command
def down(session: Session, timeout: float) -> None:
    """Stop the proxy, the computes of this machine, then the page server (idempotent).

    Computes shut down fast and ship every change; the page server drains running calls
    and flushes its memtables before it exits.
    """
    console = console_lifecycle.down(session.home, timeout)
    proxy = proxy_lifecycle.down(session.home, timeout)  # first: it would wake computes
    stopped = computes.stop_all(session.home, timeout)
    pid, killed = lifecycle.down(session.home, timeout)
    if session.json:
        emit_json({"stopped": pid is not None, "pid": pid, "killed": killed,
                   "computes_stopped": stopped, "proxy_stopped": proxy,
                   "console_stopped": console})
        return
    if console is not None:
        emit_text(f"console stopped (pid {console})")
    if proxy is not None:
        emit_text(f"proxy stopped (pid {proxy})")
    for name in stopped:
        emit_text(f"stopped compute {name}")
    if pid is None:
        emit_text("page server not running")
    elif killed:
        emit_text(f"page server (pid {pid}) did not stop within {timeout:g} s: killed")
    else:
        emit_text(f"page server stopped (pid {pid})")


@click.command()
@local_command
def status(session: Session) -> int:
    """Show what runs locally.

    Per component: pid, liveness, health, addresses, storage and state directory; the
    page server's layer cache (read from its metrics). Exits
    with 5 (as when the page server is unreachable) unless the page server serves, so
    scripts can test for it.
    """
    states = [lifecycle.status(session.home), proxy_lifecycle.status(session.home),
              console_lifecycle.status(session.home)]
    server = states[0]
    cache = layer_cache_stats(server.metrics_address) \
        if server.healthy and server.metrics_address else None
    if session.json:
        ca_file = proxy_lifecycle.ca_file(session.home)
        emit_json({"home": str(session.home.root),
                   "components": [dataclasses.asdict(state) for state in states],
                   "proxy_ca_file": str(ca_file) if ca_file else None,
                   "console_url": console_lifecycle.url(session.home),
                   "layer_cache": cache})
    else:
        _print_status(session, states)
        if cache is not None:
            emit_text(_cache_line(cache))
    if server.healthy:
        return ExitCode.OK
    if server.alive:
        problem = f"the page server (pid {server.pid}) does not answer; see {server.log_file}"
    else:
        problem = f"the page server of {session.home.root} is not running; `strata up` starts it"
    click.echo(f"strata: {problem}", err=True)
    return ExitCode.UNREACHABLE


def _cache_line(cache: dict[str, int]) -> str:
    """The layer cache in one line of ``strata status``."""
    if cache.get("in_place"):
        return (f"layers: read in place from the local store (one copy on disk), "
                f"{cache.get('hits', 0):,} layer reads")
    return (f"layer cache: {human_size(cache.get('bytes', 0))} of "
            f"{human_size(cache.get('limit_bytes', 0))}; hits {cache.get('hits', 0):,}, "
            f"misses {cache.get('misses', 0):,}, evictions {cache.get('evictions', 0):,} "
            f"({human_size(cache.get('evicted_bytes', 0))})")


def _print_status(session: Session, states: list[lifecycle.ComponentState]) -> None:
    emit_text(f"home {session.home.root}")
    print_table(
        ("component", "pid", "alive", "healthy", "address", "metrics", "storage", "state dir"),
        [(s.component, str(s.pid or "-"), "yes" if s.alive else "no",
          "yes" if s.healthy else "no", s.address, s.metrics_address or "-", s.storage,
          s.state_dir) for s in states])
