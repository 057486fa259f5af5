"""The local proxy's lifecycle: ``strata up`` starts it after the page server, ``strata down``
stops it first. It runs as root only: it starts computes, which mount FUSE.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from strata.local import certs, ports
from strata.local.detached import Detached
from strata.local.errors import LocalError
from strata.local.home import LISTEN_HOST, Home, UpOptions
from strata.local.lifecycle import ComponentState


def _proxy(home: Home) -> Detached:
    return Detached(b"strata.proxy", "the proxy", home.proxy_pid_file, home.proxy_ready_file,
                    home.proxy_log_file)


def address(home: Home) -> str | None:
    """Where the running proxy listens, or None."""
    info = _proxy(home).ready_info()
    return None if info is None else str(info["listen"])


def socket_dir(home: Home) -> str | None:
    """The directory of the running proxy's unix socket for local clients, or None."""
    info = _proxy(home).ready_info()
    if info is None or not info.get("socket_dir"):
        return None
    return str(info["socket_dir"])


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
    pid = _proxy(home).pid()
    listen = address(home)
    options = UpOptions.load(home)
    return ComponentState(
        component="proxy", pid=pid, alive=pid is not None, healthy=listen is not None,
        address=listen or f"{LISTEN_HOST}:{options.proxy_port}", metrics_address="",
        storage="-", state_dir=str(home.computes_dir), log_file=str(home.proxy_log_file))


def ports_needed(home: Home, options: UpOptions) -> list[ports.Port]:
    """The port the proxy will listen on if it is started now (none if it runs)."""
    if _proxy(home).pid() is not None:
        return []
    return [ports.Port(options.proxy_port, "proxy", "--proxy-port")]


def up(home: Home, options: UpOptions, timeout_s: float) -> tuple[ComponentState, bool]:
    """Make the proxy run; the state and whether it was started now."""
    proxy = _proxy(home)
    pid = proxy.pid()
    if pid is not None:
        proxy.wait_ready(proxy.child(pid), timeout_s, (), lambda: address(home) is not None)
        return status(home), False
    if os.geteuid() != 0:
        raise LocalError("the proxy starts computes, which need root: run `strata up` as root")
    wanted = ports_needed(home, options)
    ports.ensure_free(wanted)
    tls = tls_files(home, options)
    child = proxy.spawn(home, [
        sys.executable, "-m", "strata.proxy",
        "--listen", f"{LISTEN_HOST}:{options.proxy_port}",
        "--suspend-timeout", options.suspend_timeout,
        "--ready-file", str(home.proxy_ready_file),
        "--unix-socket-dir", str(home.proxy_socket_dir),
        "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
        "--require-tls" if options.require_tls else "--no-require-tls"])
    proxy.wait_ready(child, timeout_s, wanted, lambda: address(home) is not None)
    return status(home), True


def down(home: Home, timeout_s: float) -> int | None:
    """Stop the proxy (SIGTERM, then SIGKILL); the pid stopped, if one ran."""
    return _proxy(home).down(timeout_s)
