"""Real servers for tests: a ``pageserver`` process on loopback ports in a temp dir."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import socket
import sys
from pathlib import Path
from signal import SIGKILL

import grpc

from common import supervisor
from common.bearer import call_credentials_metadata

ROOT = Path(__file__).resolve().parents[1]


# Under pytest-xdist, worker gwN hands out ports of its own block below the kernel's
# ephemeral range (32768 up), so no other worker, and no outgoing connection, takes a port
# between its pick and the bind of the server it is for.
_FIRST_BLOCK = 10000
_BLOCK_SIZE = 4000
_BLOCKS = 5
_handed_out: list[int] = []


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now, for a server to bind."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    block = int(worker[2:]) if worker.startswith("gw") else _BLOCKS
    if block >= _BLOCKS:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port
    for _ in range(_BLOCK_SIZE):
        if not _handed_out:  # each port once per pass over the block, in random order
            first = _FIRST_BLOCK + block * _BLOCK_SIZE
            _handed_out.extend(random.sample(range(first, first + _BLOCK_SIZE), _BLOCK_SIZE))
        port = _handed_out.pop()
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            return port
    raise OSError(f"no free port in block {block} of 127.0.0.1")


class PageServerProcess:
    """One ``python -m pageserver.main`` child on loopback ports."""

    def __init__(self, home: Path, storage: Path | str | None = None, *,
                 data_plane: bool = False) -> None:
        self.home = home
        # The framed data plane's unix socket (abstract namespace), if it serves one.
        self.data_socket = f"@strata-test-{secrets.token_hex(8)}" if data_plane else ""
        self.storage = storage or home / "objects"  # a path or URL; another server's: shared
        self.port = free_port()
        self.metrics_port = free_port()
        self.child: supervisor.Child | None = None

    def start(self) -> None:
        child = self.child = supervisor.spawn(
            [sys.executable, "-m", "pageserver.main", "--state-dir", str(self.home / "state"),
             "--storage", str(self.storage), "--listen", f"127.0.0.1:{self.port}",
             "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--pitr-window", "1h",
             *(["--data-socket", self.data_socket] if self.data_socket else [])],
            marker=b"pageserver", log_file=self.home / "pageserver.log", cwd=ROOT,
            label="test")
        ready = self.home / "state" / "pageserver.json"
        try:
            supervisor.wait_ready(child, lambda: supervisor.names_pid(ready, child.pid), 30,
                                  what="the page server")
        except supervisor.SupervisorError as exc:
            raise AssertionError("\n".join([exc.message, *exc.log_tail])) from None

    def signal(self, signum: int) -> int | None:
        """Send ``signum`` (SIGKILL after 60 s) and wait for the exit; the exit status."""
        assert self.child is not None
        supervisor.stop(self.child, 60, signum=signum, what="the page server")
        return self.child.returncode

    def stop(self) -> None:
        if self.child is not None:
            supervisor.stop(self.child, 60, signum=SIGKILL, what="the page server")

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.port}",
                                     options=[("grpc.enable_http_proxy", 0)])

    def admin(self) -> tuple[tuple[str, str], ...]:
        token = (self.home / "state" / "auth" / "admin.token").read_text().strip()
        return call_credentials_metadata(token)
