"""The local page server's lifecycle: start it detached, wait until it serves, stop it, report.

``up`` and ``down`` hold a lock on ``$STRATA_HOME/run`` so two of them never race. A
process counts as alive only if it exists, is not a zombie and is a page server, so a
pid reused by another program after a crash is never signalled.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from common import processes
from common.client import ClientError, StrataClient
from strata.local.errors import LocalError
from strata.local.home import LISTEN_HOST, Home, UpOptions

START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 30.0
_KILL_WAIT_S: Final = 5.0
_POLL_S: Final = 0.1
_LOG_TAIL_LINES: Final = 12


@dataclass(frozen=True)
class ComponentState:
    """What ``strata status`` reports about one local process."""

    component: str
    pid: int | None
    alive: bool
    healthy: bool
    address: str
    metrics_address: str
    storage: str
    state_dir: str
    log_file: str


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) page server process."""
    return processes.process_alive(pid, b"pageserver")


def _known_pid(home: Home) -> int | None:
    """The pid `strata up` recorded, else the one the server published."""
    try:
        return int(home.pid_file.read_text().strip())
    except (OSError, ValueError):
        pass
    info = home.ready_info()
    pid = info.get("pid") if info else None
    return pid if isinstance(pid, int) else None


def _serving(address: str) -> bool:
    with StrataClient(address) as client:
        try:
            return client.health(timeout_s=1.0) == "SERVING"
        except ClientError:
            return False


def status(home: Home) -> ComponentState:
    """The page server's state: from the running process if any, else its configuration."""
    options = UpOptions.load(home)
    pid = _known_pid(home)
    alive = pid is not None and process_alive(pid)
    info = home.ready_info() if alive else None
    if info is not None and info.get("pid") != pid:
        info = None
    metrics = f"{LISTEN_HOST}:{options.metrics_port}" if options.metrics_port else ""
    address = str(info["listen"]) if info else f"{LISTEN_HOST}:{options.port}"
    return ComponentState(
        component="pageserver", pid=pid if alive else None, alive=alive,
        healthy=info is not None and _serving(address), address=address,
        metrics_address=str(info.get("metrics", "")) if info else metrics,
        storage=str(info.get("storage", "")) if info else options.describe_storage(home),
        state_dir=str(home.state_dir), log_file=str(home.log_file),
    )


@contextmanager
def _locked(home: Home) -> Iterator[None]:
    home.lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(home.lock_file, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(home: Home, options: UpOptions, timeout_s: float = START_TIMEOUT_S
       ) -> tuple[ComponentState, bool]:
    """Make the page server run with ``options``; the state and whether it was started now."""
    with _locked(home):
        current = status(home)
        if current.alive:
            if options != UpOptions.load(home):
                raise LocalError(f"the page server (pid {current.pid}) runs with other options; "
                               "run `strata down` first to change them")
            if current.healthy:
                return current, False
            assert current.pid is not None
            return _wait_ready(home, current.pid, None, timeout_s), False
        options.save(home)
        return _wait_ready(home, *_start(home, options), timeout_s), True


def _start(home: Home, options: UpOptions) -> tuple[int, subprocess.Popen[bytes]]:
    """Launch the page server in its own session, output appended to the log file."""
    for directory in (home.state_dir, home.log_file.parent, home.pid_file.parent):
        directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_ready_file(home)
    command = [
        sys.executable, "-m", "pageserver.main",
        "--listen", f"{LISTEN_HOST}:{options.port}",
        "--metrics-listen", f"{LISTEN_HOST}:{options.metrics_port}",
        "--state-dir", str(home.state_dir),
        "--storage", options.storage_url(home),
        "--pitr-window", options.pitr_window,
    ]
    environ = dict(os.environ)  # AWS_* credentials for S3 pass through
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [_code_root(), environ.get("PYTHONPATH", "")]))
    with open(home.log_file, "ab") as log:
        log.write(f"--- {datetime.now().isoformat(timespec='seconds')} strata up: "
                  f"{shlex.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=home.root, env=environ,
                                   start_new_session=True)
    home.pid_file.write_text(f"{process.pid}\n")
    return process.pid, process


def _code_root() -> str:
    """The directory holding the ``pageserver`` package, so the child imports the same code."""
    spec = importlib.util.find_spec("pageserver")
    if spec is None or spec.origin is None:
        raise LocalError("cannot find the pageserver package; is Strata installed?")
    return str(Path(spec.origin).parent.parent)


def _wait_ready(home: Home, pid: int, process: subprocess.Popen[bytes] | None,
                timeout_s: float) -> ComponentState:
    """Wait until ``pid`` published its address and answers SERVING."""
    deadline = time.monotonic() + timeout_s
    while True:
        # A child we started is judged by poll(): until it has exec'ed, its command line is
        # still ours, so process_alive() (which checks for "pageserver") would say no.
        returncode = process.poll() if process is not None else None
        if returncode is not None or (process is None and not process_alive(pid)):
            how = f" with status {returncode}" if returncode is not None else ""
            raise LocalError(f"the page server exited{how} while starting; see {home.log_file}",
                           details=log_tail(home.log_file))
        info = home.ready_info()
        if info and info.get("pid") == pid and _serving(str(info.get("listen"))):
            return status(home)
        if time.monotonic() > deadline:
            raise LocalError(
                f"the page server (pid {pid}) is not serving after {timeout_s:g} s; it may "
                f"still be starting (`strata status`, `strata down`); see {home.log_file}",
                details=log_tail(home.log_file))
        time.sleep(_POLL_S)


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``path`` (empty if it cannot be read)."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 64 * 1024))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def down(home: Home, timeout_s: float = STOP_TIMEOUT_S) -> tuple[int | None, bool]:
    """Stop the page server: SIGTERM, then SIGKILL after ``timeout_s``.

    Returns the pid stopped (None if none was running) and whether it had to be killed.
    """
    with _locked(home):
        pid = _known_pid(home)
        killed = False
        if pid is not None and process_alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not _wait_exit(pid, timeout_s):
                os.kill(pid, signal.SIGKILL)
                killed = True
                if not _wait_exit(pid, _KILL_WAIT_S):
                    raise LocalError(f"the page server (pid {pid}) survived SIGKILL")
        else:
            pid = None
        home.pid_file.unlink(missing_ok=True)
        _remove_stale_ready_file(home)
        return pid, killed


def _wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _remove_stale_ready_file(home: Home) -> None:
    """Drop ``pageserver.json`` left by a killed server (a clean exit removes it itself)."""
    info = home.ready_info()
    pid = info.get("pid") if info else None
    if not (isinstance(pid, int) and process_alive(pid)):
        home.ready_file.unlink(missing_ok=True)
