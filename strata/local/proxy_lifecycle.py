"""The local proxy's lifecycle: ``strata up`` starts it after the page server, ``strata down``
stops it first. It runs as root only: it starts computes, which mount FUSE.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from common import processes
from strata.local.errors import LocalError
from strata.local.home import LISTEN_HOST, Home, UpOptions
from strata.local.lifecycle import ComponentState, log_tail

_MARKER = b"strata.proxy"
_POLL_S = 0.05


def _ready_info(home: Home) -> dict[str, Any] | None:
    try:
        body = json.loads(home.proxy_ready_file.read_text())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _pid(home: Home) -> int | None:
    try:
        pid = int(home.proxy_pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if processes.process_alive(pid, _MARKER) else None


def address(home: Home) -> str | None:
    """Where the running proxy listens, or None."""
    info = _ready_info(home)
    pid = _pid(home)
    if info is None or pid is None or info.get("pid") != pid:
        return None
    return str(info["listen"])


def status(home: Home) -> ComponentState:
    pid = _pid(home)
    listen = address(home)
    options = UpOptions.load(home)
    return ComponentState(
        component="proxy", pid=pid, alive=pid is not None, healthy=listen is not None,
        address=listen or f"{LISTEN_HOST}:{options.proxy_port}", metrics_address="",
        storage="-", state_dir=str(home.computes_dir), log_file=str(home.proxy_log_file))


def up(home: Home, options: UpOptions, timeout_s: float) -> tuple[ComponentState, bool]:
    """Make the proxy run; the state and whether it was started now."""
    if _pid(home) is not None:
        return _wait_ready(home, None, timeout_s), False
    if os.geteuid() != 0:
        raise LocalError("the proxy starts computes, which need root: run `strata up` as root")
    home.proxy_ready_file.unlink(missing_ok=True)
    home.proxy_log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "strata.proxy",
               "--listen", f"{LISTEN_HOST}:{options.proxy_port}",
               "--suspend-timeout", options.suspend_timeout,
               "--ready-file", str(home.proxy_ready_file)]
    with open(home.proxy_log_file, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=home.root,
                                   env={**os.environ, "STRATA_HOME": str(home.root)},
                                   start_new_session=True)
    home.proxy_pid_file.write_text(f"{process.pid}\n")
    return _wait_ready(home, process, timeout_s), True


def _wait_ready(home: Home, process: subprocess.Popen[bytes] | None,
                timeout_s: float) -> ComponentState:
    deadline = time.monotonic() + timeout_s
    while address(home) is None:
        if process is not None and process.poll() is not None:
            raise LocalError(f"the proxy exited with status {process.returncode} while "
                           f"starting; see {home.proxy_log_file}",
                           details=log_tail(home.proxy_log_file))
        if time.monotonic() > deadline:
            raise LocalError(f"the proxy is not listening after {timeout_s:g} s; see "
                           f"{home.proxy_log_file}", details=log_tail(home.proxy_log_file))
        time.sleep(_POLL_S)
    return status(home)


def down(home: Home, timeout_s: float) -> int | None:
    """Stop the proxy (SIGTERM, then SIGKILL); the pid stopped, if one ran."""
    pid = _pid(home)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while processes.process_alive(pid, _MARKER):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(_POLL_S)
    home.proxy_pid_file.unlink(missing_ok=True)
    home.proxy_ready_file.unlink(missing_ok=True)
    return pid
