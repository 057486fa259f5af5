"""The local web console's lifecycle: ``strata up`` starts it after the page server (unless
``--no-console``), ``strata down`` stops it, ``strata status`` gives its URL.

It runs ``strata console`` detached; the console writes its pid and URL to
``$STRATA_HOME/run/console.json`` once it listens (the port may be 0: any free port).
"""

from __future__ import annotations

import sys

from strata.local import ports
from strata.local.detached import Detached
from strata.local.home import LISTEN_HOST, Home, UpOptions
from strata.local.lifecycle import ComponentState


def _console(home: Home) -> Detached:
    return Detached(b"console", "the console", home.console_pid_file,
                    home.console_ready_file, home.console_log_file)


def url(home: Home) -> str | None:
    """The running console's URL, or None."""
    info = _console(home).ready_info()
    return None if info is None else str(info["url"])


def status(home: Home) -> ComponentState:
    pid = _console(home).pid()
    where = url(home)
    options = UpOptions.load(home)
    return ComponentState(
        component="console", pid=pid, alive=pid is not None, healthy=where is not None,
        address=where or f"http://{LISTEN_HOST}:{options.console_port}/", metrics_address="",
        storage="-", state_dir="-", log_file=str(home.console_log_file))


def ports_needed(home: Home, options: UpOptions) -> list[ports.Port]:
    """The port the console will listen on if it is started now (none if it runs or is
    not wanted)."""
    if not options.console or _console(home).pid() is not None:
        return []
    return [ports.Port(options.console_port, "console", "--console-port")]


def up(home: Home, options: UpOptions, timeout_s: float) -> tuple[ComponentState, bool]:
    """Make the console run; the state and whether it was started now."""
    console = _console(home)
    pid = console.pid()
    if pid is not None:
        console.wait_ready(console.child(pid), timeout_s, (), lambda: url(home) is not None)
        return status(home), False
    wanted = ports_needed(home, options)
    ports.ensure_free(wanted)
    child = console.spawn(home, [sys.executable, "-m", "strata.cli", "console",
                                 "--listen", f"{LISTEN_HOST}:{options.console_port}",
                                 "--ready-file", str(home.console_ready_file)])
    console.wait_ready(child, timeout_s, wanted, lambda: url(home) is not None)
    return status(home), True


def down(home: Home, timeout_s: float) -> int | None:
    """Stop the console (SIGTERM, then SIGKILL); the pid stopped, if one ran."""
    return _console(home).down(timeout_s)
