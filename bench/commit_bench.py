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

Run ``python -m bench.commit_bench [--quick] [--out bench/results/commit.json]``. A run
that fails stops and writes nothing. Nothing here asserts on time.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Sequence
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
    pgbench_at,
    pgbench_tps,
    query_at,
    root_bench_main,
    summary,
)

LOCAL_PORT = 55320
LOCAL_ACK_TENANT = "localack"  # the tenant acknowledged after a local fsync
LOCAL_MAX_LAG = "5s"
STORE_ACK, LOCAL_ACK, BASELINE = "compute", "compute_local_ack", "local"
SHARED_BUFFERS = "128MB"  # a compute's default, given to the baseline too
PROBE_TABLE = "CREATE TABLE commit_probe (id bigint GENERATED ALWAYS AS IDENTITY, v int)"
PROBE_SCRIPT = "INSERT INTO commit_probe (v) VALUES (1);\n"
WARM_UP_SECONDS = 2


@dataclass(frozen=True)
class Settings:
    mode: str
    repeats: int
    commit_seconds: int  # per commit-latency run (1 client)
    rw_seconds: int  # per read-write run
    rw_clients: int
    rw_scale: int


FULL = Settings("full", repeats=3, commit_seconds=20, rw_seconds=20, rw_clients=4, rw_scale=10)
QUICK = Settings("quick", repeats=1, commit_seconds=5, rw_seconds=5, rw_clients=4, rw_scale=2)


def commit_run(at: Endpoint, seconds: int) -> JSON:
    """One single-client run of the probe script: TPS and per-transaction latencies (ms)."""
    with tempfile.TemporaryDirectory(prefix="strata-commit-bench-") as scratch:
        script = Path(scratch) / "commit.sql"
        script.write_text(PROBE_SCRIPT)
        output = pgbench_at(at, "-n", "-c", "1", "-j", "1", "-T", str(seconds), "-f",
                            str(script), "--log", f"--log-prefix={scratch}/txn")
        logs = list(Path(scratch).glob("txn.*"))
        if len(logs) != 1:
            raise BenchError(f"pgbench wrote {len(logs)} transaction logs, not one")
        # each line: client_id transaction_no time_us script_no epoch_s epoch_us
        latencies = [int(line.split()[2]) / 1000 for line in logs[0].read_text().splitlines()]
    if not latencies:
        raise BenchError("pgbench logged no transactions")
    return {"tps": pgbench_tps(output), "mean_ms": statistics.fmean(latencies),
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)), "transactions": len(latencies)}


def commit_latency(settings: Settings, systems: dict[str, Endpoint]) -> JSON:
    """Interleaved commit-latency runs; each measure (mean, p50, p99, TPS) summarized over
    the runs with its compute/local ratio."""
    for at in systems.values():
        query_at(at, PROBE_TABLE)
        commit_run(at, WARM_UP_SECONDS)
    runs: dict[str, list[JSON]] = {name: [] for name in systems}

    def tps(name: str) -> float:
        runs[name].append(commit_run(systems[name], settings.commit_seconds))
        return float(runs[name][-1]["tps"])

    report = {"tps": with_ratios(interleaved(settings.repeats, {n: n for n in systems}, tps))}
    for figure in ("mean_ms", "p50_ms", "p99_ms"):
        report[figure] = with_ratios({name: summary([run[figure] for run in runs[name]])
                                      for name in systems})
    return report


def with_ratios(figures: dict[str, JSON]) -> JSON:
    """Figures of both computes and the baseline, with each compute/local ratio of the
    medians: ``ratio`` (store acknowledgement) and ``ratio_local_ack``."""
    baseline = figures[BASELINE]["median"]
    return {**figures, "ratio": figures[STORE_ACK]["median"] / baseline,
            "ratio_local_ack": figures[LOCAL_ACK]["median"] / baseline}


def measure(settings: Settings, root: Path) -> JSON:
    strata = Strata(root / "home")
    strata.up("commit")
    strata("tenant", "create", TENANT)
    strata("tenant", "create", LOCAL_ACK_TENANT, "--durability", "local", "--max-lag",
           LOCAL_MAX_LAG)
    started = strata("compute", "start", "main", "--shared-buffers", SHARED_BUFFERS)
    quick = strata("compute", "start", "main", "--tenant", LOCAL_ACK_TENANT,
                   "--shared-buffers", SHARED_BUFFERS)
    local = LocalPostgres(root, LOCAL_PORT)
    local.init()
    try:
        local.start(SHARED_BUFFERS, True)
        systems: dict[str, Endpoint] = {STORE_ACK: (started["host"], started["port"]),
                                        LOCAL_ACK: (quick["host"], quick["port"]),
                                        BASELINE: (str(local.socket_dir), local.port)}
        print("commit latency ...", file=sys.stderr)
        report = {"commit": commit_latency(settings, systems)}
        print("pgbench read-write ...", file=sys.stderr)
        for at in systems.values():
            pgbench_at(at, "-i", "-s", str(settings.rw_scale), "-q")
            query_at(at, "CHECKPOINT")
        report["read_write"] = with_ratios(interleaved(
            settings.repeats, systems, lambda at: pgbench_tps(pgbench_at(
                at, "-n", "-c", str(settings.rw_clients), "-j", "2", "-T",
                str(settings.rw_seconds)))))
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
                 f"-{figure[side]['max']:.{digits}f}]" for side in (STORE_ACK, LOCAL_ACK,
                                                                   BASELINE)]
        lines.append(f"| {label} | {' | '.join(cells)} | {figure['ratio']:.2f} | "
                     f"{figure['ratio_local_ack']:.2f} |")

    row("commit latency, mean", commit["mean_ms"], "ms", 3)
    row("commit latency, p50", commit["p50_ms"], "ms", 3)
    row("commit latency, p99", commit["p99_ms"], "ms", 3)
    row("commits per second (1 client)", commit["tps"], "tps", 0)
    row(f"pgbench read-write TPS, scale {settings['rw_scale']}, {settings['rw_clients']} "
        f"clients, {settings['rw_seconds']} s", rw, "tps", 0)
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return root_bench_main(
        argv, name="commit", doc=__doc__ or "", quick_help="small sizes, one repeat",
        full=FULL, quick=QUICK, measure=measure, render=render_markdown,
        extra_versions=lambda: {"postgresql": as_postgres("postgres", "--version").strip()})


if __name__ == "__main__":
    sys.exit(main())
