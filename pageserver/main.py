"""``pageserver``: the page server process.

Settings come from a TOML file (``--config``), then ``STRATA_PAGESERVER_*``
environment variables, then flags, later ones winning. SIGTERM or SIGINT stops
accepting calls, lets running ones finish, flushes every memtable to the object
store and exits 0; after SIGKILL a restart replays the ingest log.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from common.collector import freeze_start_up
from common.durable import write_durably
from common.durations import parse_duration
from common.errors import StrataError
from pageserver.api import auth
from pageserver.api.limits import CallLimits
from pageserver.api.server import start_server
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.layer_cache import DEFAULT_LIMIT_BYTES
from pageserver.metrics import InstrumentedStorage, Metrics
from pageserver.remote import RemoteStorage, open_storage
from pageserver.remote.faults import FaultPlan, FaultyStorage, parse_fault_plan

log = logging.getLogger("pageserver")

READY_FILE = "pageserver.json"


@dataclass
class ServerSettings:
    """Everything the process needs; see ``settings_from``."""

    listen: str = "127.0.0.1:6400"
    advertise_address: str = ""  # where others reach us, recorded in the store; "": listen
    metrics_listen: str = "127.0.0.1:6401"
    # The framed data plane (rfcs/0020): a unix socket path ("@name": abstract namespace)
    # for computes on this host, and host:port for others; "": not served.
    data_socket: str = ""
    data_listen: str = ""
    state_dir: str = ".strata/pageserver"
    storage: str = ""  # default: the "objects" directory next to state_dir
    pg_bin_dir: str = ""
    pitr_window: str = "24h"
    fork_pitr_window: str = "1h"
    memtable_bytes: int = 64 * 1024 * 1024
    memtable_age: str = "5m"
    l0_compaction_threshold: int = 8
    image_threshold: int = 3
    image_read_threshold: int = 10
    image_gain: float = 1.5
    gc_period: str = "10m"
    storage_sample_period: str = "5m"
    storage_samples: int = 2016
    background_workers: int = 2
    writer_lease: str = "10s"
    layer_cache_bytes: int = DEFAULT_LIMIT_BYTES  # downloaded layers kept (S3 stores only)
    log_level: str = "INFO"
    streams_per_tenant: int = CallLimits.streams_per_tenant
    calls_per_tenant: int = CallLimits.calls_per_tenant
    max_streams: int = CallLimits.max_streams
    max_calls: int = CallLimits.max_calls
    admin_threads: int = CallLimits.admin_threads
    storage_faults: str = ""  # a fault plan (pageserver/remote/faults.py); tests and drills only

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            state_dir=Path(self.state_dir).resolve(),
            pitr_window_s=parse_duration(self.pitr_window),
            fork_pitr_window_s=parse_duration(self.fork_pitr_window),
            memtable_bytes=self.memtable_bytes,
            memtable_age_s=parse_duration(self.memtable_age),
            l0_compaction_threshold=self.l0_compaction_threshold,
            image_threshold=self.image_threshold,
            image_read_threshold=self.image_read_threshold,
            image_gain=self.image_gain,
            gc_period_s=parse_duration(self.gc_period),
            storage_sample_period_s=parse_duration(self.storage_sample_period),
            storage_samples=self.storage_samples,
            background_workers=self.background_workers,
            writer_lease_s=parse_duration(self.writer_lease),
            layer_cache_bytes=self.layer_cache_bytes,
        )

    def call_limits(self) -> CallLimits:
        return CallLimits(self.streams_per_tenant, self.calls_per_tenant, self.max_streams,
                          self.max_calls, self.admin_threads)

    def storage_url(self) -> str:
        return self.storage or str(Path(self.state_dir).resolve().parent / "objects")

    def fault_plan(self) -> FaultPlan | None:
        return parse_fault_plan(self.storage_faults) if self.storage_faults else None

    def open_storage(self, metrics: Metrics) -> RemoteStorage:
        """The object store, counted by ``metrics``, with the fault plan's faults if any."""
        storage = open_storage(self.storage_url())
        plan = self.fault_plan()
        if plan is not None:
            log.warning("injecting object-store faults: %s", plan.describe())
            storage = FaultyStorage(storage, plan)
        return InstrumentedStorage(storage, metrics)


def settings_from(argv: list[str], environ: dict[str, str]) -> ServerSettings:
    """Merge the TOML file, the environment and the flags into settings."""
    fields = ServerSettings.__dataclass_fields__
    parser = argparse.ArgumentParser(prog="pageserver", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML file of settings")
    for name in fields:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        with open(args.config, "rb") as handle:
            values.update(tomllib.load(handle))
    for name in fields:
        env = environ.get(f"STRATA_PAGESERVER_{name.upper()}")
        if env is not None:
            values[name] = env
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(unknown)}")
    settings = ServerSettings()
    for name, value in values.items():
        kind = type(getattr(settings, name))
        setattr(settings, name, kind(value))
    return settings


def serve(settings: ServerSettings, stop: threading.Event) -> None:
    """Run until ``stop`` is set, then shut down cleanly.

    What the server writes (layers, log, manifests, keys) is its own alone: files 0600
    under directories 0700, also those a library creates with its own defaults.
    """
    os.umask(0o077)
    config = settings.engine_config()
    config.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.state_dir, 0o700)  # and so everything under it, made by older versions
    ready = config.state_dir / READY_FILE
    ready.unlink(missing_ok=True)  # left behind by a killed predecessor
    metrics = Metrics()
    storage = settings.open_storage(metrics)
    engine = Engine(config, storage, address=_known_address(settings))
    metrics_server = None
    try:
        authority, _ = auth.load_or_create(config.state_dir, storage, engine.incarnation)
        server = start_server(engine, authority, metrics, settings.listen,
                              pg_bin_dir=settings.pg_bin_dir or None,
                              limits=settings.call_limits(),
                              data_socket=settings.data_socket,
                              data_listen=settings.data_listen)
        metrics_address = ""
        if settings.metrics_listen:
            host, _, port = settings.metrics_listen.rpartition(":")
            try:
                metrics_server, _thread = start_http_server(int(port), host, metrics.registry)
            except OSError as exc:
                raise OSError(f"cannot serve metrics on {settings.metrics_listen}: "
                              f"{exc.strerror or exc}") from exc
            metrics_address = f"{host}:{metrics_server.server_port}"
        host = settings.listen.rpartition(":")[0]
        data_listen = ""
        if server.framed is not None and server.framed.tcp_port:
            data_listen = f"{settings.data_listen.rpartition(':')[0]}:{server.framed.tcp_port}"
        engine.locations.register(settings.advertise_address or f"{host}:{server.port}")
        freeze_start_up()  # full collections then skip what start-up made
        write_durably(ready, json.dumps({
            "pageserver_id": engine.locations.pageserver_id,
            "pid": os.getpid(), "listen": f"{host}:{server.port}", "metrics": metrics_address,
            "data_socket": settings.data_socket, "data_listen": data_listen,
            "storage": storage.describe(), "state_dir": str(config.state_dir)}, indent=1).encode())
        log.info("serving on %s:%d (metrics %s, storage %s)", host, server.port,
                 metrics_address or "off", storage.describe())
        stop.wait()
        log.info("stopping: draining calls, flushing memtables")
        server.stop()
    finally:
        ready.unlink(missing_ok=True)
        if metrics_server is not None:
            metrics_server.shutdown()
        engine.close(flush=True)
    try:  # every tenant is flushed: another page server may take them without force
        engine.locations.mark_stopped()
    except StrataError as exc:
        log.warning("could not record the clean stop in the object store: %s", exc)
    log.info("stopped cleanly")


def _known_address(settings: ServerSettings) -> str:
    """The address to record in the claims made at start-up: the advertised one, else the
    listen address unless its port is 0 (chosen only once bound; registered then)."""
    if settings.advertise_address:
        return settings.advertise_address
    return "" if settings.listen.rpartition(":")[2] == "0" else settings.listen


def main(argv: list[str] | None = None) -> None:
    try:
        settings = settings_from(sys.argv[1:] if argv is None else argv, dict(os.environ))
        settings.engine_config()
        settings.call_limits()
        settings.fault_plan()
    except (ValueError, OSError, StrataError, tomllib.TOMLDecodeError) as exc:
        print(f"pageserver: {exc}", file=sys.stderr)
        sys.exit(2)
    # Hand the GIL over sooner than every 5 ms: a thread woken by a reply (an fsync
    # waiting on the page server, a stream waiting on the log) runs ~10% sooner under load.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve(settings, stop)
    except (StrataError, OSError) as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
