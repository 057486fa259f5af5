"""The local proxy's lifecycle: ``strata up`` starts it after the page server, ``strata down``
stops it first. It runs as root only: it starts computes, which mount FUSE.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from common import supervisor
from strata.local import certs, ports
from strata.local.errors import LocalError
from strata.local.home import LISTEN_HOST, Home, UpOptions
from strata.local.lifecycle import ComponentState, wait_started

_MARKER: Final = b"strata.proxy"
_WHAT: Final = "the proxy"


def _pid(home: Home) -> int | None:
    pid = supervisor.read_pid(home.proxy_pid_file)
    return pid if pid is not None and _child(home, pid).alive() else None


def _child(home: Home, pid: int) -> supervisor.Child:
    return supervisor.Child(pid, _MARKER, home.proxy_log_file)


def address(home: Home) -> str | None:
    """Where the running proxy listens, or None."""
    info = _ready_info(home)
    return None if info is None else str(info["listen"])


def socket_dir(home: Home) -> str | None:
    """The directory of the running proxy's unix socket for local clients, or None."""
    info = _ready_info(home)
    return str(info.get("socket_dir") or "") or None if info is not None else None


def _ready_info(home: Home) -> dict[str, object] | None:
    info = supervisor.ready_info(home.proxy_ready_file)
    pid = _pid(home)
    if info is None or pid is None or info.get("pid") != pid:
        return None
    return info


def tls_files(home: Home, options: UpOptions) -> certs.CertFiles:
    """The proxy's certificate: the configured one, else one from the local CA."""
    if options.tls_cert:
        return certs.CertFiles(Path(options.tls_cert), Path(options.tls_key), None)
    return certs.ensure(home)


def ca_file(home: Home) -> Path | None:
    """The CA certificate that verifies the proxy, when ``strata up`` made the proxy's
    certificate (None when one is configured: its CA is the operator's)."""
    if UpOptions.load(home).tls_cert:
        return None
    path = certs.ca_file(home)
    return path if path.exists() else None


def status(home: Home) -> ComponentState:
    pid = _pid(home)
    listen = address(home)
    options = UpOptions.load(home)
    return ComponentState(
        component="proxy", pid=pid, alive=pid is not None, healthy=listen is not None,
        address=listen or f"{LISTEN_HOST}:{options.proxy_port}", metrics_address="",
        storage="-", state_dir=str(home.computes_dir), log_file=str(home.proxy_log_file))


def ports_needed(home: Home, options: UpOptions) -> list[ports.Port]:
    """The port the proxy will listen on if it is started now (none if it runs)."""
    if _pid(home) is not None:
        return []
    return [ports.Port(options.proxy_port, "proxy", "--proxy-port")]


def up(home: Home, options: UpOptions, timeout_s: float) -> tuple[ComponentState, bool]:
    """Make the proxy run; the state and whether it was started now."""
    pid = _pid(home)
    if pid is not None:
        return _wait_ready(home, _child(home, pid), timeout_s, ()), False
    if os.geteuid() != 0:
        raise LocalError("the proxy starts computes, which need root: run `strata up` as root")
    wanted = ports_needed(home, options)
    ports.ensure_free(wanted)
    home.proxy_ready_file.unlink(missing_ok=True)
    tls = tls_files(home, options)
    command = [sys.executable, "-m", "strata.proxy",
               "--listen", f"{LISTEN_HOST}:{options.proxy_port}",
               "--suspend-timeout", options.suspend_timeout,
               "--ready-file", str(home.proxy_ready_file),
               "--unix-socket-dir", str(home.proxy_socket_dir),
               "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
               "--require-tls" if options.require_tls else "--no-require-tls"]
    child = supervisor.spawn(command, marker=_MARKER, log_file=home.proxy_log_file,
                             cwd=home.root, env={**os.environ, "STRATA_HOME": str(home.root)},
                             pid_file=home.proxy_pid_file, label="strata up")
    return _wait_ready(home, child, timeout_s, wanted), True


def _wait_ready(home: Home, child: supervisor.Child, timeout_s: float,
                wanted: Sequence[ports.Port]) -> ComponentState:
    """Wait until ``child`` listens; if it exits first and a port it ``wanted`` is taken
    now, say so."""
    wait_started(child, lambda: address(home) is not None, timeout_s, wanted, what=_WHAT,
                 not_ready=f"the proxy is not listening after {timeout_s:g} s; see "
                           f"{home.proxy_log_file}")
    return status(home)


def down(home: Home, timeout_s: float) -> int | None:
    """Stop the proxy (SIGTERM, then SIGKILL); the pid stopped, if one ran."""
    pid = _pid(home)
    if pid is not None:
        try:
            supervisor.stop(_child(home, pid), timeout_s, what=_WHAT)
        except supervisor.SupervisorError as exc:
            raise LocalError(exc.message, details=exc.log_tail) from None
    home.proxy_pid_file.unlink(missing_ok=True)
    home.proxy_ready_file.unlink(missing_ok=True)
    return pid
