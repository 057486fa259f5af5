"""Storage footprint: what history, compaction, forks and the layer cache cost in bytes.

Everything but the last figure runs as users run it, under a temporary ``$STRATA_HOME``
(``strata up``, ``strata compute start``, real PostgreSQL 15); objects go to a local
directory, or to S3 with ``--storage`` on ``python -m bench`` (see bench.objectstore).
Memtables are flushed by restarting the page server (``strata down`` flushes them), so
"owned" is always layer bytes the object store holds for the branch. Until the
compaction figure the page server runs with compaction held (its thresholds out of
reach, through ``STRATA_PAGESERVER_*``), so that "before" is what was ingested.

Figures (issue 16's targets):
- history per transaction: pgbench with ``full_page_writes=off`` on main (default
  24 h window): owned bytes added per transaction over WAL bytes PostgreSQL wrote per
  transaction (``pg_current_wal_lsn`` before and after).
- compaction inside the window: main's owned bytes after the page server restarts with
  its default thresholds (background compaction) and ``strata compact``, over before.
- a fork updating 10 % of the rows spread over a table (every tenth id), with
  ``full_page_writes`` on and off: the fork's owned bytes after compaction over the
  table's size with its index; again after ``strata compact --force``, which writes
  images wherever deltas are stacked (on a fork, images of what it changed only).
- logical size: main's logical size as ``strata branch show`` gives it over what
  PostgreSQL counts (every database's ``pg_database_size`` and the shared catalogs).
- on disk over object store bytes: the page server's state directory with the local
  objects (hard links counted once), its layer cache alone, and all of ``$STRATA_HOME``
  (computes stopped, as ``strata down`` leaves them), against the bytes of every object
  stored; the home's figure is broken out into the page server, the computes' page
  caches (what a stop kept, ``--cache-keep-mb``) and the computes' other files (logs,
  settings).
- after GC past a short window (the page server restarted with a 1 s window, a fresh
  tenant loaded, compacted and collected): object store bytes over ``pg_database_size``.
- forks each rewriting a contiguous 1 %: in-process on synthetic pages (bench.synthetic),
  owned bytes of the tenant after the forks and compaction (as ``strata compact``) over
  the base's.

Run ``python -m bench.footprint_bench [--quick] [--out bench/results/footprint.json]``
as root. A failed step voids the run; nothing here asserts on size. ``python -m bench``
draws the plots (bench.report).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from bench import objectstore
from bench.harness import JSON, BenchError, Strata, pgbench_at, root_bench_main
from bench.synthetic import PageMaker, create_file, flush_timeline, open_engine
from pageserver.engine import Engine

MB = 1_000_000
TENANT = "bench"  # bench.harness.Strata's tenant
SHORT_WINDOW = "1s"
SEED = 20261130
HOLD_COMPACTION = {f"STRATA_PAGESERVER_{name}": "1000000" for name in (
    "L0_COMPACTION_THRESHOLD", "IMAGE_THRESHOLD", "IMAGE_READ_THRESHOLD")}


@dataclass(frozen=True)
class Settings:
    mode: str
    rows: int  # of the table the fork updates
    pgbench_scale: int
    pgbench_seconds: int
    pgbench_slices: int  # owned bytes sampled after each slice
    forks: int  # synthetic forks each rewriting 1 %
    synthetic_mb: int  # synthetic base size


FULL = Settings("full", rows=1_000_000, pgbench_scale=5, pgbench_seconds=90, pgbench_slices=3,
                forks=16, synthetic_mb=100)
QUICK = Settings("quick", rows=200_000, pgbench_scale=1, pgbench_seconds=20, pgbench_slices=2,
                 forks=16, synthetic_mb=20)


def connect(started: JSON) -> psycopg.Connection[Any]:
    return psycopg.connect(host=started["host"], port=started["port"], user="postgres",
                           dbname="postgres", autocommit=True, connect_timeout=120)


def scalar(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    if row is None:
        raise BenchError(f"{sql!r} returned nothing")
    return row[0]


def disk_bytes(root: Path) -> int:
    """Bytes the files under ``root`` take on disk, each inode once (hard links too)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


class Deployment:
    """One ``$STRATA_HOME`` and its page server; owned bytes sampled over time."""

    def __init__(self, root: Path) -> None:
        self.strata = Strata(root / "home")
        self.store = objectstore.suite_store("footprint", self.strata.home / "objects")
        self.began = time.monotonic()
        self.samples: list[JSON] = []
        self.options: tuple[str, ...] = ()
        self.hold_compaction = False

    def up(self, *options: str) -> None:
        """``strata up``; with ``hold_compaction`` the page server compacts nothing."""
        self.options = options
        held = HOLD_COMPACTION if self.hold_compaction else {}
        saved = {name: os.environ.get(name) for name in held}
        os.environ.update(held)  # the page server inherits the CLI's environment
        try:  # one store across restarts (Strata.up would pick a fresh S3 prefix)
            self.strata.storage = self.store
            self.strata("up", "--port", "0", "--metrics-port", "0", "--no-console", *options,
                        *objectstore.up_options(self.store))
        finally:
            for name, value in saved.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value

    def restart(self) -> None:
        """``strata down`` (which flushes every memtable) and up again."""
        self.strata("down")
        self.up(*self.options)

    def owned(self) -> dict[str, int]:
        """Owned layer bytes per branch of the tenant."""
        listed = self.strata("branch", "list")["branches"]
        return {branch["name"]: int(branch["owned_bytes"]) for branch in listed}

    def sample(self, phase: str) -> JSON:
        """Owned bytes per branch, object store bytes and disk bytes now, labelled."""
        home = self.strata.home
        point: JSON = {"phase": phase, "t_s": time.monotonic() - self.began,
                 "owned": self.owned(), "store_bytes": self.strata.stored_bytes(),
                 "home_disk_bytes": disk_bytes(home),
                 "pageserver_disk_bytes": disk_bytes(home / "pageserver")
                 + disk_bytes(home / "objects"),
                 "layer_cache_bytes": disk_bytes(home / "pageserver" / "layers"),
                 "compute_cache_bytes": sum(disk_bytes(cache)
                                            for cache in home.glob("computes/*/*/cache")),
                 "computes_disk_bytes": disk_bytes(home / "computes")}
        self.samples.append(point)
        total = sum(point["owned"].values())
        print(f"  {phase}: {total / MB:.1f} MB owned, store {point['store_bytes'] / MB:.1f} "
              f"MB, home {point['home_disk_bytes'] / MB:.1f} MB", file=sys.stderr, flush=True)
        return point


def load(strata: Strata, settings: Settings) -> JSON:
    """The table the forks update and pgbench's tables, on main; their sizes."""
    started = strata("compute", "start", "main")
    with connect(started) as conn:
        conn.execute("CREATE TABLE items(id int PRIMARY KEY, v int NOT NULL, note text "
                     "NOT NULL)")
        conn.execute(f"INSERT INTO items SELECT g, g, md5(g::text) "
                     f"FROM generate_series(1, {settings.rows}) g")
        conn.execute("VACUUM ANALYZE items")
    pgbench_at((started["host"], started["port"]), "-i", "-q", "-s",
               str(settings.pgbench_scale))
    with connect(started) as conn:
        conn.execute("CHECKPOINT")
        sizes = {"database_bytes": int(scalar(conn, "SELECT pg_database_size('postgres')")),
                 "items_bytes": int(scalar(conn, "SELECT pg_total_relation_size('items')")),
                 "cluster_bytes": int(scalar(
                     conn, "SELECT sum(pg_database_size(oid)) "
                     "+ pg_tablespace_size('pg_global') FROM pg_database"))}
    strata("compute", "stop", "main")
    return sizes


def pgbench_history(deployment: Deployment, settings: Settings) -> JSON:
    """pgbench on main with full_page_writes off: owned bytes added per transaction, WAL
    bytes written per transaction."""
    strata = deployment.strata
    before = deployment.owned()["main"]
    transactions = wal_bytes = 0
    for index in range(settings.pgbench_slices):
        started = strata("compute", "start", "main", "--full-page-writes", "off")
        with connect(started) as conn:
            wal_start = scalar(conn, "SELECT pg_current_wal_lsn()")
        output = pgbench_at((started["host"], started["port"]), "-c", "2", "-j", "2", "-T",
                            str(settings.pgbench_seconds // settings.pgbench_slices))
        match = re.search(r"number of transactions actually processed: (\d+)", output)
        if match is None:
            raise BenchError(f"no transaction count in pgbench output:\n{output}")
        transactions += int(match.group(1))
        with connect(started) as conn:
            wal_bytes += int(scalar(conn, f"SELECT pg_current_wal_lsn() - '{wal_start}'"))
        strata("compute", "stop", "main")
        deployment.restart()
        deployment.sample(f"pgbench {index + 1}/{settings.pgbench_slices}")
    added = deployment.owned()["main"] - before
    return {"transactions": transactions, "wal_bytes": wal_bytes, "owned_added": added,
            "owned_per_transaction": added / transactions,
            "wal_per_transaction": wal_bytes / transactions,
            "ratio": added / wal_bytes}


def fork_update(strata: Strata, name: str, full_page_writes: str) -> None:
    """A fork of main updating every tenth row of ``items``."""
    strata("branch", "create", name)
    started = strata("compute", "start", name, "--full-page-writes", full_page_writes)
    with connect(started) as conn:
        conn.execute("UPDATE items SET v = v + 1 WHERE id % 10 = 0")
        conn.execute("CHECKPOINT")
    strata("compute", "stop", name)


def short_window(deployment: Deployment, settings: Settings) -> JSON:
    """A fresh tenant under a 1 s window: loaded, compacted and collected; store bytes
    over pg_database_size."""
    strata = deployment.strata
    strata("tenant", "delete", TENANT, "--yes")
    deployment.strata("down")
    deployment.up("--pitr-window", SHORT_WINDOW)
    strata("tenant", "create", TENANT)
    sizes = load(strata, settings)
    deployment.restart()
    deployment.sample("short window: loaded")
    strata("compact")
    time.sleep(2)
    collected = [strata("gc")]
    strata("compact")
    collected.append(strata("gc"))
    point = deployment.sample("short window: compacted and collected")
    return {**sizes, "store_bytes": point["store_bytes"], "gc": collected,
            "ratio": point["store_bytes"] / sizes["database_bytes"]}


def synthetic_forks(settings: Settings) -> JSON:
    """In-process: a base of ``synthetic_mb`` of pages, then forks each rewriting a
    contiguous 1 %, all compacted; owned bytes of the tenant after over before."""
    rng = np.random.default_rng(SEED)
    blocks = settings.synthetic_mb * MB // 8192
    with tempfile.TemporaryDirectory(prefix="strata-footprint-synthetic-") as tmp:
        home = Path(tmp)
        engine = open_engine(home / "pageserver",
                             objectstore.suite_store("footprint", home / "objects"))
        try:
            tenant = engine.create_tenant("synthetic")
            main = tenant.branch("main")
            create_file(main, blocks)
            maker = PageMaker(rng, random_bytes=2048)
            for first in range(0, blocks, 64):
                main.ingest(maker.batch(np.arange(first, min(first + 64, blocks)), 0))
            settle(engine, "synthetic")
            base = owned_total(engine, "synthetic")
            span = max(1, blocks // 100)
            for index in range(settings.forks):
                fork = tenant.create_branch(f"fork-{index}")
                start = index * span % max(1, blocks - span)
                for first in range(start, start + span, 64):
                    fork.ingest(maker.batch(np.arange(first, min(first + 64, start + span)),
                                            index + 1))
            settle(engine, "synthetic")
            after = owned_total(engine, "synthetic")
        finally:
            engine.close(flush=False)
    return {"forks": settings.forks, "base_owned": base, "after_owned": after,
            "ratio": after / base}


def settle(engine: Engine, tenant_id: str) -> None:
    """Flush every memtable of the tenant and compact as ``strata compact`` does."""
    for timeline in list(engine.tenant(tenant_id).timelines.values()):
        flush_timeline(timeline)
    engine.compact(tenant_id)


def owned_total(engine: Engine, tenant_id: str) -> int:
    return sum(timeline.owned_bytes()
               for timeline in list(engine.tenant(tenant_id).timelines.values()))


def measure(settings: Settings, root: Path) -> JSON:
    deployment = Deployment(root)
    strata = deployment.strata
    deployment.hold_compaction = True
    deployment.up()  # the default history window
    strata("tenant", "create", TENANT)
    print("loading ...", file=sys.stderr, flush=True)
    sizes = load(strata, settings)
    deployment.restart()
    loaded = deployment.sample("loaded")
    logical = int(strata("branch", "show", "main")["logical_size"])
    logical_size = {"logical_size": logical, "cluster_bytes": sizes["cluster_bytes"],
                    "ratio": logical / sizes["cluster_bytes"]}
    print("pgbench (full_page_writes off) ...", file=sys.stderr, flush=True)
    history = pgbench_history(deployment, settings)
    before = deployment.owned()["main"]
    deployment.hold_compaction = False
    deployment.restart()
    strata("compact")
    compacted = deployment.sample("main compacted")
    compaction = {"before": before, "after": compacted["owned"]["main"],
                  "ratio": compacted["owned"]["main"] / before}
    print("forks updating 10 % ...", file=sys.stderr, flush=True)
    for name, fpw in (("fork-fpw-on", "on"), ("fork-fpw-off", "off")):
        fork_update(strata, name, fpw)
    deployment.restart()
    deployment.sample("forks updated")
    strata("compact")
    forked = deployment.sample("forks compacted")
    strata("compact", "--force")
    forced = deployment.sample("forks compacted with --force")
    forks = {name: {"owned": forked["owned"][name],
                    "ratio": forked["owned"][name] / sizes["items_bytes"],
                    "owned_forced": forced["owned"][name],
                    "ratio_forced": forced["owned"][name] / sizes["items_bytes"]}
             for name in ("fork-fpw-on", "fork-fpw-off")}
    gc_report = strata("gc")
    after_gc = deployment.sample("gc (24 h window)")
    disk = {"home_disk_bytes": after_gc["home_disk_bytes"],
            "layer_cache_bytes": after_gc["layer_cache_bytes"],
            "compute_cache_bytes": after_gc["compute_cache_bytes"],
            "computes_disk_bytes": after_gc["computes_disk_bytes"],
            "store_bytes": after_gc["store_bytes"],
            "pageserver_disk_bytes": after_gc["pageserver_disk_bytes"],
            "home_over_store": after_gc["home_disk_bytes"] / after_gc["store_bytes"],
            "pageserver_over_store": after_gc["pageserver_disk_bytes"] / after_gc["store_bytes"],
            "cache_over_store": after_gc["layer_cache_bytes"] / after_gc["store_bytes"]}
    print("short window ...", file=sys.stderr, flush=True)
    short = short_window(deployment, settings)
    print("synthetic forks ...", file=sys.stderr, flush=True)
    synthetic = synthetic_forks(settings)
    return {"sizes": sizes, "loaded": loaded, "logical_size": logical_size,
            "history": history, "compaction": compaction, "forks": forks,
            "gc_default_window": gc_report, "disk": disk,
            "short_window": short, "synthetic_forks": synthetic,
            "samples": deployment.samples}


def headline_rows(figures: JSON) -> list[tuple[str, str]]:
    """(figure, value) pairs in the order of issue 16's table."""
    history, disk = figures["history"], figures["disk"]
    rest = disk["home_disk_bytes"] - disk["pageserver_disk_bytes"] - disk["computes_disk_bytes"]
    forks = figures["forks"]
    return [
        ("history: owned bytes added / WAL bytes written, per transaction (pgbench, "
         "full_page_writes off, 24 h window)",
         f"{history['ratio']:.2f}x ({history['owned_per_transaction']:,.0f} B / "
         f"{history['wal_per_transaction']:,.0f} B, {history['transactions']:,} tx)"),
        ("compaction inside the window (background, then `strata compact`): main owned "
         "after / before",
         f"{figures['compaction']['ratio']:.2f}x ({figures['compaction']['before'] / MB:.1f}"
         f" -> {figures['compaction']['after'] / MB:.1f} MB)"),
        ("fork updating 10 % of rows: owned after compaction / table+index, fpw on",
         f"{forks['fork-fpw-on']['ratio']:.2f}x"),
        ("the same, full_page_writes off", f"{forks['fork-fpw-off']['ratio']:.2f}x"),
        ("the forks after `strata compact --force` (images), fpw on / off",
         f"{forks['fork-fpw-on']['ratio_forced']:.2f}x / "
         f"{forks['fork-fpw-off']['ratio_forced']:.2f}x"),
        ("main's logical size / what PostgreSQL counts (databases and shared catalogs)",
         f"{figures['logical_size']['ratio']:.2f}x "
         f"({figures['logical_size']['logical_size'] / MB:.1f} / "
         f"{figures['logical_size']['cluster_bytes'] / MB:.1f} MB)"),
        ("page server on disk (state dir, local objects) / object store",
         f"{disk['pageserver_over_store']:.2f}x ({disk['pageserver_disk_bytes'] / MB:.1f} / "
         f"{disk['store_bytes'] / MB:.1f} MB)"),
        ("all of `$STRATA_HOME` on disk (computes stopped) / object store",
         f"{disk['home_over_store']:.2f}x ({disk['home_disk_bytes'] / MB:.1f} MB: page "
         f"server {disk['pageserver_disk_bytes'] / MB:.1f}, computes' page caches "
         f"{disk['compute_cache_bytes'] / MB:.1f}, computes' other files "
         f"{(disk['computes_disk_bytes'] - disk['compute_cache_bytes']) / MB:.1f}, the rest "
         f"{rest / MB:.1f})"),
        ("computes' page caches on disk (stopped) / object store",
         f"{disk['compute_cache_bytes'] / disk['store_bytes']:.2f}x"),
        ("layer cache on disk / object store", f"{disk['cache_over_store']:.2f}x"),
        ("after GC past a 1 s window: store / pg_database_size",
         f"{figures['short_window']['ratio']:.2f}x"),
        (f"{figures['synthetic_forks']['forks']} forks each rewriting 1 % (synthetic): "
         "owned / base", f"{figures['synthetic_forks']['ratio']:.3f}x"),
    ]


def render_markdown(report: JSON) -> str:
    figures, settings = report["figures"], report["settings"]
    sizes = figures["sizes"]
    lines = [
        "# Storage footprint: history, compaction, forks, the layer cache",
        "",
        f"{report['finished_at']}, mode {settings['mode']}, commit "
        f"{report['host']['git_commit']}; objects in {report.get('storage')}. Database "
        f"{sizes['database_bytes'] / MB:.1f} MB (`items`: {settings['rows']:,} rows, "
        f"{sizes['items_bytes'] / MB:.1f} MB with its index; pgbench scale "
        f"{settings['pgbench_scale']}).",
        "",
        "| figure | value |",
        "|---|--:|",
        *[f"| {name} | {value} |" for name, value in headline_rows(figures)],
        "",
        "| phase | owned MB per branch | store MB | page server disk MB | layer cache MB "
        "| computes' caches MB | home MB |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for point in figures["samples"]:
        owned = ", ".join(f"{name} {size / MB:.1f}" for name, size in point["owned"].items())
        lines.append(f"| {point['phase']} | {owned} | {point['store_bytes'] / MB:.1f} | "
                     f"{point['pageserver_disk_bytes'] / MB:.1f} | "
                     f"{point['layer_cache_bytes'] / MB:.1f} | "
                     f"{point['compute_cache_bytes'] / MB:.1f} | "
                     f"{point['home_disk_bytes'] / MB:.1f} |")
    lines += ["", f"`strata gc` with the 24 h window: `{figures['gc_default_window']}`", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return root_bench_main(argv, name="footprint", doc=__doc__ or "",
                           quick_help="a 200k-row table, pgbench scale 1 for 20 s",
                           full=FULL, quick=QUICK, measure=measure, render=render_markdown)


if __name__ == "__main__":
    sys.exit(main())
