"""The local web console's lifecycle: ``strata up`` starts it after the page server (unless
``--no-console``), ``strata down`` stops it, ``strata status`` gives its URL.

It runs ``strata console`` detached; the console writes its pid and URL to
``$STRATA_HOME/run/console.json`` once it listens (the port may be 0: any free port).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Final

from common import supervisor
from strata.local import ports
from strata.local.errors import LocalError
from strata.local.home import LISTEN_HOST, Home, UpOptions
from strata.local.lifecycle import ComponentState, wait_started

_MARKER: Final = b"console"
_WHAT: Final = "the console"


def _child(home: Home, pid: int) -> supervisor.Child:
    return supervisor.Child(pid, _MARKER, home.console_log_file)


def _pid(home: Home) -> int | None:
    pid = supervisor.read_pid(home.console_pid_file)
    return pid if pid is not None and _child(home, pid).alive() else None


def url(home: Home) -> str | None:
    """The running console's URL, or None."""
    info = supervisor.ready_info(home.console_ready_file)
    pid = _pid(home)
    if info is None or pid is None or info.get("pid") != pid:
        return None
    return str(info["url"])


def status(home: Home) -> ComponentState:
    pid = _pid(home)
    where = url(home)
    options = UpOptions.load(home)
    return ComponentState(
        component="console", pid=pid, alive=pid is not None, healthy=where is not None,
        address=where or f"http://{LISTEN_HOST}:{options.console_port}/", metrics_address="",
        storage="-", state_dir="-", log_file=str(home.console_log_file))


def ports_needed(home: Home, options: UpOptions) -> list[ports.Port]:
    """The port the console will listen on if it is started now (none if it runs or is
    not wanted)."""
    if not options.console or _pid(home) is not None:
        return []
    return [ports.Port(options.console_port, "console", "--console-port")]


def up(home: Home, options: UpOptions, timeout_s: float) -> tuple[ComponentState, bool]:
    """Make the console run; the state and whether it was started now."""
    pid = _pid(home)
    if pid is not None:
        return _wait_ready(home, _child(home, pid), timeout_s, ()), False
    wanted = ports_needed(home, options)
    ports.ensure_free(wanted)
    home.console_ready_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "strata.cli", "console",
               "--listen", f"{LISTEN_HOST}:{options.console_port}",
               "--ready-file", str(home.console_ready_file)]
    child = supervisor.spawn(command, marker=_MARKER, log_file=home.console_log_file,
                             cwd=home.root, env={**os.environ, "STRATA_HOME": str(home.root)},
                             pid_file=home.console_pid_file, label="strata up")
    return _wait_ready(home, child, timeout_s, wanted), True


def _wait_ready(home: Home, child: supervisor.Child, timeout_s: float,
                wanted: Sequence[ports.Port]) -> ComponentState:
    wait_started(child, lambda: url(home) is not None, timeout_s, wanted, what=_WHAT,
                 not_ready=f"the console is not listening after {timeout_s:g} s; see "
                           f"{home.console_log_file}")
    return status(home)


def down(home: Home, timeout_s: float) -> int | None:
    """Stop the console (SIGTERM, then SIGKILL); the pid stopped, if one ran."""
    pid = _pid(home)
    if pid is not None:
        try:
            supervisor.stop(_child(home, pid), timeout_s, what=_WHAT)
        except supervisor.SupervisorError as exc:
            raise LocalError(exc.message, details=exc.log_tail) from None
    home.console_pid_file.unlink(missing_ok=True)
    home.console_ready_file.unlink(missing_ok=True)
    return pid
