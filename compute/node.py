"""A compute node: the FUSE mount of a branch plus an unmodified PostgreSQL 15 on top of it.

Compute-specific settings (port, socket directory, shared_buffers, WAL settings
that suit a copy-on-write store) go on the postgres command line, never into
the branch's files. PostgreSQL listens on no TCP port: only on a unix socket in a
directory that root and ``postgres`` alone can enter, so clients come through the
proxy, which authenticates them. PostgreSQL runs as the unprivileged ``postgres`` user; the
mount daemon runs as root with ``allow_other``.

A started compute outlives the process that started it: its pids and settings are
recorded in ``<workdir>/compute.json``, so a later ``strata compute stop`` (or a
test) finds, stops or kills it by pid. Layout of a workdir::

    compute.json   spec, pids, start time (absent: stopped)
    stats.json     page cache hits/misses/evictions, GetPages round trips (mount daemon)
    pgdata/        the FUSE mountpoint, PostgreSQL's data directory
    socket/        PostgreSQL's unix socket directory
    scratch/       ephemeral files (postmaster.pid, stats, temp files)
    cache/         the local page cache, reused after a clean stop
    mount.log, postgres.log
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
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
    shared_buffers: str = "128MB"
    full_page_writes: bool = True
    settings: dict[str, str] = field(default_factory=dict)  # extra postgres -c settings

    @property
    def mountpoint(self) -> Path:
        return self.workdir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "socket"

    @property
    def socket_path(self) -> Path:
        """PostgreSQL's unix socket: the only way in (no TCP), for root and ``postgres``."""
        return self.socket_dir / f".s.PGSQL.{self.port}"

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
    runuser: int
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
        pids = Pids(**body["pids"]) if body.get("pids") else None
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
            body = json.loads((self.spec.workdir / STATS_FILE).read_text())
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

    def start(self, timeout_s: float = 60.0, force: bool = False) -> None:
        """Mount the branch (as its writer; ``force`` fences another) and start PostgreSQL.

        A crashed predecessor in the same workdir is cleaned up first; one that runs is
        an error.
        """
        spec = self.spec
        if self.status() is ComputeStatus.RUNNING:
            raise ComputeError(f"a compute already runs on {spec.tenant}/{spec.branch} "
                               f"(port {spec.port})")
        self.kill()  # whatever a crashed predecessor left: processes, a dead mount
        for directory in (spec.workdir, spec.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        os.chmod(spec.workdir, 0o755)
        check_reachable(spec.workdir)
        owner = pwd.getpwnam("postgres")
        os.chown(spec.socket_dir, owner.pw_uid, owner.pw_gid)
        os.chmod(spec.socket_dir, 0o700)  # clients come through the proxy (root)
        ready = spec.workdir / "mount.ready"
        ready.unlink(missing_ok=True)
        # Scratch holds one postmaster's ephemera (pid file, stats, temp files) and the
        # socket directory its lock files: start without those of a killed predecessor.
        shutil.rmtree(spec.workdir / "scratch", ignore_errors=True)
        for stale in spec.socket_dir.iterdir():
            stale.unlink()
        mount = self._spawn("mount.log", b"compute.mount", [
            sys.executable, "-m", "compute.mount", "--server", spec.server,
            "--token-file", str(spec.token_file), "--tenant", spec.tenant,
            "--branch", spec.branch, "--mountpoint", str(spec.mountpoint),
            "--scratch", str(spec.workdir / "scratch"), "--cache-dir", str(spec.workdir / "cache"),
            "--cache-mb", str(spec.cache_mb), "--ready-file", str(ready),
            "--stats-file", str(spec.workdir / STATS_FILE),
            "--holder", spec.holder, *(["--force"] if force else [])])
        began = time.monotonic()
        try:
            self._wait(ready.exists, mount, timeout_s)
            mounted = time.monotonic()
            postgres = self._spawn("postgres.log", b"postgres", self._postgres_command())
            self._wait(self._accepting, postgres, timeout_s)
        except BaseException:
            self.kill()
            raise
        postmaster = self._postmaster_pid()
        assert postmaster is not None  # it accepts connections, so it wrote its pid file
        self.pids = Pids(mount.pid, postgres.pid, postmaster)
        self.started_at = time.time()
        self.start_timings = {"mount_s": mounted - began,
                              "postgres_s": time.monotonic() - mounted}
        self._record()

    def _postgres_command(self) -> list[str]:
        spec = self.spec
        settings = {
            "port": str(spec.port), "listen_addresses": "",  # no TCP: the socket only
            "unix_socket_directories": str(spec.socket_dir), "unix_socket_permissions": "0700",
            "shared_buffers": spec.shared_buffers, "wal_recycle": "off", "wal_init_zero": "off",
            "full_page_writes": "on" if spec.full_page_writes else "off",
            "logging_collector": "off", **spec.settings,
        }
        command = ["runuser", "-u", "postgres", "--", str(pg_bin_dir() / "postgres"),
                   "-D", str(spec.mountpoint)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        return command

    def _spawn(self, log_name: str, marker: bytes, command: list[str]) -> supervisor.Child:
        child = supervisor.spawn(command, marker=marker, log_file=self.spec.workdir / log_name,
                                 cwd=supervisor.CODE_ROOT, label="compute start")
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
        """Fast shutdown of PostgreSQL, then unmount: every change is shipped first."""
        pids = self.pids
        if pids is not None:
            if process_alive(pids.postmaster, b"postgres"):
                with contextlib.suppress(ProcessLookupError):  # it may exit meanwhile
                    os.kill(pids.postmaster, signal.SIGINT)  # fast shutdown
                self._wait_gone(pids.postmaster, b"postgres", "postgres.log", timeout_s,
                                "PostgreSQL")
            if process_alive(pids.mount, b"compute.mount"):
                # Unmounting ends the FUSE loop; the daemon then ships its queue and exits.
                subprocess.run(["fusermount3", "-u", str(self.spec.mountpoint)],
                               capture_output=True, check=False)
                self._wait_gone(pids.mount, b"compute.mount", "mount.log", timeout_s,
                                "the mount daemon")
        self._forget()

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
        postmasters = {pid for pid in (pids.postmaster if pids else None,
                                       self._postmaster_pid())
                       if pid is not None and process_alive(pid, b"postgres")}
        for pid in postmasters:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        victims = postmasters | _processes_of(postmasters, self.spec.mountpoint)
        if pids is not None:
            victims |= {pid for pid, marker in ((pids.mount, b"compute.mount"),
                                                (pids.runuser, b"postgres"))
                        if process_alive(pid, marker)}
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
        if self.pids is not None:
            self.pids = None
            self._record()

    def _reap(self) -> None:
        """Collect the exit status of children that exited, so none lingers as a zombie."""
        for child in self._children:
            child.alive()

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.spec.workdir / "scratch" / "postmaster.pid").read_text().split()[0]
            return int(first)
        except (OSError, IndexError, ValueError):
            return None


def _processes_of(parents: set[int], datadir: Path) -> set[int]:
    """Children of ``parents`` and processes working inside ``datadir`` (orphaned backends)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            cwd = os.readlink(entry / "cwd")
        except (OSError, IndexError, ValueError):
            continue
        if parent in parents or cwd == str(datadir) or cwd.startswith(f"{datadir}/"):
            found.add(int(entry.name))
    return found


def check_reachable(path: Path) -> None:
    """PostgreSQL runs as ``postgres``: every directory above its data must let it through."""
    for directory in [path, *path.parents]:
        if directory.exists() and not os.stat(directory).st_mode & 0o001:
            raise ComputeError(
                f"the postgres user cannot reach {path}: {directory} is not searchable by "
                "others (chmod o+x, or put computes elsewhere with $STRATA_COMPUTE_DIR)")
