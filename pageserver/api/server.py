"""The gRPC server of a page server: services, auth, health checking and reflection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pageserver.api.audit import AuditLog
from pageserver.api.auth import AuthInterceptor, TokenAuthority
from pageserver.api.framed_server import FramedServer
from pageserver.api.handlers import service_handler
from pageserver.api.ingest_service import IngestServicer
from pageserver.api.limits import CallAdmission, CallLimits
from pageserver.api.management_service import ManagementServicer
from pageserver.api.page_service import PageServicer
from pageserver.engine import Engine
from pageserver.metrics import Metrics
from proto import strata_pb2

MAX_MESSAGE_BYTES = 128 * 1024 * 1024
SERVICES = ("PageService", "IngestService", "ManagementService")
AUDIT_FILE = "audit.jsonl"


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    audit: AuditLog
    framed: FramedServer | None = field(default=None)

    def stop(self, grace_s: float = 5.0) -> None:
        """Refuse new calls, let running ones finish for up to ``grace_s``."""
        self.health.enter_graceful_shutdown()
        stopping = self.server.stop(grace_s)
        if self.framed is not None:
            self.framed.stop(grace_s)
        stopping.wait()
        self.audit.close()


def start_server(engine: Engine, authority: TokenAuthority, metrics: Metrics, listen: str,
                 *, pg_bin_dir: str | None = None,
                 limits: CallLimits | None = None, data_socket: str = "",
                 data_listen: str = "") -> RunningServer:
    """Start serving on ``listen`` (host:port; port 0 picks a free one), and the framed
    data plane (Ingest and GetPages, rfcs/0020) on the unix socket ``data_socket`` and
    TCP ``data_listen`` if given, under the same authority and limits.

    The synchronous gRPC server holds one worker thread per open stream (every
    compute keeps a few GetPages streams and one Ingest stream open), so the pool
    is sized for every stream and call ``limits`` admit, plus headroom for the
    admin token's calls (see pageserver/api/limits.py).
    """
    limits = limits or CallLimits()
    admission = CallAdmission(limits)
    metrics.watch_engine(engine)
    audit = AuditLog(engine.config.state_dir / AUDIT_FILE)
    server = grpc.server(
        ThreadPoolExecutor(limits.threads, thread_name_prefix="strata-rpc"),
        interceptors=[AuthInterceptor(authority)],
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 # Else a second page server binds the same port and takes half the calls.
                 ("grpc.so_reuseport", 0)],
    )
    servicers: dict[str, object] = {
        "PageService": PageServicer(engine, metrics),
        "IngestService": IngestServicer(engine, metrics),
        "ManagementService": ManagementServicer(engine, authority, audit, pg_bin_dir),
    }
    server.add_generic_rpc_handlers(
        [service_handler(name, servicer, metrics, admission)
         for name, servicer in servicers.items()]
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [strata_pb2.DESCRIPTOR.services_by_name[name].full_name for name in SERVICES]
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    cannot = f"cannot listen on {listen}: address in use or not available"
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:  # grpc says only "Failed to bind"
        audit.close()
        raise OSError(cannot) from exc
    if port == 0:
        audit.close()
        raise OSError(cannot)
    framed = None
    if data_socket or data_listen:
        try:
            framed = FramedServer(engine, authority, metrics, admission, unix_path=data_socket,
                                  tcp_listen=data_listen, max_connections=limits.threads)
        except OSError:
            audit.close()
            raise
    server.start()
    if framed is not None:
        framed.start()
    return RunningServer(server, port, health_servicer, audit, framed)
