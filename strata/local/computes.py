"""The computes of this machine: where each one lives, which port it gets, and starting and
stopping them on behalf of the CLI.

One compute per (tenant, branch), in ``$STRATA_HOME/computes/TENANT/BRANCH`` (or under
``$STRATA_COMPUTE_DIR``). Starting checks the branch on the page server, mints a
compute-scoped token limited to the branch for the mount daemon (an hour long: the daemon
renews it), and lets the page server's writer lease refuse a branch that another compute
already writes.

Starts and stops of one branch's compute are serialised across processes by a lock file
beside its directory (``branch_lock``): the CLI restoring a branch, the proxy waking or
suspending it and the reaper deleting it would otherwise stop one compute twice at once.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final

from common.client import StrataClient
from common.durable import write_durably
from common.names import is_valid_name
from common.processes import process_alive
from common.sparse import allocated_bytes
from common.supervisor import file_lock
from compute import identity
from compute.identity import IdentityError
from compute.node import WAL_LEVELS as WAL_LEVELS
from compute.node import ComputeError, ComputeNode, ComputeSpec, ComputeStatus
from compute.tenant_role import Logins
from strata.local import passwords
from strata.local.errors import InvalidNameError, LocalError, QuotaError
from strata.local.home import Home

FIRST_PORT: Final = 55432
TOKEN_TTL_S: Final = 3600  # renewed by the mount daemon (compute/token_renewal.py)
STARTING_FILE: Final = "starting"  # the pid of the process starting the compute


def running_count(home: Home, tenant: str) -> int:
    return sum(node.status() is ComputeStatus.RUNNING for node in listing(home, tenant))


def cache_disk_bytes(home: Home, tenant: str) -> int:
    """Disk the page caches of ``tenant``'s computes on this machine take: a running one's
    what it holds, a stopped one's what its last stop kept (``--cache-keep-mb``)."""
    return sum(node_cache_disk_bytes(node) for node in listing(home, tenant))


def node_cache_disk_bytes(node: ComputeNode) -> int:
    """Disk one compute's page cache takes (its files' allocated blocks)."""
    directory = node.spec.cache_dir
    return sum(allocated_bytes(path) for path in directory.iterdir()) \
        if directory.is_dir() else 0


def busy_count(home: Home, tenant: str) -> int:
    """Computes of ``tenant`` running or being started by a live process: what the
    compute quota counts, so that starts at the same moment cannot both pass it."""
    root = home.computes_dir / tenant
    busy = 0
    for directory in (path for path in root.iterdir() if path.is_dir()) if root.is_dir() else ():
        node = ComputeNode.load(directory)
        try:
            starter = int((directory / STARTING_FILE).read_text())
        except (OSError, ValueError):
            starter = 0
        busy += (node is not None and node.status() is ComputeStatus.RUNNING) or \
            (starter > 0 and process_alive(starter, b""))
    return busy


@contextmanager
def quota_slot(home: Home, tenant: str, directory: Path, limit: int) -> Iterator[None]:
    """Hold one of the tenant's ``limit`` compute slots (0: no limit) while starting."""
    with _tenant_lock(home, tenant):
        busy = busy_count(home, tenant) if limit else 0
        if limit and busy >= limit:
            raise QuotaError(f"tenant {tenant!r} runs {busy} computes, its quota is {limit}: "
                             "stop one (`strata compute stop BRANCH`) or let the proxy "
                             "suspend an idle one")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / STARTING_FILE).write_text(str(os.getpid()))
    try:
        yield
    finally:
        (directory / STARTING_FILE).unlink(missing_ok=True)


def workdir(home: Home, tenant: str, branch: str) -> Path:
    for kind, name in (("tenant", tenant), ("branch", branch)):
        if not is_valid_name(name):
            raise InvalidNameError(f"invalid {kind} name {name!r}")
    return home.computes_dir / tenant / branch


def find(home: Home, tenant: str, branch: str) -> ComputeNode | None:
    """The compute recorded for a branch, if one was ever started."""
    return ComputeNode.load(workdir(home, tenant, branch))


def find_running(home: Home, tenant: str, branch: str) -> ComputeNode | None:
    """The branch's compute if it is running now."""
    node = find(home, tenant, branch)
    return node if node is not None and node.status() is ComputeStatus.RUNNING else None


def listing(home: Home, tenant: str) -> list[ComputeNode]:
    """Every compute recorded for ``tenant``, by branch name."""
    root = home.computes_dir / tenant
    found = (ComputeNode.load(path) for path in sorted(root.iterdir())
             if path.is_dir()) if root.is_dir() else ()
    return [node for node in found if node is not None]


_held = threading.local()  # lock files this thread holds, with how often it took each


@contextmanager
def branch_lock(directory: Path) -> Iterator[None]:
    """Hold the lock of the compute living in ``directory`` (reentrant within a thread)."""
    path = directory.parent / f".{directory.name}.lock"
    held: Counter[Path] = _held.__dict__.setdefault("counts", Counter())
    if held[path]:
        held[path] += 1
        try:
            yield
        finally:
            held[path] -= 1
        return
    with file_lock(path):
        held[path] += 1
        try:
            yield
        finally:
            held[path] -= 1


def check_host() -> None:
    """What a compute needs of this machine: root, FUSE and PostgreSQL 15."""
    if os.geteuid() != 0:
        raise LocalError("a compute mounts FUSE and runs PostgreSQL as its tenant's own OS "
                       "user: run `strata compute` as root")
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        raise LocalError("FUSE is not available: install fuse3 (./dev does) and load /dev/fuse")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_port(home: Home, tenant: str, branch: str, previous: int | None) -> int:
    """The branch's previous port if it is free, else the first free one from 55432 that
    no other compute has recorded (so each branch keeps its port across restarts)."""
    if previous and _port_free(previous):
        return previous
    taken = {node.spec.port for tenant_dir in _tenant_dirs(home)
             for node in listing(home, tenant_dir.name)
             if (node.spec.tenant, node.spec.branch) != (tenant, branch)}
    for port in range(FIRST_PORT, FIRST_PORT + 2000):
        if port not in taken and _port_free(port):
            return port
    raise LocalError(f"no free port in {FIRST_PORT}..{FIRST_PORT + 1999}; pass --port")


def _port_lock(home: Home) -> AbstractContextManager[None]:
    return file_lock(home.computes_dir / ".ports.lock")


def _tenant_lock(home: Home, tenant: str) -> AbstractContextManager[None]:
    """Serialises quota checks of one tenant's compute starts (held only briefly)."""
    return file_lock(home.computes_dir / f".{tenant}.quota.lock")


def _tenant_dirs(home: Home) -> list[Path]:
    root = home.computes_dir
    return [path for path in root.iterdir() if path.is_dir()] if root.is_dir() else []


def start(home: Home, client: StrataClient, address: str, tenant: str, branch: str, *,
          port: int | None, cache_mb: int | None, full_page_writes: bool | None,
          shared_buffers: str | None, force: bool, timeout_s: float,
          wal_level: str | None = None, cache_keep_mb: int | None = None) -> ComputeNode:
    """Start the compute of a branch; options not given keep their previous values."""
    if wal_level is not None and wal_level not in WAL_LEVELS:
        raise LocalError(f"wal_level {wal_level!r}: give one of {', '.join(WAL_LEVELS)}")
    check_host()
    directory = workdir(home, tenant, branch)
    with branch_lock(directory):
        previous = ComputeNode.load(directory)
        if previous is not None and previous.status() is ComputeStatus.RUNNING:
            raise LocalError(f"a compute already runs on branch {branch!r}: "
                           f"{previous.spec.uri()} (stop it with `strata compute stop {branch}`)")
        # A clear "not found" before anything is mounted.
        read_only = client.get_branch(tenant, branch).ephemeral
        limit = client.get_tenant(tenant).quotas.max_computes
        with quota_slot(home, tenant, directory, limit):
            return _start_counted(home, client, address, tenant, branch, directory, previous,
                                  read_only=read_only, port=port, cache_mb=cache_mb,
                                  full_page_writes=full_page_writes,
                                  shared_buffers=shared_buffers, force=force,
                                  timeout_s=timeout_s, wal_level=wal_level,
                                  cache_keep_mb=cache_keep_mb)


def _start_counted(home: Home, client: StrataClient, address: str, tenant: str, branch: str,
                   directory: Path, previous: ComputeNode | None, *, read_only: bool,
                   port: int | None,
                   cache_mb: int | None, full_page_writes: bool | None,
                   shared_buffers: str | None, force: bool, timeout_s: float,
                   wal_level: str | None, cache_keep_mb: int | None) -> ComputeNode:
    if previous is not None and previous.status() is ComputeStatus.CRASHED:
        previous.kill()  # what is left of it: a mount daemon whose PostgreSQL died, say
    directory.mkdir(parents=True, exist_ok=True)
    for level in (home.computes_dir, directory.parent):  # tenants pass, but list nothing
        os.chmod(level, 0o711)
    token_file = directory / "compute.token"
    token = client.create_token(tenant, "compute", TOKEN_TTL_S, branches=(branch,)).token
    write_durably(token_file, token.encode(), mode=0o600)
    given = {"cache_mb": cache_mb, "full_page_writes": full_page_writes,
             "shared_buffers": shared_buffers, "wal_level": wal_level,
             "cache_keep_mb": cache_keep_mb}
    kept = {name: getattr(previous.spec, name) for name in given} if previous else {}
    settings = {**kept, **{name: value for name, value in given.items() if value is not None}}
    with _port_lock(home):  # two starts at once must not pick the same port
        spec = ComputeSpec(address, token_file, tenant, branch, directory,
                           port or choose_port(home, tenant, branch,
                                               previous.spec.port if previous else None),
                           data_plane=home.data_plane_address(), **settings)
        ComputeNode(spec).reserve()
    node = ComputeNode(spec)
    try:
        node.start(timeout_s, force=force, logins=_logins(home, tenant, read_only))
    except ComputeError as exc:
        raise LocalError(exc.message, details=exc.log_tail) from None
    return node


def _logins(home: Home, tenant: str, read_only: bool = False) -> Logins:
    """The verifiers the compute's roles get: of the tenant's password, with which the
    proxy logs in as the tenant's role (none with ``read_only``: a time-travel endpoint
    takes read-only logins only), and of the read-only role's, derived from it."""
    password = passwords.ensure(home, tenant)
    return Logins("" if read_only else passwords.pg_verifier(password),
                  passwords.pg_verifier(passwords.read_only_password(password)))


def ensure_running(home: Home, client: StrataClient, address: str, tenant: str,
                   branch: str, timeout_s: float) -> tuple[ComputeNode, bool]:
    """The branch's running compute, started with its previous settings if it is not
    running; whether it was started."""
    directory = workdir(home, tenant, branch)
    with branch_lock(directory):
        node = ComputeNode.load(directory)
        if node is not None and node.status() is ComputeStatus.RUNNING:
            return node, False
        return start(home, client, address, tenant, branch, port=None, cache_mb=None,
                     full_page_writes=None, shared_buffers=None, force=False,
                     timeout_s=timeout_s), True


def stop(node: ComputeNode, timeout_s: float) -> ComputeStatus:
    """Stop a compute cleanly (a crashed one is cleaned up); its status before."""
    with branch_lock(node.spec.workdir):
        node = ComputeNode.load(node.spec.workdir) or node  # as it is now, not as it was
        before = node.status()
        try:
            if before is ComputeStatus.RUNNING:
                node.stop(timeout_s)
            else:
                node.kill()
        except ComputeError as exc:
            raise LocalError(exc.message) from None
        return before


@contextmanager
def paused(home: Home, client: StrataClient, address: str, tenant: str,
           branch: str) -> Iterator[bool]:
    """Stop the branch's running compute around the block, then start it again with the
    same settings and port (also when the block failed); yields whether one was running.
    Nobody else starts or stops it meanwhile: a client waking it waits for the block."""
    with branch_lock(workdir(home, tenant, branch)):
        node = find(home, tenant, branch)
        running = node is not None and node.status() is ComputeStatus.RUNNING
        if node is not None and running:
            stop(node, 60.0)
        try:
            yield running
        finally:
            if node is not None and running:
                _start_again(home, client, address, node)


def _start_again(home: Home, client: StrataClient, address: str, node: ComputeNode) -> None:
    spec = node.spec
    start(home, client, address, spec.tenant, spec.branch, port=spec.port,
          cache_mb=spec.cache_mb, full_page_writes=spec.full_page_writes,
          shared_buffers=spec.shared_buffers, force=False, timeout_s=120.0,
          wal_level=spec.wal_level, cache_keep_mb=spec.cache_keep_mb)


def forget(home: Home, tenant: str, branches: list[str]) -> None:
    """Stop the computes of branches being deleted and remove their directories."""
    for branch in branches:
        with branch_lock(workdir(home, tenant, branch)):
            node = find(home, tenant, branch)
            if node is not None:
                stop(node, 60.0)
                shutil.rmtree(node.spec.workdir, ignore_errors=True)


def forget_deleted(home: Home, tenant: str, branches: list[str]) -> None:
    """After ``branches`` were deleted: ``forget`` them, and their credentials too (a
    branch made later under the same name gets new ones)."""
    forget(home, tenant, branches)
    for branch in branches:
        passwords.forget_branch(home, tenant, branch)


def stop_tenant(home: Home, tenant: str) -> None:
    """Stop and remove every compute of ``tenant`` (which is being deleted)."""
    forget(home, tenant, [node.spec.branch for node in listing(home, tenant)])


def forget_tenant(home: Home, tenant: str) -> None:
    """After ``tenant`` was deleted: remove its computes, then its password and its OS
    user, so that a tenant made later under the same name starts afresh."""
    stop_tenant(home, tenant)
    shutil.rmtree(home.computes_dir / tenant, ignore_errors=True)
    passwords.forget(home, tenant)
    try:
        identity.remove(tenant)
    except IdentityError as exc:
        raise LocalError(str(exc)) from None


def stop_all(home: Home, timeout_s: float) -> list[str]:
    """Stop every running compute of this home (before the page server goes) and clean up
    what crashed ones left; the names of those that were running."""
    stopped = []
    for tenant_dir in _tenant_dirs(home):
        for node in listing(home, tenant_dir.name):
            if node.status() is not ComputeStatus.STOPPED and \
                    stop(node, timeout_s) is ComputeStatus.RUNNING:
                stopped.append(f"{node.spec.tenant}/{node.spec.branch}")
    return stopped


def proxy_view(home: Home) -> dict[str, dict[str, Any]]:
    """What the proxy last published about clients, idle and suspended computes."""
    try:
        view = json.loads(home.proxy_state_file.read_text())
    except (OSError, ValueError):
        return {}
    return view if isinstance(view, dict) else {}


def describe(node: ComputeNode, proxy: dict[str, Any] | None = None) -> dict[str, Any]:
    """A compute as ``strata compute list --json`` shows it, with what the proxy saw of it."""
    spec = node.spec
    status = node.status()
    seen = (proxy or {}).get(f"{spec.tenant}/{spec.branch}") or {}
    running = status is ComputeStatus.RUNNING
    idle_since = seen.get("idle_since") if running else None
    suspended = status is ComputeStatus.STOPPED and seen.get("suspended_at") is not None
    return {
        "tenant": spec.tenant, "branch": spec.branch,
        "status": "suspended" if suspended else status.value,
        "clients": seen.get("clients", 0) if running else 0,
        "idle_s": round(time.time() - idle_since, 1) if idle_since else None,
        "host": str(spec.socket_dir), "port": spec.port, "user": "postgres",
        "dbname": "postgres",
        "uri": spec.uri(), "dsn": spec.dsn(),
        "pids": vars(node.pids) if node.pids and status is ComputeStatus.RUNNING else None,
        "started_at": node.started_at or None, "cache_mb": spec.cache_mb,
        "cache_keep_mb": spec.cache_keep_mb, "cache_disk_bytes": node_cache_disk_bytes(node),
        "shared_buffers": spec.shared_buffers,
        "full_page_writes": "on" if spec.full_page_writes else "off",
        "wal_level": spec.wal_level,
        "workdir": str(spec.workdir),
        "stats": node.stats(),
    }
