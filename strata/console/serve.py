"""Run the console: bind the listening socket first (port 0 picks a free one), publish
its URL in the ready file, then serve until SIGTERM or SIGINT."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import uvicorn

from common.durable import write_atomically
from strata.console.access import Settings
from strata.console.app import build
from strata.local.errors import LocalError


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(settings: Settings, host: str, port: int, ready_file: Path | None) -> None:
    """Serve the console on ``host:port`` until told to stop."""
    try:
        sock = listen(host, port)
    except OSError as exc:
        raise LocalError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    url = url_of(sock)
    server = uvicorn.Server(uvicorn.Config(build(settings), log_level="warning",
                                           lifespan="off", access_log=False))
    if ready_file is not None:
        write_atomically(ready_file, json.dumps({"pid": os.getpid(), "url": url}).encode())
    print(f"strata console: serving {url}", file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
