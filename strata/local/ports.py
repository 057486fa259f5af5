"""The TCP ports ``strata up`` listens on: whether each is free, and if not, who holds it.

Checked before anything starts, so a port held by another program (often the page server
of another ``$STRATA_HOME``) is named with the option that picks another one, instead of
a child exiting with ``Address already in use``; checked again when a child exits while
starting, since the port may have been taken in between.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from strata.local.errors import LocalError
from strata.local.home import LISTEN_HOST

_PROC: Final = Path("/proc")
_LISTEN_STATE: Final = "0A"  # TCP_LISTEN in /proc/net/tcp


@dataclass(frozen=True)
class Port:
    """One port to listen on: its number, what listens there, the option that sets it."""

    number: int
    what: str
    option: str


def problem(port: int, host: str = LISTEN_HOST) -> str | None:
    """Why ``host:port`` cannot be listened on, or None if it can (port 0 always can).

    Binds the way the servers do (SO_REUSEADDR, no SO_REUSEPORT), so connections left in
    TIME_WAIT do not count and any other listener does.
    """
    if port == 0:
        return None
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            holder = holder_of(port)
            if holder is not None:
                return f"is taken by {holder}"
            return f"cannot be used ({exc.strerror or exc})"
    return None


def ensure_free(ports: Sequence[Port], details: Sequence[str] = ()) -> None:
    """Raise one ``LocalError`` naming every port of ``ports`` that cannot be listened on,
    what holds it and the ``strata up`` options that choose others."""
    taken = [(port, why) for port in ports if (why := problem(port.number)) is not None]
    if not taken:
        return
    names = ", ".join(f"port {port.number} ({port.what}) {why}" for port, why in taken)
    options = " ".join(f"{port.option} N" for port, _ in taken)
    raise LocalError(f"{names}; choose another with `strata up {options}` "
                     "(0: any free port)", details=list(details))


def holder_of(port: int) -> str | None:
    """The process listening on TCP ``port`` as ``pid N (program, cwd DIR)``, if visible.

    Other users' processes are visible only to root.
    """
    inodes = set(_listening_inodes(port))
    if not inodes:
        return None
    for pid in _pids():
        with contextlib.suppress(OSError):
            fds = _PROC / str(pid) / "fd"
            if any(os.readlink(fds / fd) in inodes for fd in os.listdir(fds)):
                return f"pid {pid} ({_describe(pid)})"
    return None


def _listening_inodes(port: int) -> Iterator[str]:
    """``socket:[inode]`` of every TCP socket listening on ``port`` (IPv4 and IPv6)."""
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
            for fields in (line.split() for line in lines):
                local_port = int(fields[1].rpartition(":")[2], 16)
                if local_port == port and fields[3] == _LISTEN_STATE:
                    yield f"socket:[{fields[9]}]"


def _pids() -> Iterator[int]:
    for entry in os.listdir(_PROC):
        if entry.isdigit():
            yield int(entry)


def _describe(pid: int) -> str:
    """``program`` (``python3 -m module`` for Python modules) and the working directory."""
    try:
        argv = (_PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return "?"
    args = argv.split("\0")
    program = os.path.basename(args[0])
    if len(args) > 2 and args[1] == "-m":
        program += f" -m {args[2]}"
    with contextlib.suppress(OSError):
        program += f", cwd {os.readlink(_PROC / str(pid) / 'cwd')}"
    return program
