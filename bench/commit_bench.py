"""Commit latency and write throughput of a Strata compute beside plain PostgreSQL 15.

What a client waits for on every commit is the acknowledgement of its WAL by the page
server; this suite measures that wait, so a change of what "acknowledged" means (a local
fsync, an object-store write) shows up here. Everything runs as users run it: ``strata
up`` under a temporary ``$STRATA_HOME`` (objects where bench.objectstore says: a local
directory, or S3 with ``python -m bench --storage ...``), ``strata tenant create``,
``strata compute start``; the baseline is a plain cluster made by the same initdb into a
local directory and started with the same settings, both reached over a unix socket. A
second compute serves a tenant created with ``--durability local`` (acknowledged after a
fsync on the page server's disk, the store at most ``LOCAL_MAX_LAG`` behind), so both
durability modes are measured in the same run. Runs alternate between the systems; each
figure is the median (min-max) over repeats, with each compute/local ratio of the
medians. Needs root, FUSE and PostgreSQL 15.

Figures:
- Commit latency: 1 client, a pgbench script of one single-row INSERT per transaction
  (autocommit, so each transaction is one commit), N seconds. pgbench writes every
  transaction's latency to its ``--log``; per run the suite takes their mean, p50 and p99
  (ms), and the TPS pgbench printed. ``-r`` would give only per-statement averages, no
  percentiles. Each system first gets an untimed warm-up run.
- pgbench read-write (TPC-B-like) TPS, 4 clients, after ``pgbench -i`` and a CHECKPOINT.
- Cost per transaction, for both kinds of run, from counters read before and after each
  timed run and divided by the transactions pgbench processed: CPU time and context
  switches (voluntary, involuntary; /proc, summed over threads) of the compute's mount
  daemon and of the page server; WAL syncs and WAL sync time (``pg_stat_wal`` with
  ``track_wal_io_timing`` on, which the suite turns on in both systems) and WAL bytes;
  file bytes the page server ingested (``strata_ingest_bytes``) and bytes it wrote to the
  object store (``strata_upload_bytes``: log chunks, and layers of any flush meanwhile);
  ingest batches and log chunks created (``strata_ingest_batches``,
  ``strata_log_chunks_created``): how many batches one store write covers.

Run ``python -m bench.commit_bench [--quick] [--out bench/results/commit.json]``. A run
that fails stops and writes nothing. Nothing here asserts on time.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.harness import (
    JSON,
    TENANT,
    BenchError,
    Endpoint,
    LocalPostgres,
    Strata,
    as_postgres,
    interleaved,
    metric_total,
    pgbench_at,
    pgbench_tps,
    pgbench_transactions,
    process_usage,
    query_at,
    root_bench_main,
    summary,
    wal_stats,
)

LOCAL_PORT = 55320
SHARED_BUFFERS = "128MB"  # a compute's default, given to the baseline too
PROBE_TABLE = "CREATE TABLE commit_probe (id bigint GENERATED ALWAYS AS IDENTITY, v int)"
PROBE_SCRIPT = "INSERT INTO commit_probe (v) VALUES (1);\n"
WARM_UP_SECONDS = 2
LOCAL_ACK_TENANT = "localack"  # the tenant acknowledged after a local fsync
LOCAL_MAX_LAG = "5s"
STORE_ACK, LOCAL_ACK, BASELINE = "compute", "compute_local_ack", "local"
SYSTEMS = (STORE_ACK, LOCAL_ACK, BASELINE)


@dataclass(frozen=True)
class Settings:
    mode: str
    repeats: int
    commit_seconds: int  # per commit-latency run (1 client)
    rw_seconds: int  # per read-write run
    rw_clients: int
    rw_scale: int


Counters = Callable[[], dict[str, float]]  # a system's cumulative counters, read now


@dataclass(frozen=True)
class System:
    """One side of the comparison: where it listens and which counters it has."""

    endpoint: Endpoint
    counters: Counters


FULL = Settings("full", repeats=3, commit_seconds=20, rw_seconds=20, rw_clients=4, rw_scale=10)
QUICK = Settings("quick", repeats=1, commit_seconds=5, rw_seconds=5, rw_clients=4, rw_scale=2)


def compute_counters(at: Endpoint, daemon_pid: int, server_pid: int,
                     metrics_address: str) -> Counters:
    """The counters of a compute: its mount daemon, the page server, pg_stat_wal."""
    def read() -> dict[str, float]:
        counters = {f"daemon_{name}": value for name, value in process_usage(daemon_pid).items()}
        counters |= {f"server_{name}": value for name, value in process_usage(server_pid).items()}
        counters["ingested_bytes"] = metric_total(metrics_address, "strata_ingest_bytes_total")
        counters["uploaded_bytes"] = metric_total(metrics_address, "strata_upload_bytes_total")
        counters["batches"] = metric_total(metrics_address, "strata_ingest_batches_total")
        counters["chunks"] = metric_total(metrics_address, "strata_log_chunks_created_total")
        return counters | wal_stats(at)
    return read


def per_transaction(system: System, run: Callable[[], tuple[str, int]]) -> JSON:
    """``run`` (pgbench output and its transaction count) with the growth of every counter
    of ``system`` per transaction, and the TPS."""
    before = system.counters()
    output, transactions = run()
    after = system.counters()
    if transactions <= 0:
        raise BenchError("pgbench processed no transactions")
    costs = {name: (after[name] - before[name]) / transactions for name in after}
    return {"tps": pgbench_tps(output), "transactions": transactions, "per_txn": costs}


def commit_run(system: System, seconds: int) -> JSON:
    """One single-client run of the probe script: TPS, per-transaction latencies (ms) and
    costs."""
    with tempfile.TemporaryDirectory(prefix="strata-commit-bench-") as scratch:
        script = Path(scratch) / "commit.sql"
        script.write_text(PROBE_SCRIPT)

        def run() -> tuple[str, int]:
            output = pgbench_at(system.endpoint, "-n", "-c", "1", "-j", "1", "-T",
                                str(seconds), "-f", str(script), "--log",
                                f"--log-prefix={scratch}/txn")
            return output, pgbench_transactions(output)

        result = per_transaction(system, run)
        logs = list(Path(scratch).glob("txn.*"))
        if len(logs) != 1:
            raise BenchError(f"pgbench wrote {len(logs)} transaction logs, not one")
        # each line: client_id transaction_no time_us script_no epoch_s epoch_us
        latencies = [int(line.split()[2]) / 1000 for line in logs[0].read_text().splitlines()]
    if not latencies:
        raise BenchError("pgbench logged no transactions")
    return {**result, "mean_ms": statistics.fmean(latencies),
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99))}


def costs_summary(runs: list[JSON]) -> JSON:
    """Each per-transaction cost summarized over the runs of one system."""
    return {name: summary([run["per_txn"][name] for run in runs]) for name in runs[0]["per_txn"]}


def commit_latency(settings: Settings, systems: dict[str, System]) -> JSON:
    """Interleaved commit-latency runs; each measure (mean, p50, p99, TPS) summarized over
    the runs with its compute/local ratio, and the costs per commit."""
    for system in systems.values():
        query_at(system.endpoint, PROBE_TABLE)
        commit_run(system, WARM_UP_SECONDS)
    runs: dict[str, list[JSON]] = {name: [] for name in systems}

    def tps(name: str) -> float:
        runs[name].append(commit_run(systems[name], settings.commit_seconds))
        return float(runs[name][-1]["tps"])

    report = {"tps": with_ratios(interleaved(settings.repeats, {n: n for n in systems}, tps))}
    for figure in ("mean_ms", "p50_ms", "p99_ms"):
        report[figure] = with_ratios({name: summary([run[figure] for run in runs[name]])
                                      for name in systems})
    report["per_txn"] = {name: costs_summary(runs[name]) for name in systems}
    return report


def with_ratios(figures: dict[str, JSON]) -> JSON:
    """Figures of both computes and the baseline, with each compute/local ratio of the
    medians: ``ratio`` (store acknowledgement) and ``ratio_local_ack``."""
    baseline = figures[BASELINE]["median"]
    return {**figures, "ratio": figures[STORE_ACK]["median"] / baseline,
            "ratio_local_ack": figures[LOCAL_ACK]["median"] / baseline}


def read_write(settings: Settings, systems: dict[str, System]) -> JSON:
    """Interleaved pgbench read-write runs: TPS with its ratio, and the costs per
    transaction."""
    runs: dict[str, list[JSON]] = {name: [] for name in systems}

    def tps(name: str) -> float:
        def run() -> tuple[str, int]:
            output = pgbench_at(systems[name].endpoint, "-n", "-c", str(settings.rw_clients),
                                "-j", "2", "-T", str(settings.rw_seconds))
            return output, pgbench_transactions(output)
        runs[name].append(per_transaction(systems[name], run))
        return float(runs[name][-1]["tps"])

    report = with_ratios(interleaved(settings.repeats, {n: n for n in systems}, tps))
    report["per_txn"] = {name: costs_summary(runs[name]) for name in systems}
    return report


def measure(settings: Settings, root: Path) -> JSON:
    strata = Strata(root / "home")
    up = strata.up("commit")
    strata("tenant", "create", TENANT)
    strata("tenant", "create", LOCAL_ACK_TENANT, "--durability", "local", "--max-lag",
           LOCAL_MAX_LAG)
    started = strata("compute", "start", "main", "--shared-buffers", SHARED_BUFFERS)
    quick = strata("compute", "start", "main", "--tenant", LOCAL_ACK_TENANT,
                   "--shared-buffers", SHARED_BUFFERS)
    server_pid = int((root / "home" / "run" / "pageserver.pid").read_text())
    local = LocalPostgres(root, LOCAL_PORT)
    local.init()
    try:
        local.start(SHARED_BUFFERS, True)
        compute_at: Endpoint = (started["host"], started["port"])
        quick_at: Endpoint = (quick["host"], quick["port"])
        local_at: Endpoint = (str(local.socket_dir), local.port)
        systems = {
            STORE_ACK: System(compute_at, compute_counters(
                compute_at, started["pids"]["mount"], server_pid, up["metrics_address"])),
            LOCAL_ACK: System(quick_at, compute_counters(
                quick_at, quick["pids"]["mount"], server_pid, up["metrics_address"])),
            BASELINE: System(local_at, lambda: wal_stats(local_at))}
        for system in systems.values():
            query_at(system.endpoint, "ALTER SYSTEM SET track_wal_io_timing = on")
            query_at(system.endpoint, "SELECT pg_reload_conf()")
        print("commit latency ...", file=sys.stderr)
        report = {"commit": commit_latency(settings, systems)}
        print("pgbench read-write ...", file=sys.stderr)
        for system in systems.values():
            pgbench_at(system.endpoint, "-i", "-s", str(settings.rw_scale), "-q")
            query_at(system.endpoint, "CHECKPOINT")
        report["read_write"] = read_write(settings, systems)
        local.stop()
        return report
    finally:
        local.kill()


def render_markdown(report: JSON) -> str:
    figures, settings = report["figures"], report["settings"]
    commit, rw = figures["commit"], figures["read_write"]
    lines = [
        "# Commit latency and write throughput: compute (acknowledged by the store, or by "
        "a local fsync) vs local PostgreSQL 15",
        "",
        f"{report['finished_at']}, mode {settings['mode']}, on {report['host']['cpu_count']} "
        f"CPUs; median of {settings['repeats']} interleaved runs (min-max in brackets); "
        f"objects in {report.get('storage', 'a local directory')}; host load average "
        f"{report['host']['load_avg_1_5_15m'][1]:.1f} over the last 5 minutes of the run.",
        "",
        f"Commit latency: 1 client, one single-row INSERT per transaction (autocommit), "
        f"{settings['commit_seconds']} s per run; latencies per transaction from pgbench "
        f"`--log`. The local-ack compute's tenant has `--durability local --max-lag "
        f"{LOCAL_MAX_LAG}`.",
        "",
        "| figure | compute, store ack | compute, local ack | local | store ack/local "
        "| local ack/local |",
        "|---|---|---|---|---|---|",
    ]

    def row(label: str, figure: JSON, unit: str, digits: int) -> None:
        cells = [f"{figure[side]['median']:.{digits}f} {unit} [{figure[side]['min']:.{digits}f}"
                 f"-{figure[side]['max']:.{digits}f}]" for side in SYSTEMS]
        lines.append(f"| {label} | {' | '.join(cells)} | {figure['ratio']:.2f} | "
                     f"{figure['ratio_local_ack']:.2f} |")

    row("commit latency, mean", commit["mean_ms"], "ms", 3)
    row("commit latency, p50", commit["p50_ms"], "ms", 3)
    row("commit latency, p99", commit["p99_ms"], "ms", 3)
    row("commits per second (1 client)", commit["tps"], "tps", 0)
    row(f"pgbench read-write TPS, scale {settings['rw_scale']}, {settings['rw_clients']} "
        f"clients, {settings['rw_seconds']} s", rw, "tps", 0)
    lines += ["", *cost_table(commit["per_txn"], rw["per_txn"]), ""]
    return "\n".join(lines)


# (label, counter, scale to the unit shown, digits); WAL times are in ms in pg_stat_wal
COSTS = [
    ("mount daemon CPU, µs", "daemon_cpu_s", 1e6, 0),
    ("page server CPU, µs", "server_cpu_s", 1e6, 0),
    ("mount daemon context switches, voluntary", "daemon_voluntary_switches", 1, 1),
    ("mount daemon context switches, involuntary", "daemon_involuntary_switches", 1, 1),
    ("page server context switches, voluntary", "server_voluntary_switches", 1, 1),
    ("page server context switches, involuntary", "server_involuntary_switches", 1, 1),
    ("WAL syncs (pg_stat_wal)", "wal_sync", 1, 2),
    ("WAL sync time, µs (pg_stat_wal)", "wal_sync_time", 1e3, 0),
    ("WAL write time, µs (pg_stat_wal)", "wal_write_time", 1e3, 0),
    ("WAL bytes generated", "wal_bytes", 1, 0),
    ("file bytes shipped to the page server", "ingested_bytes", 1, 0),
    ("bytes written to the object store", "uploaded_bytes", 1, 0),
    ("ingest batches (group commit: several per log chunk)", "batches", 1, 2),
    ("log chunks created", "chunks", 1, 2),
]


def cost_table(commit: JSON, rw: JSON) -> list[str]:
    """Per-transaction costs, medians over the runs; '-' where a system has no such
    counter (the local baseline has no daemon or page server)."""
    lines = ["Cost per transaction (median over runs; counters before and after each run "
             "divided by its transactions):", "",
             "| per transaction | commit, store ack | commit, local ack | commit, local "
             "| read-write, store ack | read-write, local ack | read-write, local |",
             "|---|---|---|---|---|---|---|"]
    for label, key, scale, digits in COSTS:
        cells = [f"{costs[key]['median'] * scale:.{digits}f}" if key in costs else "-"
                 for costs in [commit[side] for side in SYSTEMS] + [rw[side] for side in SYSTEMS]]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    return root_bench_main(
        argv, name="commit", doc=__doc__ or "", quick_help="small sizes, one repeat",
        full=FULL, quick=QUICK, measure=measure, render=render_markdown,
        extra_versions=lambda: {"postgresql": as_postgres("postgres", "--version").strip()})


if __name__ == "__main__":
    sys.exit(main())
