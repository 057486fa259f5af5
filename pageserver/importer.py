"""Create a tenant's first state: ``initdb`` into local scratch, imported as branch ``main``.

PostgreSQL refuses to run as root, so initdb runs as the ``postgres`` user
when the page server runs as root. The data directory is imported file by
file as ordinary ingest batches (``common.directory_ops``), so it lands in the
store exactly like any later write from a compute.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from common.directory_ops import batched_ops, total_bytes
from common.errors import FailedPreconditionError
from common.ops import Batch
from common.postgres import checkpoint_location
from pageserver.timeline import Timeline

Progress = Callable[[int, int], None]  # (bytes imported, bytes total)


def _as_postgres() -> list[str]:
    """A command prefix that runs a program as the unprivileged ``postgres`` user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise FailedPreconditionError("running as root but there is no 'postgres' user") from exc
    return ["runuser", "-u", "postgres", "--"]


def initdb(target: Path, bin_dir: Path) -> None:
    """A fresh cluster with data checksums in ``target`` (which must not exist)."""
    target.mkdir(mode=0o700)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(target, entry.pw_uid, entry.pw_gid)
    result = subprocess.run(
        [*_as_postgres(), str(bin_dir / "initdb"), "-D", str(target), "--data-checksums",
         "-U", "postgres", "--auth-local=peer", "--auth-host=reject", "--encoding=UTF8",
         "--locale=C.UTF-8",
         "--no-instructions"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise FailedPreconditionError(f"initdb failed: {result.stderr.strip()[-500:]}")


def checkpoint_wal_lsn(data_dir: Path, bin_dir: Path) -> int:
    """PostgreSQL's latest checkpoint position, as recorded in pg_control."""
    out = subprocess.run(
        [*_as_postgres(), str(bin_dir / "pg_controldata"), str(data_dir)],
        capture_output=True, text=True, check=True,
    ).stdout
    location = checkpoint_location(out)
    if location is None:
        raise FailedPreconditionError("pg_controldata printed no checkpoint location")
    return location


def import_directory(timeline: Timeline, source: Path, wal_lsn: int = 0,
                     progress: Progress | None = None) -> int:
    """Ingest every directory and file under ``source``; returns the last LSN."""
    total = total_bytes(source)
    lsn = timeline.durable_lsn
    for ops, done, last in batched_ops(source):
        lsn = timeline.ingest(Batch(tuple(ops), wal_lsn=wal_lsn if last else 0))
        if progress:
            progress(total if last else done, total)
    return lsn


def create_cluster(timeline: Timeline, bin_dir: Path, progress: Progress | None = None) -> int:
    """initdb into scratch space and import it into ``timeline``; returns the last LSN.

    The scratch directory is in the system temp directory, which the ``postgres``
    user can always reach (a state directory under a private home may not be).
    """
    with tempfile.TemporaryDirectory(prefix="strata-initdb-") as tmp:
        os.chmod(tmp, 0o755)
        data_dir = Path(tmp) / "pgdata"
        initdb(data_dir, bin_dir)
        return import_directory(timeline, data_dir, checkpoint_wal_lsn(data_dir, bin_dir),
                                progress)
