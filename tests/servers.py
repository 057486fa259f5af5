"""Real servers for tests: a ``pageserver`` process on loopback ports in a temp dir."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

from common.bearer import call_credentials_metadata

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PageServerProcess:
    """One ``python -m pageserver.main`` child on loopback ports."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.home / "pageserver.log", "ab")  # noqa: SIM115 - child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pageserver.main", "--state-dir", str(self.home / "state"),
             "--storage", str(self.home / "objects"), "--listen", f"127.0.0.1:{self.port}",
             "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--pitr-window", "1h"],
            cwd=ROOT, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)})
        ready = self.home / "state" / "pageserver.json"
        deadline = time.monotonic() + 30
        while not (ready.exists() and json.loads(ready.read_text())["pid"] == self.proc.pid):
            assert self.proc.poll() is None, (self.home / "pageserver.log").read_text()
            assert time.monotonic() < deadline, "page server did not become ready"
            time.sleep(0.05)

    def signal(self, signum: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.port}",
                                     options=[("grpc.enable_http_proxy", 0)])

    def admin(self) -> tuple[tuple[str, str], ...]:
        token = (self.home / "state" / "auth" / "admin.token").read_text().strip()
        return call_credentials_metadata(token)
