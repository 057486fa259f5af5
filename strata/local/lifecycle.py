"""The local page server's lifecycle: start it detached, wait until it serves, stop it, report.

``up`` and ``down`` hold a lock on ``$STRATA_HOME/run`` so two of them never race. A
process counts as alive only if it exists, is not a zombie and is a page server, so a
pid reused by another program after a crash is never signalled.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from common import processes, supervisor
from common.client import ClientError, StrataClient
from strata.local import ports
from strata.local.errors import LocalError
from strata.local.home import LISTEN_HOST, Home, UpOptions

START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 30.0
_MARKER: Final = b"pageserver"
_WHAT: Final = "the page server"
_POLL_S: Final = 0.1


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
    return processes.process_alive(pid, _MARKER)


def _known_pid(home: Home) -> int | None:
    """The pid `strata up` recorded, else the one the server published."""
    pid = supervisor.read_pid(home.pid_file)
    if pid is not None:
        return pid
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


def ports_needed(options: UpOptions) -> list[ports.Port]:
    """The ports the page server listens on with ``options``."""
    return [ports.Port(options.port, "page server", "--port"),
            ports.Port(options.metrics_port, "page server metrics", "--metrics-port")]


def up(home: Home, options: UpOptions, timeout_s: float = START_TIMEOUT_S,
       also_needed: Sequence[ports.Port] = ()) -> tuple[ComponentState, bool]:
    """Make the page server run with ``options``; the state and whether it was started now.

    Before starting it, its ports and ``also_needed`` (those of the proxy, started next)
    must be free: a taken one is named, with the option that chooses another.
    """
    with supervisor.file_lock(home.lock_file):
        current = status(home)
        if current.alive:
            if options != UpOptions.load(home):
                raise LocalError(f"the page server (pid {current.pid}) runs with other options; "
                               "run `strata down` first to change them")
            if current.healthy:
                return current, False
            assert current.pid is not None
            running = supervisor.Child(current.pid, _MARKER, home.log_file)
            return _wait_ready(home, running, timeout_s, ()), False
        ports.ensure_free([*ports_needed(options), *also_needed])
        options.save(home)
        return _wait_ready(home, _start(home, options), timeout_s, ports_needed(options)), True


def _start(home: Home, options: UpOptions) -> supervisor.Child:
    """Launch the page server detached, output appended to the log file."""
    home.state_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_ready_file(home)
    command = [
        sys.executable, "-m", "pageserver.main",
        "--listen", f"{LISTEN_HOST}:{options.port}",
        "--metrics-listen", f"{LISTEN_HOST}:{options.metrics_port}",
        "--state-dir", str(home.state_dir),
        "--storage", options.storage_url(home),
        "--pitr-window", options.pitr_window,
    ]
    if options.data_plane == "unix":
        command += ["--data-socket", home.data_socket()]
    # AWS_* credentials for S3 pass through in the inherited environment.
    return supervisor.spawn(command, marker=_MARKER, log_file=home.log_file, cwd=home.root,
                            pid_file=home.pid_file, label="strata up")


def _wait_ready(home: Home, child: supervisor.Child, timeout_s: float,
                wanted: Sequence[ports.Port]) -> ComponentState:
    """Wait until ``child`` published its address and answers SERVING; if it exits first
    and one of the ports it ``wanted`` is taken now, say so."""
    def serving() -> bool:
        info = home.ready_info()
        return bool(info and info.get("pid") == child.pid
                    and _serving(str(info.get("listen"))))

    wait_started(child, serving, timeout_s, wanted, what=_WHAT, poll_s=_POLL_S,
                 not_ready=f"the page server (pid {child.pid}) is not serving after "
                           f"{timeout_s:g} s; it may still be starting (`strata status`, "
                           f"`strata down`); see {home.log_file}")
    return status(home)


def wait_started(child: supervisor.Child, ready: Callable[[], bool], timeout_s: float,
                 wanted: Sequence[ports.Port], *, what: str, not_ready: str,
                 poll_s: float = supervisor.POLL_S) -> None:
    """Wait until ``ready()``, as ``LocalError``s: ``not_ready`` after ``timeout_s``; if
    the child exits first and one of the ports it ``wanted`` is taken now, that port."""
    try:
        supervisor.wait_ready(child, ready, timeout_s, what=what, poll_s=poll_s)
    except supervisor.NotReady as exc:
        raise LocalError(not_ready, details=exc.log_tail) from None
    except supervisor.ExitedEarly as exc:
        ports.ensure_free(wanted, details=exc.log_tail)
        raise LocalError(exc.message, details=exc.log_tail) from None
    except supervisor.SupervisorError as exc:
        raise LocalError(exc.message, details=exc.log_tail) from None


def down(home: Home, timeout_s: float = STOP_TIMEOUT_S) -> tuple[int | None, bool]:
    """Stop the page server: SIGTERM, then SIGKILL after ``timeout_s``.

    Returns the pid stopped (None if none was running) and whether it had to be killed.
    """
    with supervisor.file_lock(home.lock_file):
        pid = _known_pid(home)
        stopped = supervisor.Stopped.NOT_RUNNING
        if pid is not None:
            try:
                stopped = supervisor.stop(supervisor.Child(pid, _MARKER, home.log_file),
                                          timeout_s, what=_WHAT, poll_s=_POLL_S)
            except supervisor.SupervisorError as exc:
                raise LocalError(exc.message, details=exc.log_tail) from None
        home.pid_file.unlink(missing_ok=True)
        _remove_stale_ready_file(home)
        if stopped is supervisor.Stopped.NOT_RUNNING:
            return None, False
        return pid, stopped is supervisor.Stopped.KILLED


def _remove_stale_ready_file(home: Home) -> None:
    """Drop ``pageserver.json`` left by a killed server (a clean exit removes it itself)."""
    info = home.ready_info()
    pid = info.get("pid") if info else None
    if not (isinstance(pid, int) and process_alive(pid)):
        home.ready_file.unlink(missing_ok=True)
