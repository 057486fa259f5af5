"""Storage with branches: branch creation against database size, bytes stored against the
number of branches, and what deleting the branches and GC give back.

Everything runs as users run it, under a temporary ``$STRATA_HOME``: ``strata up``,
``strata tenant create``, ``strata compute start``; data is written by real PostgreSQL 15
through the compute. Objects go to a local directory, or to S3 with ``--storage`` on
``python -m bench`` (see bench.objectstore).

Figures:
- Branch creation against database size: one tenant per size (~10 MB, ~100 MB, ~1 GB as
  ``pg_database_size``; quick mode: ~10 and ~50 MB), each filled with a table of
  pseudo-random text through its compute, then compacted. Interleaved across sizes, each
  repeat times the ``CreateBranch`` RPC (a gRPC client in this process), ``strata branch
  create`` end to end (a new process), and a fork made usable: the RPC, ``strata compute
  start`` on the new branch and its first row. Every branch is deleted again, untimed.
- Storage against number of branches: on the ~100 MB tenant (quick: ~50 MB), branches
  are added one at a time, each given a compute that rewrites a contiguous 1 % of the
  table (an agent's migration) and stops; after each, with memtables flushed and
  compacted, the tenant's owned layer bytes, against the sum of its branches' logical
  sizes (what full copies would take).
- GC reclaim: main is then rewritten entirely, so its old page versions are needed
  only by the branches (GC keeps them); the branches are deleted (their own layers go
  at once) and ``strata gc`` collects main's old versions. Owned bytes and bytes in the
  object store at each stage, and how long GC took. The page server runs with a 1 s
  PITR window so that GC can act within the run.

Run ``python -m bench.storage_bench [--quick] [--out bench/results/storage.json]`` as
root. A failed step voids the run: nothing is reported. Nothing here asserts on time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from bench.harness import JSON, BenchError, Strata, root_bench_main, summary, timed
from common.client import StrataClient
from compute.node import ComputeNode
from strata.local.home import Home

MB = 1_000_000
PITR_WINDOW_S = 1  # history kept readable: short, so GC can act within the run
ROW_PAYLOAD = "md5(g::text) || md5((g + 1)::text) || md5((g + 2)::text) || md5((g + 3)::text)"


@dataclass(frozen=True)
class Settings:
    mode: str
    sizes_mb: tuple[int, ...]  # target pg_database_size of each tenant
    create_repeats: int  # per size and way of creating
    fork_repeats: int  # forks made usable (compute start) per size
    branches: int  # for storage against number of branches
    base_mb: int  # the size whose tenant gets those branches


FULL = Settings("full", sizes_mb=(10, 100, 1000), create_repeats=10, fork_repeats=3,
                branches=16, base_mb=100)
QUICK = Settings("quick", sizes_mb=(10, 50), create_repeats=3, fork_repeats=1,
                 branches=3, base_mb=50)


def tenant_name(size_mb: int) -> str:
    return f"db{size_mb}mb"


def connect(started: JSON) -> psycopg.Connection[Any]:
    """A connection to a compute ``strata compute start --json`` reported."""
    return psycopg.connect(host=started["host"], port=started["port"], user="postgres",
                           dbname="postgres", autocommit=True, connect_timeout=120)


def fill(strata: Strata, tenant: str, target_mb: int) -> JSON:
    """Grow the tenant's main database to about ``target_mb`` MB of pg_database_size."""
    started = strata("compute", "start", "main", "--tenant", tenant)
    began = time.perf_counter()
    with connect(started) as conn:
        conn.execute("CREATE TABLE filler(id bigint PRIMARY KEY, payload text NOT NULL)")
        rows = 0
        while (size := _database_size(conn)) < target_mb * MB:
            chunk = max(1000, min(500_000, int((target_mb * MB - size) / 230)))
            conn.execute(f"INSERT INTO filler SELECT g, {ROW_PAYLOAD} "
                         f"FROM generate_series({rows + 1}, {rows + chunk}) g")
            rows += chunk
        conn.execute("ANALYZE filler")  # as autovacuum would: forks then plan index scans
        conn.execute("CHECKPOINT")
        size = _database_size(conn)
    load_s = time.perf_counter() - began
    strata("compute", "stop", "main", "--tenant", tenant)
    strata("compact", "--tenant", tenant)
    return {"rows": rows, "database_bytes": size, "load_s": load_s}


def _database_size(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_database_size('postgres')").fetchone()
    if row is None:
        raise BenchError("pg_database_size returned nothing")
    return int(row[0])


def branch_creation(strata: Strata, client: StrataClient, settings: Settings) -> JSON:
    """Per size: CreateBranch RPC, ``strata branch create`` and a fork made usable."""
    samples: dict[int, dict[str, list[float]]] = {
        size: {"rpc_s": [], "cli_s": [], "fork_to_first_row_s": [], "fork_mount_s": [],
               "fork_postgres_s": []} for size in settings.sizes_mb}
    for repeat in range(settings.create_repeats):
        order = settings.sizes_mb if repeat % 2 == 0 else tuple(reversed(settings.sizes_mb))
        for size in order:
            tenant = tenant_name(size)
            samples[size]["rpc_s"].append(timed(partial(client.create_branch, tenant,
                                                        "timed-rpc")))
            client.delete_branch(tenant, "timed-rpc")
            samples[size]["cli_s"].append(timed(partial(strata, "branch", "create",
                                                        "timed-cli", "--tenant", tenant)))
            client.delete_branch(tenant, "timed-cli")
            if repeat < settings.fork_repeats:
                fork = fork_until_first_row(strata, client, tenant)
                for name, key in (("fork_to_first_row_s", "total_s"),
                                  ("fork_mount_s", "mount_s"),
                                  ("fork_postgres_s", "postgres_s")):
                    samples[size][name].append(fork[key])
    return {str(size): {name: summary(values) for name, values in kinds.items()}
            for size, kinds in samples.items()}


def fork_until_first_row(strata: Strata, client: StrataClient, tenant: str) -> JSON:
    """Seconds from the CreateBranch call to a row read from the new branch's compute,
    and the compute start's phases (mount daemon ready, PostgreSQL accepting)."""
    began = time.perf_counter()
    client.create_branch(tenant, "timed-fork")
    started = strata("compute", "start", "timed-fork", "--tenant", tenant)
    with connect(started) as conn:
        row = conn.execute("SELECT count(*) FROM filler WHERE id <= 10").fetchone()
    seconds = time.perf_counter() - began
    if row != (10,):
        raise BenchError(f"the fork of {tenant} read {row}, not 10 rows")
    node = ComputeNode.load(strata.home / "computes" / tenant / "timed-fork")
    if node is None or not node.start_timings:
        raise BenchError("the fork's compute recorded no start timings")
    strata("compute", "stop", "timed-fork", "--tenant", tenant)
    strata("branch", "delete", "timed-fork", "--tenant", tenant)  # its compute's files too
    return {"total_s": seconds, **node.start_timings}


def settled(strata: Strata, tenant: str) -> JSON:
    """The tenant's owned and logical bytes once memtables are flushed and compacted, and
    every byte in the object store."""
    strata("compact", "--tenant", tenant)
    shown = strata("tenant", "show", tenant)
    return {"owned_bytes": shown["owned_bytes"], "logical_bytes": shown["logical_bytes"],
            "store_bytes": strata.stored_bytes()}


def migrate(strata: Strata, tenant: str, branch: str, index: int, rows: int) -> None:
    """An agent's change on ``branch``: rewrite a contiguous 1 % of the table."""
    started = strata("compute", "start", branch, "--tenant", tenant)
    span = max(1, rows // 100)
    first = (index * span) % max(1, rows - span) + 1
    with connect(started) as conn:
        conn.execute(f"UPDATE filler SET payload = md5(random()::text) || payload "
                     f"WHERE id BETWEEN {first} AND {first + span - 1}")
        conn.execute("CHECKPOINT")
    strata("compute", "stop", branch, "--tenant", tenant)


def rewrite_main(strata: Strata, tenant: str) -> None:
    """Rewrite every row of main: its old page versions are then needed only by the
    branches forked before."""
    started = strata("compute", "start", "main", "--tenant", tenant)
    with connect(started) as conn:
        conn.execute("UPDATE filler SET payload = md5(random()::text) || payload")
        conn.execute("VACUUM filler")
        conn.execute("CHECKPOINT")
    strata("compute", "stop", "main", "--tenant", tenant)


def branches_and_gc(strata: Strata, settings: Settings, base_rows: int) -> JSON:
    tenant = tenant_name(settings.base_mb)
    steps = [{"branches": 0, **settled(strata, tenant)}]
    for index in range(1, settings.branches + 1):
        strata("branch", "create", f"agent-{index}", "--tenant", tenant)
        migrate(strata, tenant, f"agent-{index}", index, base_rows)
        steps.append({"branches": index, **settled(strata, tenant)})
        print(f"  {index} branches: {steps[-1]['owned_bytes'] / MB:.1f} MB owned",
              file=sys.stderr)
    rewrite_main(strata, tenant)
    strata("gc", "--tenant", tenant)  # collects nothing the branches still see
    pinned = settled(strata, tenant)
    for index in range(1, settings.branches + 1):
        strata("branch", "delete", f"agent-{index}", "--tenant", tenant)
    deleted = settled(strata, tenant)
    time.sleep(PITR_WINDOW_S)  # main's old versions are now past the PITR window
    began = time.perf_counter()
    collected = strata("gc", "--tenant", tenant)
    gc_s = time.perf_counter() - began
    after_gc = settled(strata, tenant)
    return {"steps": steps, "main_rewritten": pinned, "after_delete": deleted,
            "after_gc": after_gc, "gc_s": gc_s, "gc_reported": collected}


def measure(settings: Settings, root: Path) -> JSON:
    strata = Strata(root / "home")
    strata.up("storage", "--pitr-window", f"{PITR_WINDOW_S}s")
    home = Home(strata.home)
    client = StrataClient(home.server_address(), home.admin_token(), timeout_s=600)
    try:
        tenants = {}
        for size in settings.sizes_mb:
            print(f"tenant of ~{size} MB ...", file=sys.stderr)
            strata("tenant", "create", tenant_name(size))
            tenants[str(size)] = fill(strata, tenant_name(size), size)
        print("branch creation ...", file=sys.stderr)
        creation = branch_creation(strata, client, settings)
        for size in settings.sizes_mb:  # the object store then holds the base tenant only
            if size != settings.base_mb:
                strata("tenant", "delete", tenant_name(size), "--yes")
        print("branches and GC ...", file=sys.stderr)
        storage = branches_and_gc(strata, settings, tenants[str(settings.base_mb)]["rows"])
    finally:
        client.close()
    return {"tenants": tenants, "branch_creation": creation, "branches": storage}


def render_markdown(report: JSON) -> str:
    figures, settings = report["figures"], report["settings"]
    lines = [
        "# Storage with branches: creation against size, bytes against branches, GC",
        "",
        f"{report['finished_at']}, mode {settings['mode']}, on {report['host']['cpu_count']} "
        f"CPUs; objects in {report.get('storage', 'a local directory')}.",
        "",
        "| database (pg_database_size) | CreateBranch RPC median ms | p90 | `strata branch "
        "create` median ms | fork to first row median s | of which mount daemon | "
        "PostgreSQL start |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for size, made in figures["branch_creation"].items():
        tenant = figures["tenants"][size]
        lines.append(
            f"| {tenant['database_bytes'] / MB:,.0f} MB ({tenant['rows']:,} rows, loaded in "
            f"{tenant['load_s']:.0f} s) | {made['rpc_s']['median'] * 1000:.1f} | "
            f"{made['rpc_s']['p90'] * 1000:.1f} | {made['cli_s']['median'] * 1000:.0f} | "
            f"{made['fork_to_first_row_s']['median']:.2f} | "
            f"{made['fork_mount_s']['median']:.2f} | {made['fork_postgres_s']['median']:.2f} |")
    store = figures["branches"]
    base = store["steps"][0]
    lines += [
        "",
        f"Branches of the ~{settings['base_mb']} MB tenant, each with a contiguous 1 % of "
        "its table rewritten by PostgreSQL:",
        "",
        "| branches | owned layers MB | x base | logical size of all branches MB | object "
        "store MB |",
        "|--:|--:|--:|--:|--:|",
    ]
    for step in store["steps"]:
        lines.append(f"| {step['branches']} | {step['owned_bytes'] / MB:.1f} | "
                     f"{step['owned_bytes'] / base['owned_bytes']:.3f} | "
                     f"{step['logical_bytes'] / MB:.1f} | {step['store_bytes'] / MB:.1f} |")
    last = store["steps"][-1]
    lines += [
        "",
        "| stage | owned layers MB | object store MB |",
        "|---|--:|--:|",
    ]
    for label, stage in ((f"{last['branches']} branches", last),
                         ("main rewritten, GC run (the branches pin its old versions)",
                          store["main_rewritten"]),
                         ("branches deleted", store["after_delete"]),
                         ("`strata gc`", store["after_gc"])):
        lines.append(f"| {label} | {stage['owned_bytes'] / MB:.1f} | "
                     f"{stage['store_bytes'] / MB:.1f} |")
    freed = store["after_delete"]["owned_bytes"] - store["after_gc"]["owned_bytes"]
    lines += [
        "",
        f"GC took {store['gc_s']:.2f} s and reported "
        f"{store['gc_reported']['layers_removed']} layers, "
        f"{store['gc_reported']['bytes_removed'] / MB:.1f} MB removed "
        f"({freed / MB:.1f} MB less owned).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return root_bench_main(argv, name="storage", doc=__doc__ or "",
                           quick_help="sizes up to ~50 MB, 3 branches", full=FULL,
                           quick=QUICK, measure=measure, render=render_markdown)


if __name__ == "__main__":
    sys.exit(main())
