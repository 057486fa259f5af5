"""A compute node: the FUSE mount of a branch plus an unmodified PostgreSQL 15 on top of it.

Compute-specific settings (port, socket directory, shared_buffers, WAL settings
that suit a copy-on-write store) go on the postgres command line, never into
the branch's files. PostgreSQL runs as the unprivileged ``postgres`` user; the
mount daemon runs as root with ``allow_other``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pageserver.importer import pg_bin_dir

ROOT = Path(__file__).resolve().parents[1]


class ComputeError(Exception):
    """A compute failed to start or stop; the message says where to look."""


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

    @property
    def mountpoint(self) -> Path:
        return self.workdir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "socket"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"


class ComputeNode:
    """Start, stop or kill the mount daemon and the postmaster of one compute."""

    def __init__(self, spec: ComputeSpec) -> None:
        self.spec = spec
        self.mount: subprocess.Popen[bytes] | None = None
        self.postgres: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        spec = self.spec
        for directory in (spec.workdir, spec.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        os.chmod(spec.workdir, 0o755)
        _check_reachable(spec.workdir)
        owner = pwd.getpwnam("postgres")
        os.chown(spec.socket_dir, owner.pw_uid, owner.pw_gid)
        ready = spec.workdir / "mount.ready"
        ready.unlink(missing_ok=True)
        # Scratch holds one postmaster's ephemera (pid file, stats, temp files): a new
        # mount starts without a stale pid file from a killed predecessor.
        shutil.rmtree(spec.workdir / "scratch", ignore_errors=True)
        self.mount = self._spawn("mount.log", [
            sys.executable, "-m", "compute.mount", "--server", spec.server,
            "--token-file", str(spec.token_file), "--tenant", spec.tenant,
            "--branch", spec.branch, "--mountpoint", str(spec.mountpoint),
            "--scratch", str(spec.workdir / "scratch"), "--cache-dir", str(spec.workdir / "cache"),
            "--cache-mb", str(spec.cache_mb), "--ready-file", str(ready)])
        self._wait(lambda: ready.exists(), self.mount, "mount.log", timeout_s)
        bin_dir = pg_bin_dir()
        settings = {
            "port": str(spec.port), "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(spec.socket_dir),
            "shared_buffers": spec.shared_buffers, "wal_recycle": "off", "wal_init_zero": "off",
            "full_page_writes": "on" if spec.full_page_writes else "off",
            "logging_collector": "off",
        }
        command = ["runuser", "-u", "postgres", "--", str(bin_dir / "postgres"),
                   "-D", str(spec.mountpoint)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        self.postgres = self._spawn("postgres.log", command)
        self._wait(self._accepting, self.postgres, "postgres.log", timeout_s)

    def _spawn(self, log_name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.spec.workdir / log_name, "ab")  # noqa: SIM115 - the child owns it
        try:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    cwd=ROOT, start_new_session=True,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
        finally:
            log.close()

    def _accepting(self) -> bool:
        result = subprocess.run(
            [str(pg_bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.spec.port),
             "-t", "1"], capture_output=True, check=False)
        return result.returncode == 0

    def _wait(self, done: Callable[[], bool], process: subprocess.Popen[bytes], log_name: str,
              timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if process.poll() is not None:
                log = self.spec.workdir / log_name
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
                raise ComputeError(f"{log_name.split('.')[0]} exited with status "
                                   f"{process.returncode}; see {log}:\n{tail}")
            if time.monotonic() > deadline:
                raise ComputeError(f"not ready after {timeout_s:g} s; see "
                                   f"{self.spec.workdir / log_name}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Fast shutdown of PostgreSQL, then unmount: every change is shipped first."""
        postmaster = self._postmaster_pid()
        if self.postgres is not None and self.postgres.poll() is None and postmaster:
            os.kill(postmaster, signal.SIGINT)  # fast shutdown (runuser does not forward it)
            self.postgres.wait(timeout=timeout_s)
        if self.mount is not None and self.mount.poll() is None:
            # Unmounting ends the FUSE loop; the daemon then ships its queue and exits.
            subprocess.run(["fusermount3", "-u", str(self.spec.mountpoint)], check=True,
                           capture_output=True)
            self.mount.wait(timeout=timeout_s)

    def kill(self) -> None:
        """kill -9 of the postmaster, its backends and the shim, at once."""
        postmaster = self._postmaster_pid()
        for process in (self.mount, self.postgres):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        if postmaster is not None:  # runuser may have put it in a process group of its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(postmaster), signal.SIGKILL)
        for process in (self.mount, self.postgres):
            if process is not None:
                process.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(self.spec.mountpoint)],
                       capture_output=True, check=False)


    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.spec.workdir / "scratch" / "postmaster.pid").read_text().split()[0]
            return int(first)
        except (OSError, IndexError, ValueError):
            return None


def _check_reachable(path: Path) -> None:
    """PostgreSQL runs as ``postgres``: every directory above its data must let it through."""
    for directory in [path, *path.parents]:
        if not os.stat(directory).st_mode & 0o001:
            raise ComputeError(
                f"the postgres user cannot reach {path}: {directory} is not searchable by "
                "others (chmod o+x, or put the compute elsewhere)")
