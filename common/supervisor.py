"""Background processes: start one detached with a log, wait until it is ready, stop it.

Every launcher (the page server and the proxy of ``strata up``, a compute's mount daemon
and PostgreSQL, test and bench fixtures) goes through here, so all of them log, record
pids, notice a child dying while it starts and escalate to SIGKILL the same way. A pid
is only ever signalled while it is still the program we started: a child we spawned is
judged by ``poll()``, any other pid by its command line (``process_alive``), since pids
are reused after a crash.

Also ``file_lock``: an exclusive lock on a file, held across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Final

from common.processes import process_alive

CODE_ROOT: Final = Path(__file__).resolve().parents[1]  # holds common/, pageserver/, ...
KILL_WAIT_S: Final = 5.0
POLL_S: Final = 0.05
LOG_TAIL_LINES: Final = 12
_TAIL_BYTES: Final = 64 * 1024


class SupervisorError(Exception):
    """A process did not start or stop; ``log_tail`` holds the last lines of its log."""

    def __init__(self, message: str, log_tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.log_tail = list(log_tail)


class ExitedEarly(SupervisorError):
    """The process exited before it was ready; ``returncode`` is None if not our child."""

    def __init__(self, message: str, log_tail: Sequence[str], returncode: int | None) -> None:
        super().__init__(message, log_tail)
        self.returncode = returncode


class NotReady(SupervisorError):
    """The process still runs but was not ready within ``timeout_s``."""

    def __init__(self, message: str, log_tail: Sequence[str], timeout_s: float) -> None:
        super().__init__(message, log_tail)
        self.timeout_s = timeout_s


@dataclass
class Child:
    """A supervised process: its pid, a byte string its command line contains, its log.

    ``process`` is set when this program spawned it: its exit status is then known and
    its pid cannot be reused before we reap it.
    """

    pid: int
    marker: bytes
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        """Whether it still runs (a zombie does not); reaps it if it is our child."""
        if self.process is not None:
            return self.process.poll() is None
        return process_alive(self.pid, self.marker)

    @property
    def returncode(self) -> int | None:
        """Its exit status, once our child has exited; None otherwise."""
        return self.process.poll() if self.process is not None else None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        return log_tail(self.log_file, lines)


class Stopped(Enum):
    """What ``stop`` found and did."""

    NOT_RUNNING = "not running"
    EXITED = "exited"  # on the graceful signal
    KILLED = "killed"  # it needed SIGKILL


def spawn(command: Sequence[str], *, marker: bytes, log_file: Path, cwd: Path,
          env: Mapping[str, str] | None = None, pid_file: Path | None = None,
          label: str = "started", user: tuple[int, int] | None = None) -> Child:
    """Start ``command`` detached: own session, stdin from /dev/null, output appended to
    ``log_file`` after a header line naming ``label`` and the command.

    ``env`` (default: ours) gets this checkout first on PYTHONPATH, so a Python child
    imports the same code. The pid goes to ``pid_file`` if given. With ``user`` (uid,
    gid) the child runs as that user with no supplementary groups (the caller is root):
    through util-linux's ``setpriv``, which changes identity and execs, so the pid is the
    program's. (Popen's own ``user=`` would fork rather than vfork, and a fork of a
    process with gRPC threads can abort in the child before it execs.)
    """
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(CODE_ROOT), environ.get("PYTHONPATH", "")]))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"--- {datetime.now().isoformat(timespec='seconds')} {label}: "
                  f"{shlex.join(command)}\n".encode())
        log.flush()
        if user is not None:
            command = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}",
                       "--clear-groups", "--", *command]
        process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=cwd, env=environ,
                                   start_new_session=True)
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{process.pid}\n")
    return Child(process.pid, marker, log_file, process)


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file``; None if absent or garbled."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def ready_info(path: Path) -> dict[str, Any] | None:
    """The JSON object a child published in its ready file; None if absent or torn."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def names_pid(ready_file: Path, pid: int) -> bool:
    """Whether ``ready_file`` was written by process ``pid`` (and not by a predecessor)."""
    info = ready_info(ready_file)
    return info is not None and info.get("pid") == pid


def wait_ready(child: Child, ready: Callable[[], bool], timeout_s: float, *,
               what: str = "the process", poll_s: float = POLL_S) -> None:
    """Poll ``ready`` until it holds; raise ``ExitedEarly`` if ``child`` exits first,
    ``NotReady`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if not child.alive():
            status = child.returncode
            how = f" with status {status}" if status is not None else ""
            raise ExitedEarly(f"{what} exited{how} while starting; see {child.log_file}",
                              child.log_tail(), status)
        if time.monotonic() > deadline:
            raise NotReady(f"{what} (pid {child.pid}) is not ready after {timeout_s:g} s; "
                           f"see {child.log_file}", child.log_tail(), timeout_s)
        time.sleep(poll_s)


def wait_exit(child: Child, timeout_s: float, poll_s: float = POLL_S) -> bool:
    """Wait until ``child`` no longer runs; False if it still does after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while child.alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def stop(child: Child, timeout_s: float, *, signum: int = signal.SIGTERM,
         what: str = "the process", kill_wait_s: float = KILL_WAIT_S,
         poll_s: float = POLL_S) -> Stopped:
    """Send ``signum``; if ``child`` still runs after ``timeout_s``, SIGKILL it.

    Waits for the exit; raises ``SupervisorError`` if it survives SIGKILL too.
    """
    if not child.alive():
        return Stopped.NOT_RUNNING
    with contextlib.suppress(ProcessLookupError):  # it may exit meanwhile
        os.kill(child.pid, signum)
    if wait_exit(child, timeout_s, poll_s):
        return Stopped.EXITED
    if child.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
    if not wait_exit(child, kill_wait_s, poll_s):
        raise SupervisorError(f"{what} (pid {child.pid}) survived SIGKILL", child.log_tail())
    return Stopped.KILLED


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``path`` (empty if it cannot be read)."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - _TAIL_BYTES))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing), across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
