"""In-process benchmark of the Strata storage engine: the issue's four acceptance figures.

1. batched ``get_pages`` throughput on a timeline of >= 1M page versions in >= 20 L0
   layers, before and after compaction, at the latest and at an older LSN;
2. durable ingest throughput (acknowledged once the object store holds the batch), one
   writer and four writers on four branches;
3. ``create_branch`` time on a small (1k versions) and a large (1M) timeline;
4. object-store bytes of a base timeline plus 50 branches that each rewrite 1% of it.

Each figure's engine keeps its objects in a local directory in a temporary home, or under
a fresh prefix of the S3 URL in ``$STRATA_BENCH_STORAGE`` (see ``bench.objectstore``).

Run ``python -m bench.engine_bench [--quick] [--out bench/results/engine.json]``. Every
figure's baseline runs in the same invocation; each timing is repeated and reported as
median (min..max) next to its raw samples. Nothing here asserts on time. With ``--out``
the JSON report and a markdown copy of the table (same name, ``.md``) are written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench import objectstore
from bench.harness import JSON, host_info, summary, timed
from bench.synthetic import (
    BATCH_PAGES,
    PAGE_HEADER,
    History,
    PageMaker,
    build_history,
    build_small,
    create_file,
    flush_timeline,
    layer_stats,
    measure_branching,
    open_engine,
)
from common.keys import PAGE_SIZE, ZERO_PAGE, Relation
from common.ops import Batch
from pageserver.engine import Engine
from pageserver.timeline import Timeline

READ_GOAL_PAGES_S = 100_000.0
BRANCH_RATIO_GOAL = 1.5  # "~1": large/small create_branch time within 1.5x


@dataclass(frozen=True)
class Settings:
    """Sizes and repetitions of one run (``full`` or ``quick``)."""

    mode: str
    repeats: int
    seed: int
    random_bytes: int  # incompressible bytes per 8 KB page; the rest is zeros
    read_blocks: int  # figure 1: blocks of the relation
    read_passes: int  # ... each block written this many times (page versions = product)
    read_l0_layers: int  # ... L0 layers the history is flushed into
    read_batch: int  # ... blocks per get_pages call
    read_calls: int  # ... get_pages calls per timed sample
    ingest_batches: int  # figure 2: batches of 64 pages per timed sample (all writers)
    ingest_writers: int
    ingest_file_blocks: int
    branch_small_versions: int  # figure 3
    branch_samples: int
    store_base_pages: int  # figure 4
    store_branches: int
    store_rewrite: float  # fraction of the base each branch rewrites

    @property
    def read_versions(self) -> int:
        return self.read_blocks * self.read_passes


FULL = Settings(
    mode="full", repeats=5, seed=20240601, random_bytes=2048,
    read_blocks=200_000, read_passes=5, read_l0_layers=25, read_batch=1000, read_calls=100,
    ingest_batches=512, ingest_writers=4, ingest_file_blocks=16_384,
    branch_small_versions=1000, branch_samples=30,
    store_base_pages=32_768, store_branches=50, store_rewrite=0.01,
)
QUICK = Settings(
    mode="quick", repeats=3, seed=20240601, random_bytes=2048,
    read_blocks=100_000, read_passes=2, read_l0_layers=20, read_batch=1000, read_calls=30,
    ingest_batches=128, ingest_writers=4, ingest_file_blocks=16_384,
    branch_small_versions=1000, branch_samples=10,
    store_base_pages=8192, store_branches=50, store_rewrite=0.01,
)


# --- figure 1 (and 3): a long history, reads and branch creation -----------------------


def warm_and_verify(timeline: Timeline, relation: Relation, history: History, lsn: int,
                    batch: int) -> JSON:
    """Read every block once at ``lsn`` (opens readers, warms the page cache) and check it."""
    expected = history.expected_tags(lsn)
    mismatches = 0
    start = time.perf_counter()
    for first in range(0, len(expected), batch):
        blocks = np.arange(first, min(first + batch, len(expected)), dtype=np.int64)
        for block, page in zip(blocks.tolist(), timeline.get_pages(relation, blocks, lsn),
                               strict=True):
            tag = int(expected[block])
            if tag < 0:
                mismatches += page != ZERO_PAGE
            else:
                mismatches += PAGE_HEADER.unpack_from(page) != (block, tag)
    return {"lsn": lsn, "pages": len(expected), "mismatches": mismatches,
            "seconds": time.perf_counter() - start}


def read_sample(timeline: Timeline, relation: Relation, lsn: int, settings: Settings,
                rng: np.random.Generator) -> JSON:
    """One timed sample: ``read_calls`` get_pages calls of ``read_batch`` random blocks."""
    calls = [rng.choice(settings.read_blocks, settings.read_batch, replace=False)
             for _ in range(settings.read_calls)]
    start = time.perf_counter()
    for blocks in calls:
        timeline.get_pages(relation, blocks, lsn)
    seconds = time.perf_counter() - start
    pages = settings.read_calls * settings.read_batch
    return {"pages": pages, "seconds": seconds, "pages_per_s": pages / seconds}


def measure_reads(timeline: Timeline, relation: Relation, history: History, state: str,
                  lsns: dict[str, int], settings: Settings, rng: np.random.Generator) -> JSON:
    """Warm-up pass, then interleaved repeated samples at each named LSN."""
    warmup = {name: warm_and_verify(timeline, relation, history, lsn, settings.read_batch)
              for name, lsn in lsns.items()}
    samples: dict[str, list[JSON]] = {name: [] for name in lsns}
    for _ in range(settings.repeats):
        for name, lsn in lsns.items():
            samples[name].append(read_sample(timeline, relation, lsn, settings, rng))
    return {
        name: {
            "state": state, "lsn": lsn, "layers": layer_stats(timeline),
            "warmup": warmup[name], "samples": samples[name],
            "pages_per_s": summary([s["pages_per_s"] for s in samples[name]]),
        }
        for name, lsn in lsns.items()
    }


def bench_reads_and_branches(settings: Settings, root: Path, store: str) -> JSON:
    """Figures 1 and 3, which share the large timeline."""
    rng = np.random.default_rng(settings.seed)
    engine = open_engine(root / "state", store)
    relation = create_file(engine.create_tenant("bench").branch("main"), settings.read_blocks)
    history, build = build_history(
        engine.timeline("bench", "main"), rng, blocks=settings.read_blocks,
        passes=settings.read_passes, l0_layers=settings.read_l0_layers,
        random_bytes=settings.random_bytes)
    engine.close()
    reopen_s = time.perf_counter()
    engine = open_engine(root / "state", store)
    build["reopen_seconds"] = time.perf_counter() - reopen_s
    try:
        main = engine.timeline("bench", "main")
        latest = main.durable_lsn
        older = int(rng.integers(history.batch_lsns[0, -1], latest))  # after the first pass
        lsns = {"latest": latest, "older": older}
        cases = {f"l0_{k}": v for k, v in measure_reads(
            main, relation, history, "before compaction", lsns, settings, rng).items()}

        small_older, small_latest = build_small(engine, rng,
                                                versions=settings.branch_small_versions,
                                                random_bytes=settings.random_bytes)
        branching = measure_branching(engine, {
            "small_latest": ("small", None), "large_latest": ("bench", None),
            "small_older": ("small", small_older), "large_older": ("bench", older),
        }, settings.branch_samples)
        small_main = engine.timeline("small", "main")
        versions = {"small": settings.branch_small_versions, "large": settings.read_versions}
        branch_report: JSON = {
            "page_versions": versions,
            "layers": {"small": layer_stats(small_main), "large": layer_stats(main)},
            "lsns": {"small_latest": small_latest, "small_older": small_older,
                     "large_latest": latest, "large_older": older},
            "cases": branching,
            "ratio_large_to_small": {
                point: branching[f"large_{point}"]["ms"]["median"]
                / branching[f"small_{point}"]["ms"]["median"]
                for point in ("latest", "older")
            },
        }

        compaction_start = time.perf_counter()
        result = engine.compact("bench", force=True)
        compaction = {"seconds": time.perf_counter() - compaction_start, **asdict(result),
                      "layers": layer_stats(main)}
        cases.update({f"compacted_{k}": v for k, v in measure_reads(
            main, relation, history, "after compaction", lsns, settings, rng).items()})
    finally:
        engine.close()
    return {"get_pages": {"build": build, "compaction": compaction, "cases": cases},
            "branch_creation": branch_report}


# --- figure 2: durable ingest ------------------------------------------------------------


def ingest_sample(engine: Engine, timelines: list[Timeline], batches: list[Batch]) -> JSON:
    """Ingest ``batches`` spread over one thread per timeline; wall time from a common start."""
    writers = len(timelines)
    barrier = threading.Barrier(writers + 1)

    def write(timeline: Timeline, share: list[Batch]) -> None:
        barrier.wait()
        for batch in share:
            timeline.ingest(batch)

    log = engine.tenant(timelines[0].tenant_id).log
    chunks = log.stats().uploads  # log chunks created: shows how batches share them
    with ThreadPoolExecutor(writers) as pool:
        futures = [pool.submit(write, timeline, batches[index::writers])
                   for index, timeline in enumerate(timelines)]
        barrier.wait()
        start = time.perf_counter()
        for future in futures:
            future.result()
        seconds = time.perf_counter() - start
    chunks = log.stats().uploads - chunks
    pages = sum(len(batch.ops) for batch in batches)
    flush_s = timed(engine.flush)
    return {"writers": writers, "batches": len(batches), "pages": pages, "seconds": seconds,
            "pages_per_s": pages / seconds, "log_chunks": chunks,
            "log_chunks_per_batch": chunks / len(batches), "flush_seconds_after": flush_s}


def bench_ingest(settings: Settings, root: Path, store: str) -> JSON:
    """Figure 2: one writer versus ``ingest_writers`` writers on as many branches."""
    rng = np.random.default_rng(settings.seed + 2)
    engine = open_engine(root / "state", store)
    try:
        tenant = engine.create_tenant("ingest")
        create_file(tenant.branch("main"), settings.ingest_file_blocks)
        timelines = [tenant.create_branch(f"w{i}") for i in range(settings.ingest_writers)]
        maker = PageMaker(rng, settings.random_bytes)
        batches = [maker.batch(rng.choice(settings.ingest_file_blocks, BATCH_PAGES,
                                          replace=False), i)
                   for i in range(settings.ingest_batches)]
        modes = {"1_writer": timelines[:1], f"{len(timelines)}_writers": timelines}
        warmup = [ingest_sample(engine, group, batches[: len(batches) // 4])
                  for group in modes.values()]
        samples: dict[str, list[JSON]] = {name: [] for name in modes}
        for rep in range(settings.repeats):
            order = list(modes) if rep % 2 == 0 else list(reversed(modes))  # against drift
            for name in order:
                samples[name].append(ingest_sample(engine, modes[name], batches))
    finally:
        engine.close()
    return {"ingest": {
        "batch_pages": BATCH_PAGES, "warmup": warmup,
        "timed_region": "ingest() calls until every batch is durable (acknowledged); the "
                        "memtable flush after each sample is untimed and reported apart",
        "cases": {name: {"samples": values,
                         "pages_per_s": summary([v["pages_per_s"] for v in values]),
                         "log_chunks_per_batch": summary([v["log_chunks_per_batch"]
                                                          for v in values])}
                  for name, values in samples.items()},
    }}


# --- figure 4: object-store bytes of branches ----------------------------------------------


def bench_object_store(settings: Settings, root: Path, store: str) -> JSON:
    """Figure 4: remote bytes of a base plus branches rewriting a fraction, vs full copies."""
    rng = np.random.default_rng(settings.seed + 4)
    engine = open_engine(root / "state", store)
    try:
        tenant = engine.create_tenant("store")
        create_file(tenant.branch("main"), settings.store_base_pages)
        maker = PageMaker(rng, settings.random_bytes)
        blocks = np.arange(settings.store_base_pages, dtype=np.int64)
        for first in range(0, len(blocks), BATCH_PAGES):
            tenant.branch("main").ingest(maker.batch(blocks[first : first + BATCH_PAGES], 0))
        engine.flush("store")
        base = total = objectstore.stored_bytes(store)
        rewrite = math.ceil(settings.store_base_pages * settings.store_rewrite)
        per_branch: list[int] = []
        for index in range(settings.store_branches):
            child = tenant.create_branch(f"b{index:02d}")
            chosen = np.sort(rng.choice(settings.store_base_pages, rewrite, replace=False))
            for first in range(0, rewrite, BATCH_PAGES):
                child.ingest(maker.batch(chosen[first : first + BATCH_PAGES], index + 1))
            flush_timeline(child)
            before, total = total, objectstore.stored_bytes(store)
            per_branch.append(total - before)
    finally:
        engine.close()
    copies = settings.store_branches + 1
    return {"object_store": {
        "base_pages": settings.store_base_pages, "branches": settings.store_branches,
        "pages_rewritten_per_branch": rewrite, "base_bytes": base, "total_bytes": total,
        "full_copies_bytes": copies * base,
        "ratio_to_full_copies": total / (copies * base),
        "ideal_ratio": (1 + settings.store_branches * rewrite / settings.store_base_pages)
        / copies,
        "per_branch_bytes_samples": per_branch,
        "per_branch_bytes": summary(per_branch),
    }}


# --- report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the results table; ``source`` is the JSON path of its samples."""

    figure: str
    measure: str
    median: str
    spread: str
    goal: str
    status: str
    source: str


def _rate(summary: JSON) -> tuple[str, str]:
    return f"{summary['median']:,.0f}", f"{summary['min']:,.0f} .. {summary['max']:,.0f}"


def _ms(summary: JSON) -> tuple[str, str]:
    return f"{summary['median']:.2f}", f"{summary['min']:.2f} .. {summary['max']:.2f}"


def table_rows(figures: JSON) -> list[Row]:
    """The results table, one row per reported number."""
    rows: list[Row] = []
    reads = figures["get_pages"]
    for name, case in reads["cases"].items():
        layers = case["layers"]
        what = (f"get_pages {case['state']} ({layers['total']} layers), "
                f"{name.rsplit('_', 1)[1]} LSN, pages/s")
        median = case["pages_per_s"]["median"]
        rows.append(Row("1", what, *_rate(case["pages_per_s"]), ">= 100,000",
                        "met" if median >= READ_GOAL_PAGES_S else "MISSED",
                        f"figures.get_pages.cases.{name}.samples"))
    ingest = figures["ingest"]["cases"]
    for name, case in ingest.items():
        chunks = case["log_chunks_per_batch"]["median"]
        rows.append(Row("2", f"ingest {name.replace('_', ' ')}, durable, pages/s "
                             f"({chunks:.2f} log chunks/batch)",
                        *_rate(case["pages_per_s"]), "report (no number set)", "-",
                        f"figures.ingest.cases.{name}.samples"))
    single, multi = (case["pages_per_s"]["median"] for case in list(ingest.values())[:2])
    rows.append(Row("2", "ingest speed-up, writers vs 1 writer (ratio of medians)",
                    f"{multi / single:.2f}", "", "expect >= 1 (group commit)",
                    "met" if multi >= single else "MISSED", "figures.ingest.cases"))
    branches = figures["branch_creation"]
    versions = branches["page_versions"]
    for point in ("latest", "older"):
        for size in ("small", "large"):
            case = branches["cases"][f"{size}_{point}"]
            rows.append(Row("3", f"create_branch at {point} LSN, {versions[size]:,} versions, ms",
                            *_ms(case["ms"]), "", "",
                            f"figures.branch_creation.cases.{size}_{point}.samples_ms"))
        ratio = branches["ratio_large_to_small"][point]
        rows.append(Row("3", f"create_branch at {point} LSN, large / small (medians)",
                        f"{ratio:.2f}", "", "~1 (<= 1.5)",
                        "met" if ratio <= BRANCH_RATIO_GOAL else "MISSED",
                        f"figures.branch_creation.cases.*_{point}"))
    store = figures["object_store"]
    mb = 1 / 2**20
    rows.extend([
        Row("4", f"object store: base ({store['base_pages']:,} pages), MB",
            f"{store['base_bytes'] * mb:.1f}", "", "", "", "figures.object_store.base_bytes"),
        Row("4", f"object store: each of {store['branches']} branches "
                 f"({store['pages_rewritten_per_branch']} pages), KB",
            f"{store['per_branch_bytes']['median'] / 1024:.1f}",
            f"{store['per_branch_bytes']['min'] / 1024:.1f} .. "
            f"{store['per_branch_bytes']['max'] / 1024:.1f}", "", "",
            "figures.object_store.per_branch_bytes_samples"),
        Row("4", f"object store: total, MB (51 full copies: "
                 f"{store['full_copies_bytes'] * mb:,.1f} MB)",
            f"{store['total_bytes'] * mb:.1f}", "", "", "", "figures.object_store.total_bytes"),
        Row("4", "object store: total / 51 full copies", f"{store['ratio_to_full_copies']:.4f}",
            "", f"<= 2 x ideal {store['ideal_ratio']:.4f}",
            "met" if store["ratio_to_full_copies"] < 2 * store["ideal_ratio"] else "MISSED",
            "figures.object_store.ratio_to_full_copies"),
    ])
    return rows


def render_text(rows: list[Row]) -> str:
    """The table as aligned plain text."""
    header = Row("fig", "measure", "median", "min .. max", "goal", "status", "")
    body = [header, *rows]
    widths = [max(len(getattr(row, col)) for row in body)
              for col in ("figure", "measure", "median", "spread", "goal", "status")]
    lines = []
    for row in body:
        cells = (row.figure, row.measure, row.median, row.spread, row.goal, row.status)
        lines.append("  ".join(cell.rjust(w) if i in (2, 3) else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(cells, widths, strict=True))))
    return "\n".join(lines)


def render_markdown(report: JSON, rows: list[Row]) -> str:
    """A short markdown report: machine, configuration, notes and the table."""
    host, config, figures = report["host"], report["config"], report["figures"]
    reads = figures["get_pages"]
    build = reads["build"]
    lines = [
        "# Strata storage engine benchmark",
        "",
        f"`python -m bench.engine_bench{' --quick' if config['mode'] == 'quick' else ''}` "
        f"on {host['hostname']} ({host['cpu_count']} CPUs, {host['memory_gb']} GB, "
        f"{host['platform']}), Python {host['python']}, numpy {host['numpy']}, "
        f"lz4 {host['lz4']}, {host['started_utc']}, commit {host['git_commit']} "
        f"({host['git_dirty_files']} files differ from it). Objects: {config['storage']}. "
        f"Total {report['total_seconds']:.0f} s, peak RSS {report['peak_rss_mb']:,.0f} MB.",
        "",
        "Load average (1/5/15 min) at the start and after each figure, to judge noise from "
        "other processes on the machine: "
        + "; ".join(f"{k} {v[0]:.1f}/{v[1]:.1f}/{v[2]:.1f}"
                    for k, v in report["load_average_1_5_15min"].items()) + ".",
        "",
        "| fig | measure | median | min .. max | goal | status |",
        "|---|---|--:|--:|---|---|",
        *(f"| {r.figure} | {r.measure} | {r.median} | {r.spread} | {r.goal} | {r.status} |"
          for r in rows),
        "",
        "Notes:",
        "",
        f"- Figure 1: {build['page_versions']:,} page versions ({config['read_blocks']:,} blocks x "
        f"{config['read_passes']}) built in {build['wall_seconds']:.0f} s, flushed into "
        f"{build['layers']['l0_delta']} L0 layers; the engine was then reopened for every "
        "measurement. Each sample is "
        f"{config['read_calls']} get_pages calls of {config['read_batch']} random distinct "
        "blocks after a warm-up pass that read and checked every block "
        f"(mismatches: {sum(c['warmup']['mismatches'] for c in reads['cases'].values())}). "
        f"Forced compaction took {reads['compaction']['seconds']:.0f} s.",
        f"- Figure 2: {config['ingest_batches']} batches of {BATCH_PAGES} pages per sample, "
        "timed until the last batch is acknowledged (durable in the ingest log); memtable "
        "flushes between samples are untimed.",
        "- Figure 3: each create_branch is followed by an untimed delete_branch, so the tenant "
        "manifest does not grow; measured on the large timeline before compaction "
        f"({figures['branch_creation']['layers']['large']['total']} layers).",
        f"- {config['repeats']} repetitions per timing, interleaved between the compared cases. "
        "Raw samples are in the JSON file next to this one.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every figure, print the table and optionally write the JSON and markdown reports."""
    parser = argparse.ArgumentParser(prog="python -m bench.engine_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--out", type=Path, help="write the JSON report here (and a .md copy)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    host = host_info()  # before the run: the commit and date it started from
    started = time.perf_counter()
    figures: JSON = {}
    seconds: JSON = {}
    load = {"start": os.getloadavg()}
    for step in (bench_ingest, bench_object_store, bench_reads_and_branches):
        name = step.__name__.removeprefix("bench_")
        print(f"[{time.perf_counter() - started:6.1f}s] {name} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"strata-bench-{name}-") as tmp:
            store = objectstore.suite_store(f"engine-{name}", Path(tmp) / "remote")
            begin = time.perf_counter()
            figures.update(step(settings, Path(tmp), store))
            seconds[name] = time.perf_counter() - begin
        load[f"after_{name}"] = os.getloadavg()
    report: JSON = {
        "host": {**host, "finished_utc": datetime.now(UTC).isoformat(timespec="seconds")},
        "config": {**asdict(settings), "batch_pages": BATCH_PAGES, "page_size": PAGE_SIZE,
                   "storage": objectstore.describe()},
        "figures": figures,
        "figure_seconds": seconds,
        "load_average_1_5_15min": load,
        "total_seconds": time.perf_counter() - started,
        # Includes the mmapped layer-file pages the reads touched (file-backed, reclaimable).
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    rows = table_rows(figures)
    report["table"] = [asdict(row) for row in rows]
    print()
    print(render_text(rows))
    print(f"\n{settings.mode} run: {report['total_seconds']:.0f} s on "
          f"{report['host']['hostname']} ({report['host']['cpu_count']} CPUs)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(render_markdown(report, rows))
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
