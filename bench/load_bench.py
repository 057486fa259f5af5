"""``pgbench -i`` on a compute beside local PostgreSQL, with the CPU each component spent.

Where a bulk load's time goes (rfcs/0032): for each ``wal_level`` (``replica``, the
default, and ``minimal`` on both systems), the load's seconds on each system and their
ratio, and over the compute's load the CPU seconds of the page server, the mount daemon
and PostgreSQL (the postmaster and the children it reaped: the loading backend, the
checkpointer's and background writer's share), from ``/proc``; the local PostgreSQL's
CPU beside it; the page server's busiest thread (its ingest connection); and the
batches and bytes the page server ingested. CPU seconds summed over the components and
set beside the wall time show how much of the load overlapped on this machine's cores.

Run ``python -m bench.load_bench [--quick] [--out bench/results/load.json]`` as root (it
starts computes). One run of each system per ``wal_level``; nothing here asserts on time.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    JSON,
    TENANT,
    LocalPostgres,
    Strata,
    as_postgres,
    pgbench_at,
    root_bench_main,
)

LOCAL_PORT = 55310
WAL_LEVELS: dict[str, dict[str, str]] = {
    "replica": {},
    "minimal": {"wal_level": "minimal", "max_wal_senders": "0"},
}
REAP_WAIT_S = 1.0  # the postmaster reaps the loading backend (and so counts its CPU)
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Settings:
    mode: str
    scale: int
    shared_buffers: str


FULL = Settings("full", scale=20, shared_buffers="128MB")
QUICK = Settings("quick", scale=4, shared_buffers="128MB")


def command_line(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def component_pids(root: Path, datadir: Path) -> dict[str, int]:
    """The page server, the mount daemon and the compute's postmaster of this run."""
    found: dict[str, int] = {}
    marker = str(root).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        words = command_line(int(entry))
        line = b" ".join(words)
        if marker not in line:
            continue
        if b"pageserver.main" in line:
            found["page_server"] = int(entry)
        elif b"compute.mount" in line:
            found["mount_daemon"] = int(entry)
        elif words[0].endswith(b"postgres") and b"-D" in words \
                and str(datadir).encode() not in line:
            found["postgres"] = int(entry)
    missing = {"page_server", "mount_daemon", "postgres"} - found.keys()
    if missing:
        raise RuntimeError(f"cannot find the {', '.join(sorted(missing))} process of the run")
    return found


def cpu_s(pid: int) -> float:
    """User and system CPU of ``pid`` and of the children it reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / TICK


def thread_cpu_s(pid: int) -> dict[int, float]:
    found: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
    return found


def ingest_counters(metrics_address: str) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10).read()
    counters: dict[str, float] = {}
    for line in body.decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name in ("strata_ingest_batches_total", "strata_ingest_bytes_total"):
            counters[name] = float(value)
    return counters


def measure_level(settings: Settings, root: Path, strata: Strata, metrics_address: str,
                  local: LocalPostgres, level: str) -> JSON:
    """One load on each system at ``level``, with the compute's CPU per component."""
    started = strata("compute", "start", "main", "--shared-buffers", settings.shared_buffers,
                     "--wal-level", level)
    local.start(settings.shared_buffers, True, WAL_LEVELS[level])
    try:
        local_pid = int((local.datadir / "postmaster.pid").read_text().split()[0])
        local_cpu = cpu_s(local_pid)
        began = time.perf_counter()
        pgbench_at((str(local.socket_dir), local.port), "-i", "-s", str(settings.scale), "-q")
        local_s = time.perf_counter() - began
        time.sleep(REAP_WAIT_S)
        local_cpu = cpu_s(local_pid) - local_cpu

        pids = component_pids(root, local.datadir)
        cpu = {name: cpu_s(pid) for name, pid in pids.items()}
        threads = thread_cpu_s(pids["page_server"])
        counters = ingest_counters(metrics_address)
        began = time.perf_counter()
        pgbench_at((started["host"], started["port"]), "-i", "-s", str(settings.scale), "-q")
        compute_s = time.perf_counter() - began
        time.sleep(REAP_WAIT_S)
        cpu = {name: cpu_s(pid) - cpu[name] for name, pid in pids.items()}
        after = thread_cpu_s(pids["page_server"])
        busiest = max(after[tid] - threads.get(tid, 0.0) for tid in after)
        ingested = {name: value - counters.get(name, 0.0)
                    for name, value in ingest_counters(metrics_address).items()}
    finally:
        local.stop()
        strata("compute", "stop", "main")
    return {"compute_s": compute_s, "local_s": local_s, "ratio": compute_s / local_s,
            "cpu_s": cpu, "cpu_total_s": sum(cpu.values()), "local_postgres_cpu_s": local_cpu,
            "page_server_busiest_thread_cpu_s": busiest,
            "ingest_batches": ingested["strata_ingest_batches_total"],
            "ingest_mb": ingested["strata_ingest_bytes_total"] / 1e6}


def measure(settings: Settings, root: Path) -> JSON:
    strata = Strata(root / "home")
    up = strata.up("load")
    strata("tenant", "create", TENANT)
    local = LocalPostgres(root, LOCAL_PORT)
    local.init()
    try:
        figures: JSON = {}
        for level in WAL_LEVELS:
            print(f"pgbench -i -s {settings.scale}, wal_level {level} ...", file=sys.stderr)
            figures[level] = measure_level(settings, root, strata, up["metrics_address"],
                                           local, level)
        return figures
    finally:
        local.kill()


def render_markdown(report: JSON) -> str:
    settings, figures = report["settings"], report["figures"]
    lines = [
        f"# `pgbench -i -s {settings['scale']}`: compute vs local, CPU per component",
        "",
        f"{report['started_at']}, mode {settings['mode']}, on {report['host']['cpu_count']} CPUs "
        f"(load average {report['host']['load_avg_1_5_15m'][0]:.1f} at the start); one run "
        "per system and wal_level; CPU from /proc over the compute's load.",
        "",
        "| wal_level | compute | local | ratio | page server CPU (busiest thread) "
        "| mount daemon CPU | PostgreSQL CPU (local) | CPU sum | batches | MB ingested |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level, row in figures.items():
        cpu = row["cpu_s"]
        lines.append(
            f"| {level} | {row['compute_s']:.1f} s | {row['local_s']:.1f} s "
            f"| {row['ratio']:.2f} | {cpu['page_server']:.1f} s "
            f"({row['page_server_busiest_thread_cpu_s']:.1f} s) | {cpu['mount_daemon']:.1f} s "
            f"| {cpu['postgres']:.1f} s ({row['local_postgres_cpu_s']:.1f} s) "
            f"| {row['cpu_total_s']:.1f} s | {row['ingest_batches']:.0f} "
            f"| {row['ingest_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    return root_bench_main(
        argv, name="load", doc=__doc__ or "", quick_help="scale 4",
        full=FULL, quick=QUICK, measure=measure, render=render_markdown,
        extra_versions=lambda: {"postgresql": as_postgres("postgres", "--version").strip()})


if __name__ == "__main__":
    sys.exit(main())
