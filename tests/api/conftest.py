"""A real page server (engine + gRPC) in-process on 127.0.0.1, on a free port."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from common.bearer import call_credentials_metadata
from common.convert import op_to_pb
from common.ops import FileOp
from pageserver.api import auth
from pageserver.api.limits import CallLimits
from pageserver.api.server import RunningServer, start_server
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.metrics import Metrics
from pageserver.remote import LocalDirectoryStorage
from proto import strata_pb2 as pb
from proto import strata_pb2_grpc as pb_grpc
from tests.servers import PageServerProcess


@dataclass
class Live:
    """A running server and authenticated stubs for it."""

    server: RunningServer
    engine: Engine
    metrics: Metrics
    authority: auth.TokenAuthority
    channel: grpc.Channel
    admin: tuple[tuple[str, str], ...]
    pages: pb_grpc.PageServiceStub
    ingest: pb_grpc.IngestServiceStub
    manage: pb_grpc.ManagementServiceStub
    admin_token: str = ""

    @property
    def data_unix(self) -> str:
        """The framed data plane's unix socket, as a compute's ``--data-plane``."""
        assert self.server.framed is not None
        return f"unix:{self.server.framed.unix_path}"

    @property
    def data_tcp(self) -> str:
        """The framed data plane's TCP address, as a compute's ``--data-plane``."""
        assert self.server.framed is not None
        return f"127.0.0.1:{self.server.framed.tcp_port}"

    def metadata(self, tenant: str, scope: auth.Scope) -> tuple[tuple[str, str], ...]:
        return call_credentials_metadata(self.authority.issue(tenant, scope, 600))


def ingest_once(live: Live, branch: str, ops: list[FileOp], tenant: str = "t") -> int:
    """Apply ``ops`` to ``branch`` as one batch of a writer attached for it alone (attach,
    one Ingest call, detach); the LSN the batch was acknowledged at."""
    manage, admin, timeout = live.manage, live.admin, 10
    epoch = manage.AttachWriter(pb.AttachWriterRequest(tenant=tenant, branch=branch),
                                metadata=admin, timeout=timeout).writer_epoch
    acks = list(live.ingest.Ingest(iter([
        pb.IngestRequest(open=pb.IngestOpen(tenant=tenant, branch=branch,
                                            writer_epoch=epoch)),
        pb.IngestRequest(batch=pb.IngestBatch(batch_id=1, ops=[op_to_pb(op) for op in ops],
                                              wal_lsn=100))]),
        metadata=admin, timeout=timeout))
    manage.DetachWriter(pb.DetachWriterRequest(tenant=tenant, branch=branch,
                                               writer_epoch=epoch),
                        metadata=admin, timeout=timeout)
    return int(acks[-1].lsn)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with serving(tmp_path, CallLimits(max_streams=8, max_calls=4, admin_threads=4)) as running:
        yield running


@contextlib.contextmanager
def serving(tmp_path: Path, limits: CallLimits) -> Iterator[Live]:
    """A page server in-process with ``limits``, and stubs for it."""
    config = EngineConfig(state_dir=tmp_path / "state", background_period_s=0, pitr_window_s=0)
    engine = Engine(config, LocalDirectoryStorage(tmp_path / "objects"))
    authority, admin_token = auth.load_or_create(config.state_dir, engine.storage,
                                                 engine.incarnation)
    metrics = Metrics()
    server = start_server(engine, authority, metrics, "127.0.0.1:0", limits=limits,
                          data_socket=f"@strata-test-{secrets.token_hex(8)}",
                          data_listen="127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}",
                                    options=[("grpc.enable_http_proxy", 0)])
    try:
        yield Live(server, engine, metrics, authority, channel,
                   call_credentials_metadata(admin_token),
                   pb_grpc.PageServiceStub(channel),  # type: ignore[no-untyped-call]
                   pb_grpc.IngestServiceStub(channel),  # type: ignore[no-untyped-call]
                   pb_grpc.ManagementServiceStub(channel),  # type: ignore[no-untyped-call]
                   admin_token)
    finally:
        channel.close()
        server.stop(0)
        engine.close(flush=False)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[PageServerProcess, PageServerProcess]]:
    """Two page server processes on one local-directory store."""
    store = tmp_path / "objects"
    first = PageServerProcess(tmp_path / "a", storage=store, data_plane=True)
    second = PageServerProcess(tmp_path / "b", storage=store, data_plane=True)
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        first.stop()
        second.stop()
