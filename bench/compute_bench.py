"""PostgreSQL 15 on a Strata compute against the same PostgreSQL on local disk, side by side.

Everything runs as users run it: ``strata up`` under a temporary ``$STRATA_HOME``,
``strata tenant create`` (initdb with data checksums), ``strata compute start``; the
baseline is a plain cluster made by the same initdb into a local directory and started
with the very same command-line settings (port aside; both reached over a unix socket, as
computes listen on no TCP port). Runs alternate between the two systems, and each figure
is reported as the median (and spread) over repeats, with the compute/local ratio of the
medians. Needs root, FUSE and PostgreSQL 15, like a compute.

Figures:
- ``pgbench -i -s 20``: seconds, ratio; again with ``wal_level=minimal`` on both systems
  (``strata compute start --wal-level minimal``, rfcs/0024), and that compute time over
  the local time at the default ``wal_level``.
- pgbench read-write and read-only (``-S``), scale 10, 4 clients: TPS, ratio; the read-only
  run again with ``shared_buffers`` small enough that most reads leave PostgreSQL. Before
  read-only runs each system checkpoints and does one untimed read-only pass.
- A cold heap scan (``SELECT sum(abalance)`` over pgbench_accounts at scale
  ``scan_scale``: ``count(*)`` would be an index-only scan) with a 32 MB compute page
  cache, after a restart with an empty cache (the local baseline after dropping the OS
  page cache); the session's first query, which reads the catalog one page at a time, is
  run untimed before it: MB/s, the GetPages round trips and pages the page server served
  (pages per round trip), and from the mount daemon's counters how many of its requests
  were read-ahead, the most it had in flight at once, and how many reads the kernel sent
  it (and their average size).
- WAL bytes per transaction, and TPS, with full_page_writes on vs off (read-write run
  started right after a CHECKPOINT).
- Compute start time on a fresh branch: ``strata compute start`` to the first row.

Run ``python -m bench.compute_bench [--quick] [--out bench/results/compute.json]``. A run
that fails stops and writes nothing. Nothing here asserts on time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.harness import (
    JSON,
    TENANT,
    Endpoint,
    LocalPostgres,
    Strata,
    as_postgres,
    interleaved,
    pgbench_at,
    pgbench_tps,
    query_at,
    root_bench_main,
    summary,
    with_ratio,
)

LOCAL_PORT = 55300
MINIMAL_WAL = {"wal_level": "minimal", "max_wal_senders": "0"}


@dataclass(frozen=True)
class Settings:
    mode: str
    repeats: int
    seconds: int  # per pgbench TPS run
    clients: int
    tps_scale: int
    scan_scale: int
    load_scale: int
    shared_buffers: str
    small_shared_buffers: str
    cold_cache_mb: int
    start_samples: int
    read_only_repeats: int


FULL = Settings("full", repeats=3, seconds=20, clients=4, tps_scale=10, scan_scale=10,
                load_scale=20, shared_buffers="128MB", small_shared_buffers="16MB",
                cold_cache_mb=32, start_samples=5, read_only_repeats=3)
QUICK = Settings("quick", repeats=1, seconds=5, clients=4, tps_scale=2, scan_scale=10,
                 load_scale=4, shared_buffers="128MB", small_shared_buffers="16MB",
                 cold_cache_mb=32, start_samples=2, read_only_repeats=3)


@dataclass
class System:
    """One side of the comparison: how to (re)start it and where it listens."""

    name: str
    restart: Callable[[str, bool], None]  # (shared_buffers, full_page_writes)
    endpoint: Callable[[], Endpoint]
    make_cold: Callable[[], None]


def server_counters(metrics_address: str) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10).read()
    counters = {}
    for line in body.decode().splitlines():
        if line.startswith('strata_rpc_seconds_count{method="PageService/GetPages.request"}'):
            counters["getpages_requests"] = float(line.split()[-1])
        elif line.startswith("strata_pages_served_total"):
            counters["pages_served"] = float(line.split()[-1])
    return counters


COLD_SCAN = "SELECT sum(abalance) FROM pgbench_accounts"  # a heap scan, never index-only


def cold_scan_s(at: Endpoint) -> float:
    """Seconds of ``COLD_SCAN`` in a new session, after an untimed first query that reads
    the catalog pages the session needs (one round trip each on a cold compute)."""
    with psycopg.connect(host=at[0], port=at[1], user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM pgbench_branches").fetchone()
        began = time.perf_counter()
        conn.execute(COLD_SCAN).fetchone()
        return time.perf_counter() - began


def drop_os_cache() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def measure(settings: Settings, root: Path) -> JSON:
    strata = Strata(root / "home")
    up = strata.up("compute")
    strata("tenant", "create", TENANT)
    local = LocalPostgres(root, LOCAL_PORT)
    local.init()
    try:
        return measure_systems(settings, root, strata, up, local)
    finally:
        local.kill()


def measure_systems(settings: Settings, root: Path, strata: Strata, up: JSON,
                    local: LocalPostgres) -> JSON:
    compute_at: list[Endpoint] = []

    def restart_compute(shared_buffers: str, full_page_writes: bool,
                        cache_mb: int = 256, wal_level: str = "replica") -> None:
        strata("compute", "stop", "main")
        started = strata("compute", "start", "main", "--shared-buffers", shared_buffers,
                         "--full-page-writes", "on" if full_page_writes else "off",
                         "--cache-mb", str(cache_mb), "--wal-level", wal_level)
        compute_at[:] = [(started["host"], started["port"])]

    def restart_local(shared_buffers: str, full_page_writes: bool) -> None:
        local.stop()
        local.start(shared_buffers, full_page_writes)

    started = strata("compute", "start", "main")
    compute_at[:] = [(started["host"], started["port"])]
    compute = System("compute", restart_compute, lambda: compute_at[0], lambda: None)
    baseline = System("local", restart_local, lambda: (str(local.socket_dir), local.port),
                      drop_os_cache)
    systems = [compute, baseline]
    named = {system.name: system for system in systems}
    for system in systems:
        system.restart(settings.shared_buffers, True)
    report: JSON = {}

    def load_time(system: System) -> float:
        began = time.perf_counter()
        pgbench_at(system.endpoint(), "-i", "-s", str(settings.load_scale), "-q")
        return time.perf_counter() - began

    print("pgbench -i ...", file=sys.stderr)
    report["load"] = with_ratio(interleaved(settings.repeats, named, load_time))
    print("pgbench -i, wal_level minimal ...", file=sys.stderr)
    restart_compute(settings.shared_buffers, True, wal_level="minimal")
    local.stop()
    local.start(settings.shared_buffers, True, MINIMAL_WAL)
    report["load_minimal"] = with_ratio(interleaved(settings.repeats, named, load_time))
    report["load_minimal"]["ratio_to_local_replica"] = (
        report["load_minimal"]["compute"]["median"] / report["load"]["local"]["median"])
    for system in systems:
        system.restart(settings.shared_buffers, True)
    for system in systems:
        pgbench_at(system.endpoint(), "-i", "-s", str(settings.tps_scale), "-q")
        query_at(system.endpoint(), "CHECKPOINT")

    def tps_run(*extra: str) -> Callable[[System], float]:
        return lambda system: pgbench_tps(pgbench_at(
            system.endpoint(), "-c", str(settings.clients), "-j", "2", "-T",
            str(settings.seconds), "-n", *extra))

    def settle(system: System) -> None:
        """After writes: a checkpoint and an untimed read-only pass on each system, so
        hint-bit writes and the page server's flush/compaction of the write run do not
        land in the read-only figures."""
        query_at(system.endpoint(), "CHECKPOINT")
        tps_run("-S")(system)

    print("pgbench read-write / read-only ...", file=sys.stderr)
    report["read_write"] = with_ratio(interleaved(settings.repeats, named, tps_run()))
    for system in systems:
        settle(system)
    report["read_only"] = with_ratio(interleaved(settings.read_only_repeats, named,
                                                 tps_run("-S")))
    for system in systems:
        system.restart(settings.small_shared_buffers, True)
        settle(system)
    report["read_only_small_buffers"] = with_ratio(
        interleaved(settings.repeats, named, tps_run("-S")))

    print("full_page_writes on/off ...", file=sys.stderr)
    report["full_page_writes"] = {}
    for fpw in (True, False):
        compute.restart(settings.shared_buffers, fpw)
        samples: dict[str, list[float]] = {"tps": [], "wal_bytes_per_txn": []}
        for _ in range(settings.repeats):
            query_at(compute.endpoint(), "CHECKPOINT")
            before = query_at(compute.endpoint(), "SELECT pg_current_wal_lsn()::text")
            output = pgbench_at(compute.endpoint(), "-c", str(settings.clients), "-j", "2",
                                "-T", str(settings.seconds), "-n")
            after = query_at(compute.endpoint(), "SELECT pg_current_wal_lsn()::text")
            wal = query_at(compute.endpoint(), f"SELECT pg_wal_lsn_diff('{after}', '{before}')")
            transactions = int(re.search(r"transactions actually processed: (\d+)",
                                         output).group(1))  # type: ignore[union-attr]
            samples["tps"].append(pgbench_tps(output))
            samples["wal_bytes_per_txn"].append(float(wal) / transactions)
        report["full_page_writes"]["on" if fpw else "off"] = {
            name: summary(values) for name, values in samples.items()}

    print("cold scan ...", file=sys.stderr)
    if settings.scan_scale != settings.tps_scale:
        for system in systems:
            pgbench_at(system.endpoint(), "-i", "-s", str(settings.scan_scale), "-q")
            query_at(system.endpoint(), "CHECKPOINT")
    table_bytes = int(query_at(compute.endpoint(), "SELECT pg_relation_size('pgbench_accounts')"))
    cache_mb = settings.cold_cache_mb
    cold: dict[str, list[float]] = {"compute": [], "local": [], "round_trips": [],
                                    "pages_served": [], "max_in_flight": [],
                                    "read_ahead_requests": [], "fuse_reads": [],
                                    "fuse_read_kb": []}
    stats_file = root / "home" / "computes" / TENANT / "main" / "run" / "stats.json"
    for _ in range(settings.repeats):
        strata("compute", "stop", "main")
        shutil.rmtree(root / "home" / "computes" / TENANT / "main" / "cache",
                      ignore_errors=True)
        restart_compute(settings.shared_buffers, True, cache_mb)
        before = server_counters(up["metrics_address"])
        cold["compute"].append(table_bytes / cold_scan_s(compute.endpoint()) / 1e6)
        after = server_counters(up["metrics_address"])
        cold["round_trips"].append(after["getpages_requests"] - before["getpages_requests"])
        cold["pages_served"].append(after["pages_served"] - before["pages_served"])
        strata("compute", "stop", "main")  # the mount publishes its counters on the way out
        published = json.loads(stats_file.read_text())
        fetches = published["get_pages"]
        cold["max_in_flight"].append(fetches["max_in_flight"])
        cold["read_ahead_requests"].append(fetches["read_ahead_requests"])
        cold["fuse_reads"].append(published["reads"]["count"])
        cold["fuse_read_kb"].append(published["reads"]["bytes"]
                                    / max(published["reads"]["count"], 1) / 1024)
        local.stop()
        drop_os_cache()
        local.start(settings.shared_buffers, True)
        cold["local"].append(table_bytes / cold_scan_s(baseline.endpoint()) / 1e6)
    report["cold_scan"] = {
        "table_bytes": table_bytes, "cache_mb": cache_mb, "query": COLD_SCAN,
        "compute_mb_s": summary(cold["compute"]), "local_mb_s": summary(cold["local"]),
        "ratio": statistics.median(cold["compute"]) / statistics.median(cold["local"]),
        "round_trips": summary(cold["round_trips"]),
        "pages_served": summary(cold["pages_served"]),
        "max_in_flight": summary(cold["max_in_flight"]),
        "read_ahead_requests": summary(cold["read_ahead_requests"]),
        "fuse_reads": summary(cold["fuse_reads"]),
        "fuse_read_kb": summary(cold["fuse_read_kb"])}

    print("compute start ...", file=sys.stderr)
    starts = []
    for sample in range(settings.start_samples):
        name = f"fresh-{sample}"
        strata("branch", "create", name)
        began = time.perf_counter()
        started = strata("compute", "start", name)
        query_at((started["host"], started["port"]), "SELECT count(*) FROM pgbench_branches")
        starts.append(time.perf_counter() - began)
        strata("compute", "stop", name)
    report["compute_start_s"] = summary(starts)
    local.stop()
    return report


def render_markdown(report: JSON) -> str:
    figures = report["figures"]
    settings = report["settings"]
    lines = [
        "# Compute vs local PostgreSQL 15",
        "",
        f"{report['finished_at']}, mode {settings['mode']}, on {report['host']['cpu_count']} CPUs; "
        f"median of {settings['repeats']} interleaved runs (min-max in brackets); "
        f"pgbench {settings['clients']} clients, {settings['seconds']} s per run; objects in "
        f"{report.get('storage', 'a local directory')}.",
        "",
        "| figure | compute | local | compute/local | goal |",
        "|---|---|---|---|---|",
    ]

    def row(label: str, key: str, unit: str, goal: str) -> None:
        figure = figures[key]
        cells = [f"{figure[side]['median']:.1f} {unit} [{figure[side]['min']:.1f}-"
                 f"{figure[side]['max']:.1f}]" for side in ("compute", "local")]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {figure['ratio']:.2f} | {goal} |")

    row(f"pgbench -i -s {settings['load_scale']}", "load", "s", "<= 2.5")
    if "load_minimal" in figures:  # reports from before rfcs/0024 lack it
        row(f"pgbench -i -s {settings['load_scale']}, wal_level minimal on both",
            "load_minimal", "s", "-")
    row(f"read-write TPS, scale {settings['tps_scale']}", "read_write", "tps", ">= 0.6")
    row(f"read-only (-S) TPS, scale {settings['tps_scale']}, "
        f"{settings.get('read_only_repeats', settings['repeats'])} runs", "read_only", "tps",
        ">= 0.9")
    row(f"read-only, shared_buffers {settings['small_shared_buffers']}",
        "read_only_small_buffers", "tps", "-")
    cold = figures["cold_scan"]
    lines += [
        f"| cold heap scan of {cold['table_bytes'] / 1e6:.0f} MB, cache {cold['cache_mb']} MB | "
        f"{cold['compute_mb_s']['median']:.0f} MB/s | {cold['local_mb_s']['median']:.0f} MB/s "
        f"| {cold['ratio']:.2f} | >= 400 MB/s |",
        "",
        f"Cold scan: {cold['round_trips']['median']:.0f} GetPages round trips for "
        f"{cold['pages_served']['median']:.0f} pages served "
        f"({cold['pages_served']['median'] / max(cold['round_trips']['median'], 1):.0f} "
        "pages per round trip; "
        f"{cold['read_ahead_requests']['median']:.0f} of the daemon's requests were "
        f"read-ahead, at most {cold['max_in_flight']['median']:.0f} in flight"
        + (f"; {cold['fuse_reads']['median']:.0f} reads from the kernel, "
           f"{cold['fuse_read_kb']['median']:.0f} KB each on average)."
           if "fuse_reads" in cold else ")."),
        "",
        "| full_page_writes | TPS | WAL bytes per transaction |",
        "|---|---|---|",
    ]
    for side in ("on", "off"):
        fpw = figures["full_page_writes"][side]
        lines.append(f"| {side} | {fpw['tps']['median']:.0f} | "
                     f"{fpw['wal_bytes_per_txn']['median']:.0f} |")
    start = figures["compute_start_s"]
    lines += ["", f"Compute start on a fresh branch, `strata compute start` to the first row: "
              f"median {start['median']:.2f} s (min {start['min']:.2f}, max {start['max']:.2f}, "
              f"{len(start['samples'])} samples).", ""]
    if "load_minimal" in figures:
        ratio = figures["load_minimal"]["ratio_to_local_replica"]
        lines += [f"`pgbench -i` on a compute at `wal_level=minimal` over local PostgreSQL at "
                  f"the default `replica`: {ratio:.2f}.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return root_bench_main(
        argv, name="compute", doc=__doc__ or "", quick_help="small sizes, one repeat",
        full=FULL, quick=QUICK, measure=measure, render=render_markdown,
        extra_versions=lambda: {"postgresql": as_postgres("postgres", "--version").strip()})


if __name__ == "__main__":
    sys.exit(main())
