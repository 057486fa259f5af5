"""A helper process that ``strata up`` starts detached and ``strata down`` stops (the proxy,
the console): where its pid, readiness and log live, and the steps they share.

The process writes a ready file (JSON with its ``pid`` and where it listens) once it
serves; a ready file counts only while that pid is alive and is the one recorded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import supervisor
from strata.local import ports
from strata.local.errors import LocalError
from strata.local.home import Home
from strata.local.lifecycle import wait_started


@dataclass(frozen=True)
class Detached:
    """One detached helper of a home: ``marker`` is a byte string of its command line
    (a recycled pid running something else is not it); ``what`` names it in messages."""

    marker: bytes
    what: str
    pid_file: Path
    ready_file: Path
    log_file: Path

    def child(self, pid: int) -> supervisor.Child:
        return supervisor.Child(pid, self.marker, self.log_file)

    def pid(self) -> int | None:
        """The pid of the running helper, or None."""
        pid = supervisor.read_pid(self.pid_file)
        return pid if pid is not None and self.child(pid).alive() else None

    def ready_info(self) -> dict[str, Any] | None:
        """What the running helper wrote once it served, or None."""
        info = supervisor.ready_info(self.ready_file)
        pid = self.pid()
        if info is None or pid is None or info.get("pid") != pid:
            return None
        return info

    def spawn(self, home: Home, command: list[str]) -> supervisor.Child:
        """Start ``command`` detached, in ``home``, after clearing a stale ready file."""
        self.ready_file.unlink(missing_ok=True)
        return supervisor.spawn(command, marker=self.marker, log_file=self.log_file,
                                cwd=home.root,
                                env={**os.environ, "STRATA_HOME": str(home.root)},
                                pid_file=self.pid_file, label="strata up")

    def wait_ready(self, child: supervisor.Child, timeout_s: float,
                   wanted: Sequence[ports.Port], ready: Callable[[], bool]) -> None:
        """Wait until ``ready()``; if the child exits first and a port it ``wanted`` is
        taken now, say so."""
        wait_started(child, ready, timeout_s, wanted, what=self.what,
                     not_ready=f"{self.what} is not listening after {timeout_s:g} s; see "
                               f"{self.log_file}")

    def down(self, timeout_s: float) -> int | None:
        """Stop it (SIGTERM, then SIGKILL); the pid stopped, if one ran."""
        pid = self.pid()
        if pid is not None:
            try:
                supervisor.stop(self.child(pid), timeout_s, what=self.what)
            except supervisor.SupervisorError as exc:
                raise LocalError(exc.message, details=exc.log_tail) from None
        self.pid_file.unlink(missing_ok=True)
        self.ready_file.unlink(missing_ok=True)
        return pid
