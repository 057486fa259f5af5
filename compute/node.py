"""A compute node: the FUSE mount of a branch plus an unmodified PostgreSQL 15 on top of it.

Compute-specific settings (port, socket directory, shared_buffers, WAL settings
that suit a copy-on-write store) go on the postgres command line, never into
the branch's files. PostgreSQL listens on no TCP port: only on a unix socket in a
directory that root and the tenant's OS user alone can enter, so clients come through
the proxy, which authenticates them.

Tenants share the host but not an OS identity: PostgreSQL runs as the tenant's own user
(``compute.identity``), and so does the mount daemon once the kernel has mounted it (it
mounts as root, ``allow_other`` so PostgreSQL can enter, then drops to that user; the
kernel checks file modes, so other users cannot). Every login authenticates: root as
``postgres`` by peer, everyone else (the proxy included) with a SCRAM password, by an
``pg_hba.conf`` Strata writes outside the branch. The tenant's role is set up at each
start (``compute.tenant_role``).

A started compute outlives the process that started it: its pids and settings are
recorded in ``<workdir>/compute.json``, so a later ``strata compute stop`` (or a
test) finds, stops or kills it by pid. Layout of a workdir (root's, group the tenant's
user, 0750; what the tenant's user writes is in its own 0700 directories)::

    compute.json   spec, pids, start time (absent: stopped)
    pg_hba.conf, pg_ident.conf   who may log in, and how
    mount.log, postgres.log
    pgdata/        the FUSE mountpoint, PostgreSQL's data directory
    socket/        PostgreSQL's unix socket directory
    scratch/       ephemeral files (postmaster.pid, stats, temp files)
    cache/         the local page cache: a sparse file, on disk only for what it holds;
                   a stop keeps ``cache_keep_mb`` of it (default nothing) for the next start
    run/           mount.ready, stats.json (cache and traffic counters of the mount daemon)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from common import supervisor
from common.durable import write_durably
from common.postgres import pg_bin_dir
from common.processes import process_alive
from compute import identity, tenant_role
from compute.identity import Identity, IdentityError
from compute.page_cache import drop_unsaved
from compute.readahead import ReadaheadError, set_read_ahead
from compute.tenant_role import Logins, TenantRoleError
from compute.unmount import UnmountError, unmount

log = logging.getLogger(__name__)

STATE_FILE = "compute.json"
STATS_FILE = "stats.json"  # published by the mount daemon: cache and traffic counters
_POLL_S = 0.05
_TAIL_LINES = 8


class ComputeError(Exception):
    """A compute failed to start or stop; the message says why, ``log_tail`` shows where."""

    def __init__(self, message: str, log_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail or []


class ComputeStatus(Enum):
    RUNNING = "running"
    CRASHED = "crashed"  # recorded as started, but a process of it is gone
    STOPPED = "stopped"


WAL_LEVELS = ("replica", "minimal")


def wal_level_settings(level: str) -> dict[str, str]:
    """PostgreSQL settings for ``wal_level``. ``minimal`` writes no WAL for data loaded
    into a relation created (or truncated) in the same transaction: PostgreSQL fsyncs the
    relation before the commit record, and an fsync makes everything written before it
    durable on the page server, so every durable point is still a state that crash
    recovery starts from (docs/rfcs/0024). It needs ``max_wal_senders=0``: such a branch
    feeds no replica."""
    if level not in WAL_LEVELS:
        raise ValueError(f"wal_level {level!r}: give one of {', '.join(WAL_LEVELS)}")
    return {"wal_level": level, **({"max_wal_senders": "0"} if level == "minimal" else {})}


@dataclass
class ComputeSpec:
    """Everything needed to run one compute."""

    server: str
    token_file: Path
    tenant: str
    branch: str
    workdir: Path  # mountpoint, scratch, cache, socket and logs live here
    port: int
    cache_mb: int = 256
    cache_keep_mb: int = 0  # of the cache kept on disk while stopped (rfcs/0029)
    shared_buffers: str = "128MB"
    full_page_writes: bool = False  # the shim never tears a page (docs/DESIGN.md)
    wal_level: str = "replica"  # or "minimal": no WAL for data loaded into new relations
    settings: dict[str, str] = field(default_factory=dict)  # extra postgres -c settings
    data_plane: str = ""  # the page server's framed data plane (rfcs/0020); "": gRPC

    @property
    def mountpoint(self) -> Path:
        return self.workdir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "socket"

    @property
    def socket_path(self) -> Path:
        """PostgreSQL's unix socket: the only way in (no TCP), for root and the tenant's
        OS user."""
        return self.socket_dir / f".s.PGSQL.{self.port}"

    @property
    def cache_dir(self) -> Path:
        """The local page cache (compute.page_cache)."""
        return self.workdir / "cache"

    @property
    def run_dir(self) -> Path:
        """Where the mount daemon, as the tenant's user, says it is ready and publishes
        its counters."""
        return self.workdir / "run"

    @property
    def scratch_dir(self) -> Path:
        return self.workdir / "scratch"

    @property
    def holder(self) -> str:
        """Names this compute slot in the page server's writer lease."""
        return f"{socket.gethostname()}:{self.workdir}"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

    def uri(self, dbname: str = "postgres") -> str:
        return (f"postgresql://postgres@/{dbname}?host={quote(str(self.socket_dir), safe='/')}"
                f"&port={self.port}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "token_file": str(self.token_file), "workdir": str(self.workdir)}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ComputeSpec:
        return cls(**{**body, "token_file": Path(body["token_file"]),
                      "workdir": Path(body["workdir"])})


@dataclass
class Pids:
    """The processes of a running compute."""

    mount: int
    postmaster: int


class ComputeNode:
    """Start, stop or kill the mount daemon and the postmaster of one compute."""

    def __init__(self, spec: ComputeSpec, pids: Pids | None = None,
                 started_at: float = 0.0) -> None:
        self.spec = spec
        self.pids = pids
        self.started_at = started_at
        self.start_timings: dict[str, float] = {}  # seconds per phase of the last start
        self._children: list[supervisor.Child] = []  # reaped when we started them

    @classmethod
    def load(cls, workdir: Path) -> ComputeNode | None:
        """The compute recorded in ``workdir``; None if none was ever started there."""
        try:
            body = json.loads((workdir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        recorded = body.get("pids")
        pids = Pids(recorded["mount"], recorded["postmaster"]) if recorded else None
        node = cls(ComputeSpec.from_json(body["spec"]), pids, float(body.get("started_at", 0)))
        node.start_timings = dict(body.get("start_timings") or {})
        return node

    def reserve(self) -> None:
        """Record the spec (and so its port) before starting, for other starts to avoid."""
        self.spec.workdir.mkdir(parents=True, exist_ok=True)
        self._record()

    def _record(self) -> None:
        body = {"spec": self.spec.to_json(), "pids": asdict(self.pids) if self.pids else None,
                "started_at": self.started_at, "start_timings": self.start_timings}
        write_durably(self.spec.workdir / STATE_FILE, json.dumps(body, indent=2).encode())

    def stats(self) -> dict[str, Any] | None:
        """The mount daemon's last published counters, if any."""
        try:
            body = json.loads((self.spec.run_dir / STATS_FILE).read_text())
        except (OSError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def status(self) -> ComputeStatus:
        self._reap()
        if self.pids is None:
            return ComputeStatus.STOPPED
        if (process_alive(self.pids.mount, b"compute.mount")
                and process_alive(self.pids.postmaster, b"postgres")):
            return ComputeStatus.RUNNING
        return ComputeStatus.CRASHED

    # --- start -----------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0, force: bool = False,
              logins: Logins | None = None) -> None:
        """Mount the branch (as its writer; ``force`` fences another) and start PostgreSQL,
        as the tenant's OS user, its roles logging in by the verifiers of ``logins`` (none:
        no password login).

        A crashed predecessor in the same workdir is cleaned up first; one that runs is
        an error.
        """
        spec = self.spec
        if self.status() is ComputeStatus.RUNNING:
            raise ComputeError(f"a compute already runs on {spec.tenant}/{spec.branch} "
                               f"(port {spec.port})")
        self.kill()  # whatever a crashed predecessor left: processes, a dead mount
        try:
            user = identity.ensure(spec.tenant)
        except IdentityError as exc:
            raise ComputeError(str(exc)) from None
        self._prepare_workdir(user)
        ready = spec.run_dir / "mount.ready"
        mount = self._spawn("mount.log", b"compute.mount", [
            sys.executable, "-m", "compute.mount", "--server", spec.server,
            "--token-file", str(spec.token_file), "--tenant", spec.tenant,
            "--branch", spec.branch, "--mountpoint", str(spec.mountpoint),
            "--scratch", str(spec.scratch_dir), "--cache-dir", str(spec.cache_dir),
            "--cache-mb", str(spec.cache_mb), "--cache-keep-mb", str(spec.cache_keep_mb),
            "--ready-file", str(ready),
            "--stats-file", str(spec.run_dir / STATS_FILE), "--run-as", user.name,
            "--holder", spec.holder, *(["--force"] if force else []),
            *(["--data-plane", spec.data_plane] if spec.data_plane else [])])
        began = time.monotonic()
        try:
            self._wait(ready.exists, mount, timeout_s)
            mounted = time.monotonic()
            try:  # sequential scans stream; without it they are only slower
                set_read_ahead(spec.mountpoint)
            except (ReadaheadError, OSError) as exc:
                log.warning("kernel readahead of the mount stays at its default: %s", exc)
            postgres = self._spawn("postgres.log", b"postgres", self._postgres_command(),
                                   user)
            self._wait(self._accepting, postgres, timeout_s)
            tenant_role.apply(spec.socket_dir, spec.port, spec.tenant, logins or Logins())
        except TenantRoleError as exc:
            self.kill()
            raise ComputeError(str(exc)) from None
        except BaseException:
            self.kill()
            raise
        self.pids = Pids(mount.pid, postgres.pid)
        self.started_at = time.time()
        self.start_timings = {"mount_s": mounted - began,
                              "postgres_s": time.monotonic() - mounted}
        self._record()

    def _prepare_workdir(self, user: Identity) -> None:
        """The workdir as the module docstring lays it out, without what a killed
        predecessor left: its scratch (pid file, stats, temp files) and socket locks."""
        spec = self.spec
        spec.workdir.mkdir(parents=True, exist_ok=True)
        check_reachable(spec.workdir.parent)
        os.chown(spec.workdir, 0, user.gid)
        os.chmod(spec.workdir, 0o750)
        shutil.rmtree(spec.scratch_dir, ignore_errors=True)
        shutil.rmtree(spec.socket_dir, ignore_errors=True)
        for directory in (spec.mountpoint, spec.socket_dir, spec.scratch_dir, spec.run_dir,
                          spec.workdir / "cache"):
            directory.mkdir(exist_ok=True)
            _own_tree(directory, user)
        (spec.run_dir / "mount.ready").unlink(missing_ok=True)
        hba = ("# Written by Strata at each start (compute/node.py); the branch's own\n"
               "# pg_hba.conf is not read. Root logs in as postgres; everyone else,\n"
               "# the proxy included, with a password.\n"
               "local all postgres peer map=strata\n"
               "local all all scram-sha-256\n")
        for path, text in ((spec.workdir / "pg_hba.conf", hba),
                           (spec.workdir / "pg_ident.conf", "strata root postgres\n")):
            write_durably(path, text.encode(), mode=0o640)
            os.chown(path, 0, user.gid)

    def _postgres_command(self) -> list[str]:
        spec = self.spec
        settings = {
            "port": str(spec.port), "listen_addresses": "",  # no TCP: the socket only
            "unix_socket_directories": str(spec.socket_dir), "unix_socket_permissions": "0700",
            "shared_buffers": spec.shared_buffers, "wal_recycle": "off", "wal_init_zero": "off",
            "full_page_writes": "on" if spec.full_page_writes else "off",
            **wal_level_settings(spec.wal_level),
            # A WAL flush is a page-server round trip (~2 ms): a committer that sees
            # another transaction open waits 1 ms so one flush carries both. Chosen by
            # measurement (docs/rfcs/0013); a lone client never waits.
            "commit_delay": "1000", "commit_siblings": "1",
            # WAL opened with O_DSYNC: with the daemon's direct I/O on WAL segments, a
            # commit is one FUSE write that the daemon makes durable before answering,
            # instead of a write and an fdatasync (compute.shim).
            "wal_sync_method": "open_datasync",
            # Every WAL write is such a round trip: a bulk load whose WAL buffers fill
            # writes (and waits) each time they wrap. 16 MB (PostgreSQL's cap for the
            # automatic value, reached there only at 512 MB of shared_buffers) cut the
            # writes of `pgbench -i -s 20` from ~2,000 to ~330 (docs/rfcs/0032).
            "wal_buffers": "16MB",
            "logging_collector": "off", "hba_file": str(spec.workdir / "pg_hba.conf"),
            # A crash (a PANIC on an fsync the page server refused, a fenced writer) ends
            # the compute: a restart on the same mount would recover from a view of the
            # branch this compute may no longer own. The proxy or `strata compute start`
            # starts a fresh one, which recovers from what the page server has.
            "restart_after_crash": "off",
            "ident_file": str(spec.workdir / "pg_ident.conf"), **spec.settings,
        }
        command = [str(pg_bin_dir() / "postgres"), "-D", str(spec.mountpoint)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        return command

    def _spawn(self, log_name: str, marker: bytes, command: list[str],
               user: Identity | None = None) -> supervisor.Child:
        child = supervisor.spawn(command, marker=marker, log_file=self.spec.workdir / log_name,
                                 cwd=supervisor.CODE_ROOT, label="compute start",
                                 user=(user.uid, user.gid) if user else None)
        self._children.append(child)
        return child

    def _accepting(self) -> bool:
        result = subprocess.run(
            [str(pg_bin_dir() / "pg_isready"), "-h", str(self.spec.socket_dir), "-p",
             str(self.spec.port),
             "-t", "1"], capture_output=True, check=False)
        return result.returncode == 0

    @staticmethod
    def _wait(done: Callable[[], bool], child: supervisor.Child, timeout_s: float) -> None:
        log = child.log_file
        name = log.stem
        try:
            supervisor.wait_ready(child, done, timeout_s, what=name, poll_s=_POLL_S)
        except supervisor.ExitedEarly as exc:
            tail = exc.log_tail[-_TAIL_LINES:]
            errors = [line for line in tail if " ERROR " in line or "FATAL" in line]
            if errors:  # the reason, in one line
                why = errors[-1].split(": ", 1)[-1].strip()
                raise ComputeError(f"{name} exited: {why} (log: {log})") from None
            raise ComputeError(f"{name} exited with status {exc.returncode} (log: {log})",
                               tail) from None
        except supervisor.NotReady as exc:
            raise ComputeError(f"not ready after {timeout_s:g} s (log: {log})",
                               exc.log_tail[-_TAIL_LINES:]) from None

    # --- stop --------------------------------------------------------------------------

    def stop(self, timeout_s: float = 60.0) -> None:
        """Fast shutdown of PostgreSQL, then unmount: every change is shipped first.

        Waits up to ``timeout_s`` for PostgreSQL to exit, and as long again for the
        unmount and the mount daemon's exit."""
        pids = self.pids
        if pids is not None:
            if process_alive(pids.postmaster, b"postgres"):
                with contextlib.suppress(ProcessLookupError):  # it may exit meanwhile
                    os.kill(pids.postmaster, signal.SIGINT)  # fast shutdown
                self._wait_gone(pids.postmaster, b"postgres", "postgres.log", timeout_s,
                                "PostgreSQL")
            if process_alive(pids.mount, b"compute.mount"):
                # Unmounting ends the FUSE loop; the daemon then ships its queue and exits.
                deadline = time.monotonic() + timeout_s
                self._unmount(pids.mount, timeout_s)
                self._wait_gone(pids.mount, b"compute.mount", "mount.log",
                                max(deadline - time.monotonic(), _POLL_S), "the mount daemon")
        self._forget()

    def _unmount(self, daemon: int, timeout_s: float) -> None:
        mountpoint = self.spec.mountpoint
        try:
            busy = unmount(mountpoint, timeout_s)
        except UnmountError as exc:
            raise ComputeError(f"cannot unmount {mountpoint}, so its mount daemon (pid "
                               f"{daemon}) still runs: {exc}") from None
        if busy:
            log.warning("%s was busy %d times before it unmounted", mountpoint, busy)

    def _wait_gone(self, pid: int, marker: bytes, log_name: str, timeout_s: float,
                   what: str) -> None:
        process = supervisor.Child(pid, marker, self.spec.workdir / log_name)
        if not supervisor.wait_exit(process, timeout_s, _POLL_S):
            raise ComputeError(f"{what} (pid {pid}) did not exit within {timeout_s:g} s")

    def kill(self) -> None:
        """kill -9 of the postmaster, every backend and the shim, at once, like a power cut.

        Backends run in sessions of their own and, stuck on a lock a dead process held,
        may never notice the postmaster died: the postmaster is frozen first so it forks
        no more, then it, its children and anything still inside the data directory die.
        """
        pids = self.pids
        user = identity.find(self.spec.tenant)
        postmasters = {pid for pid in (pids.postmaster if pids else None,
                                       self._postmaster_pid(user))
                       if pid is not None and process_alive(pid, b"postgres")}
        for pid in postmasters:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        victims = postmasters
        if user is not None:
            victims |= _processes_of(postmasters, self.spec.mountpoint, user.uid)
        if pids is not None and process_alive(pids.mount, b"compute.mount"):
            victims.add(pids.mount)
        victims.update(child.pid for child in self._children if child.alive())
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(process_alive(pid, b"") for pid in victims):  # zombies count as gone
            if time.monotonic() > deadline:
                raise ComputeError(f"processes of the compute survived SIGKILL: {victims}")
            time.sleep(_POLL_S)
        subprocess.run(["fusermount3", "-u", "-z", str(self.spec.mountpoint)],
                       capture_output=True, check=False)
        self._forget()

    def _forget(self) -> None:
        self._children = [child for child in self._children if child.alive()]  # reaps
        drop_unsaved(self.spec.cache_dir)  # a killed daemon's cache: no start reuses it
        if self.pids is not None:
            self.pids = None
            self._record()

    def _reap(self) -> None:
        """Collect the exit status of children that exited, so none lingers as a zombie."""
        for child in self._children:
            child.alive()

    def _postmaster_pid(self, user: Identity | None) -> int | None:
        """The pid in PostgreSQL's pid file, if it is this compute's postmaster.

        The tenant's user can write that file, so the pid it names is believed only for
        a process of that user serving this compute's data directory: never a way to
        make root signal someone else's process.
        """
        if user is None:
            return None
        try:
            first = (self.spec.scratch_dir / "postmaster.pid").read_text().split()[0]
            pid = int(first)
            uid = _uid_of(pid)
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            return None
        if uid != user.uid or str(self.spec.mountpoint).encode() not in arguments:
            return None
        return pid


def _uid_of(pid: int) -> int:
    """The real uid of a process (from /proc; OSError if it is gone)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise OSError(f"no Uid line for process {pid}")


def _processes_of(parents: set[int], datadir: Path, uid: int) -> set[int]:
    """Processes of ``uid`` that are children of ``parents`` or work inside ``datadir``
    (orphaned backends)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            cwd = os.readlink(entry / "cwd")
            owner = _uid_of(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
        inside = cwd == str(datadir) or cwd.startswith(f"{datadir}/")
        if owner == uid and (parent in parents or inside):
            found.add(int(entry.name))
    return found


def _own_tree(directory: Path, user: Identity) -> None:
    """Give ``directory`` (0700) and what is under it to ``user``; a mountpoint's content
    is the branch's, never walked."""
    os.chown(directory, user.uid, user.gid)
    os.chmod(directory, 0o700)
    if os.path.ismount(directory):
        return
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)


def check_reachable(path: Path) -> None:
    """Tenants' OS users must get through every directory above their computes'."""
    for directory in [path, *path.parents]:
        if directory.exists() and not os.stat(directory).st_mode & 0o001:
            raise ComputeError(
                f"tenants' OS users cannot reach {path}: {directory} is not searchable by "
                "others (chmod o+x, or put computes elsewhere with $STRATA_COMPUTE_DIR)")
