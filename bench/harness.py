"""What the benchmark suites share to measure, report and run servers.

Every suite (``bench/*_bench.py``, ``bench/pagebench.py``) imports these helpers from here,
never from another suite, so each suite can change alone (an import-linter contract in
pyproject.toml holds them to it). Synthetic engine data lives in ``bench.synthetic``.

- measuring: ``timed`` and ``summary`` (one shape of summary in every report),
  ``interleaved`` and ``with_ratio`` (paired figures), ``pgbench_tps``,
  ``pgbench_transactions``; ``process_usage`` (CPU and context switches of a process),
  ``wal_stats`` (``pg_stat_wal``), ``metric_total`` (a page server counter);
- reporting: ``host_info``, ``versions``, ``dump_json``;
- processes: ``ServerProcess`` (a page server child on loopback), ``stop_on_sigterm``;
- local deployment for the suites that run computes as root: ``Strata`` (the CLI under a
  temporary ``$STRATA_HOME``), ``LocalPostgres`` (the baseline), ``pgbench_at`` and
  ``query_at`` (a compute or the baseline by its socket), ``bench_home`` and
  ``root_bench_main``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
import lz4
import numpy as np
import psycopg

from bench import objectstore
from common import supervisor
from common.bearer import call_credentials_metadata
from common.postgres import pg_bin_dir

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
TENANT = "bench"  # the tenant a suite creates when it needs only one
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0),
                   ("grpc.max_receive_message_length", 128 * 1024 * 1024)]
Target = TypeVar("Target")


class BenchError(Exception):
    """A step failed: the run is void and reports nothing."""


# --- measuring --------------------------------------------------------------------------------


def timed(action: Callable[[], object]) -> float:
    """Seconds ``action`` takes."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def summary(values: Sequence[float]) -> JSON:
    """Count, median, p90, min and max of raw samples, and the samples themselves."""
    return {"n": len(values), "median": statistics.median(values),
            "p90": float(np.percentile(values, 90)), "min": min(values), "max": max(values),
            "samples": list(values)}


def interleaved(runs: int, targets: Mapping[str, Target],
                measure: Callable[[Target], float]) -> dict[str, JSON]:
    """``measure`` of each target ``runs`` times, their order swapped every run (so drift
    on a noisy machine hits both alike); the summary of each target's samples."""
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for index in range(runs):
        order = list(targets.items())
        for name, target in order if index % 2 == 0 else reversed(order):
            samples[name].append(measure(target))
    return {name: summary(values) for name, values in samples.items()}


def with_ratio(figures: dict[str, JSON]) -> JSON:
    """Figures of a compute and its local baseline, with the compute/local ratio of the
    medians."""
    return {**figures, "ratio": figures["compute"]["median"] / figures["local"]["median"]}


def pgbench_tps(output: str) -> float:
    """The TPS pgbench printed (without connection time); BenchError if any failed."""
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if match is None:
        raise BenchError(f"no TPS in pgbench output:\n{output}")
    failed = re.search(r"number of failed transactions: (\d+)", output)
    if failed and int(failed.group(1)):
        raise BenchError(f"pgbench reported failed transactions:\n{output}")
    return float(match.group(1))


def pgbench_transactions(output: str) -> int:
    """The number of transactions pgbench says it processed."""
    match = re.search(r"number of transactions actually processed: (\d+)", output)
    if match is None:
        raise BenchError(f"no transaction count in pgbench output:\n{output}")
    return int(match.group(1))


def process_usage(pid: int) -> dict[str, float]:
    """CPU seconds (user + system, all threads, also exited ones) and voluntary and
    involuntary context switches (summed over the live threads) of process ``pid``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        usage = {"cpu_s": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"),
                 "voluntary_switches": 0.0, "involuntary_switches": 0.0}
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                status = (task / "status").read_text()
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            for line in status.splitlines():
                name, _, value = line.partition(":")
                if name == "voluntary_ctxt_switches":
                    usage["voluntary_switches"] += int(value)
                elif name == "nonvoluntary_ctxt_switches":
                    usage["involuntary_switches"] += int(value)
    except OSError as exc:
        raise BenchError(f"cannot read the counters of process {pid}: {exc}") from exc
    return usage


WAL_STATS = ("wal_write", "wal_sync", "wal_write_time", "wal_sync_time", "wal_bytes")


def wal_stats(at: Endpoint) -> dict[str, float]:
    """``pg_stat_wal``: WAL writes and syncs, their times (ms; zero unless
    ``track_wal_io_timing``) and WAL bytes generated."""
    with psycopg.connect(host=at[0], port=at[1], user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        row = conn.execute(f"SELECT {', '.join(WAL_STATS)} FROM pg_stat_wal").fetchone()
    assert row is not None
    return {name: float(value) for name, value in zip(WAL_STATS, row, strict=True)}


def metric_total(metrics_address: str, name: str) -> float:
    """The sum of every sample of counter ``name`` on a page server's /metrics page."""
    body = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10).read()
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.split()[-1])
    return total


# --- reporting --------------------------------------------------------------------------------


def host_info() -> JSON:
    """The machine and software the run uses, and when it starts."""
    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_avg_1_5_15m": os.getloadavg(),  # other work on the host skews every figure
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "lz4": lz4.__version__,
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty_files": len((_git("status", "--porcelain") or "").splitlines()),
        "tmp_dir": tempfile.gettempdir(),
    }


def _git(*args: str) -> str | None:
    """Output of a read-only git command in this checkout, or None."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def versions() -> JSON:
    """Versions of the packages on the measured path."""
    return {name: version(name) for name in ("grpcio", "protobuf", "numpy", "lz4")}


def dump_json(report: JSON) -> str:
    """``report`` as indented JSON, with lists of numbers kept on one line."""
    text = json.dumps(report, indent=1)
    return re.sub(r"\[\s+(?:-?[\d.eE+-]+,\s+)*-?[\d.eE+-]+\s+\]",
                  lambda m: "[" + " ".join(m.group(0)[1:-1].split()) + "]", text)


# --- processes --------------------------------------------------------------------------------


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks stop the children we started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


class ServerProcess:
    """A ``python -m pageserver.main`` child serving on a free 127.0.0.1 port.

    ``storage`` is what the server gets as ``--storage``: a directory or an object-store
    URL. Use it as a context manager: leaving the block stops the child (SIGTERM, then
    SIGKILL after ``stop_timeout_s``), also on errors. ``stop`` then ``start`` restarts it
    on the same address, so clients' channels reconnect to it.
    """

    def __init__(self, state_dir: Path, storage: str, log_path: Path,
                 stop_timeout_s: float = 120.0, extra_args: Sequence[str] = ()) -> None:
        self.state_dir = state_dir
        self.extra_args = tuple(extra_args)  # more pageserver flags
        self.storage = storage
        self.log_path = log_path
        self.stop_timeout_s = stop_timeout_s
        self.address = ""
        self.start_seconds = 0.0
        self.child: supervisor.Child | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the child (on the previous address, if any) and wait until it serves."""
        started = time.perf_counter()
        child = self.child = supervisor.spawn(
            [sys.executable, "-m", "pageserver.main", "--state-dir", str(self.state_dir),
             "--storage", self.storage, "--listen", self.address or "127.0.0.1:0",
             "--metrics-listen", "", *self.extra_args],
            marker=b"pageserver", log_file=self.log_path, cwd=ROOT, label="bench")
        ready = self.state_dir / "pageserver.json"
        try:
            supervisor.wait_ready(child, lambda: supervisor.names_pid(ready, child.pid),
                                  timeout_s, what="the page server")
        except supervisor.SupervisorError as exc:
            self.stop()
            tail = "\n".join(exc.log_tail)
            raise RuntimeError(f"page server did not start; {self.log_path} ends:\n{tail}"
                               ) from None
        info = supervisor.ready_info(ready)
        assert info is not None
        self.address = str(info["listen"])
        self.start_seconds = time.perf_counter() - started

    def stop(self) -> int | None:
        """SIGTERM (drain and flush), SIGKILL if that takes too long; the exit code."""
        if self.child is None:
            return None
        supervisor.stop(self.child, self.stop_timeout_s, what="the page server")
        return self.child.returncode

    def token(self) -> str:
        return (self.state_dir / "auth" / "admin.token").read_text().strip()

    def ready_info(self) -> JSON:
        """What the running server published in ``pageserver.json``."""
        info = supervisor.ready_info(self.state_dir / "pageserver.json")
        assert info is not None
        return info

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return call_credentials_metadata(self.token())

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the child has used so far (from /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- local deployment: the suites that run computes -------------------------------------------


def run(command: Sequence[str], *, env: dict[str, str] | None = None,
        timeout: float = 1800) -> str:
    """Output of ``command`` run from the checkout; BenchError if it fails."""
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command[:4])}... exited {done.returncode}:\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def as_postgres(tool: str, *args: str, timeout: float = 1800) -> str:
    return run(["runuser", "-u", "postgres", "--", str(pg_bin_dir() / tool), *args],
               timeout=timeout)


Endpoint = tuple[str, int]  # unix socket directory, port: computes and baselines alike


def pgbench_at(at: Endpoint, *args: str, timeout: float = 1800) -> str:
    """pgbench as root: a compute lets root alone in as ``postgres`` (by peer)."""
    return run([str(pg_bin_dir() / "pgbench"), "-h", at[0], "-p", str(at[1]), "-U",
                "postgres", *args, "postgres"], timeout=timeout)


def query_at(at: Endpoint, sql: str) -> Any:
    """The first column of the first row ``sql`` returns (autocommit), or None."""
    with psycopg.connect(host=at[0], port=at[1], user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        cursor = conn.execute(sql)
        row = cursor.fetchone() if cursor.description else None
    return row[0] if row else None


class LocalPostgres:
    """Plain PostgreSQL 15 on a local directory, started with a compute's settings: the
    baseline beside which Strata is measured. With ``tcp`` it also listens on 127.0.0.1."""

    def __init__(self, root: Path, port: int, tcp: bool = False) -> None:
        self.datadir = root / "local-pgdata"
        self.socket_dir = root / "local-socket"
        self.port = port
        self.tcp = tcp
        self.log_file = root / "local.log"
        self.child: supervisor.Child | None = None

    def init(self) -> None:
        for directory in (self.datadir, self.socket_dir):
            directory.mkdir(parents=True)
            shutil.chown(directory, "postgres", "postgres")
        as_postgres("initdb", "--data-checksums", "-U", "postgres", "-A", "trust", "-D",
                    str(self.datadir))

    def start(self, shared_buffers: str, full_page_writes: bool,
              extra: Mapping[str, str] | None = None) -> None:
        """Start it with a compute's settings, and ``extra`` ones on top."""
        settings = {"port": str(self.port),  # as computes: the socket only, unless ``tcp``
                    "listen_addresses": "127.0.0.1" if self.tcp else "",
                    "unix_socket_directories": str(self.socket_dir),
                    "shared_buffers": shared_buffers, "wal_recycle": "off",
                    "wal_init_zero": "off", "logging_collector": "off",
                    "full_page_writes": "on" if full_page_writes else "off", **(extra or {})}
        command = ["runuser", "-u", "postgres", "--", str(pg_bin_dir() / "postgres"), "-D",
                   str(self.datadir)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        self.child = supervisor.spawn(command, marker=b"postgres", log_file=self.log_file,
                                      cwd=self.datadir.parent, label="local PostgreSQL")
        try:
            supervisor.wait_ready(self.child, self._accepting, 60.0,
                                  what="local PostgreSQL", poll_s=0.1)
        except supervisor.SupervisorError as exc:
            raise BenchError(f"{exc.message}: {' | '.join(exc.log_tail[-3:])}") from None

    def _accepting(self) -> bool:
        return subprocess.run([str(pg_bin_dir() / "pg_isready"), "-h", str(self.socket_dir),
                               "-p", str(self.port)], capture_output=True).returncode == 0

    def stop(self) -> None:
        self._shutdown("fast", check=True)

    def kill(self) -> None:
        """Whatever happened, leave no server behind."""
        self._shutdown("immediate", check=False)

    def _shutdown(self, mode: str, *, check: bool) -> None:
        """``pg_ctl stop -m mode`` (the postmaster is runuser's child, not ours), then wait
        until the spawned process is gone."""
        if self.child is not None and self.child.alive():
            subprocess.run(["runuser", "-u", "postgres", "--", str(pg_bin_dir() / "pg_ctl"),
                            "stop", "-m", mode, "-D", str(self.datadir), "-w"],
                           capture_output=True, check=check)
            if not supervisor.wait_exit(self.child, 60.0):
                raise BenchError(f"local PostgreSQL (pid {self.child.pid}) did not stop")
        self.child = None


class Strata:
    """The CLI under one $STRATA_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.storage = str(home / "objects")  # the embedded default; `up` may say S3

    def up(self, suite: str, *args: str) -> JSON:
        """``strata up`` on free ports, with the run's object store (bench.objectstore)."""
        self.storage = objectstore.suite_store(suite, self.home / "objects")
        return self("up", "--port", "0", "--metrics-port", "0", "--no-console", *args,
                    *objectstore.up_options(self.storage))

    def stored_bytes(self) -> int:
        """Bytes of every object the page server stored, wherever they live."""
        return objectstore.stored_bytes(self.storage)

    def __call__(self, *args: str) -> JSON:
        out = run([sys.executable, "-m", "strata.cli", *args, "--json"],
                  env={"STRATA_HOME": str(self.home), "STRATA_TENANT": TENANT})
        document: JSON = json.loads(out)
        return document


@contextmanager
def bench_home(name: str) -> Iterator[Path]:
    """A temporary directory the postgres user can reach; ``strata down`` and removed after."""
    root = Path(tempfile.mkdtemp(prefix=f"strata-{name}-bench-"))
    root.chmod(0o755)
    strata = Strata(root / "home")
    try:
        yield root
    finally:
        try:
            strata("down")
        except BenchError as exc:
            print(f"warning: strata down failed: {exc}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)


def root_bench_main(argv: Sequence[str] | None, *, name: str, doc: str, quick_help: str,
                    full: Any, quick: Any, measure: Callable[[Any, Path], JSON],
                    render: Callable[[JSON], str],
                    extra_versions: Callable[[], JSON] | None = None) -> int:
    """The command line of a suite that runs computes: root check, one measured run in a
    temporary ``$STRATA_HOME``, nothing reported if it fails, JSON and markdown written."""
    parser = argparse.ArgumentParser(prog=f"bench.{name}_bench", description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", type=Path, help="write the JSON report here (and .md)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(f"{name}_bench: needs root (computes mount FUSE and run postgres)",
              file=sys.stderr)
        return 2
    settings = quick if args.quick else full
    started = datetime.now(UTC)
    try:
        with bench_home(name) as root:
            figures = measure(settings, root)
    except (BenchError, psycopg.Error, subprocess.TimeoutExpired) as exc:
        print(f"{name}_bench: run failed, no figures reported: {exc}", file=sys.stderr)
        return 1
    report = {"benchmark": name, "started_at": started.isoformat(),
              "finished_at": datetime.now(UTC).isoformat(), "host": host_info(),
              "versions": {**versions(), **(extra_versions() if extra_versions else {})},
              "settings": asdict(settings), "storage": objectstore.describe(),
              "figures": figures}
    markdown = render(report)
    print(markdown)
    if args.out:
        args.out.write_text(dump_json(report))
        args.out.with_suffix(".md").write_text(markdown)
    return 0
