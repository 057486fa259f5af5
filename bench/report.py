"""The benchmark report: ``REPORT.md`` with PNG plots, from the suites' JSON results.

Only suites that succeeded in the run that wrote ``run.json`` are shown; a failed or
missing suite is listed as such, never with numbers from an older run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # after use(): the backend is chosen first
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

JSON = dict[str, Any]
RESULTS = Path(__file__).resolve().parent / "results"
COMPUTE_COLOR, LOCAL_COLOR = "#3b6fb6", "#9aa5b1"


def _load(results: Path, name: str) -> JSON | None:
    try:
        body: JSON = json.loads((results / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return body


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_compute_tps(report: JSON, path: Path) -> str:
    figures = report["figures"]
    runs = [("read-write", "read_write"), ("read-only", "read_only"),
            ("read-only,\nsmall buffers", "read_only_small_buffers")]
    fig, axis = plt.subplots(figsize=(7, 4))
    for offset, side, color in ((-0.2, "compute", COMPUTE_COLOR), (0.2, "local", LOCAL_COLOR)):
        medians = [figures[key][side]["median"] for _, key in runs]
        errors = [[m - figures[key][side]["min"] for m, (_, key) in zip(medians, runs,
                                                                         strict=True)],
                  [figures[key][side]["max"] - m for m, (_, key) in zip(medians, runs,
                                                                         strict=True)]]
        axis.bar([i + offset for i in range(len(runs))], medians, 0.4, yerr=errors,
                 color=color, label=side, capsize=3)
    for index, (_, key) in enumerate(runs):
        top = max(figures[key][side]["max"] for side in ("compute", "local"))
        axis.annotate(f"{figures[key]['ratio']:.2f}x", (index, top), textcoords="offset points",
                      xytext=(0, 4), ha="center", fontsize=9)
    axis.set_xticks(range(len(runs)), [label for label, _ in runs])
    axis.set_ylabel("TPS (median, min-max)")
    axis.set_title("pgbench, compute vs local PostgreSQL (compute/local above)")
    axis.legend()
    _save(fig, path)
    return "pgbench TPS, compute vs local"


def plot_commit(report: JSON, path: Path) -> str:
    commit, rw = report["figures"]["commit"], report["figures"]["read_write"]
    marks = [("mean", "mean_ms"), ("p50", "p50_ms"), ("p99", "p99_ms")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8),
                                      gridspec_kw={"width_ratios": [3, 1]})
    for offset, side, color in ((-0.2, "compute", COMPUTE_COLOR), (0.2, "local", LOCAL_COLOR)):
        left.bar([i + offset for i in range(len(marks))],
                 [commit[key][side]["median"] for _, key in marks], 0.4, color=color,
                 label=side)
        right.bar([offset], [rw[side]["median"]], 0.4, color=color, label=side)
    for index, (_, key) in enumerate(marks):
        left.annotate(f"{commit[key]['ratio']:.1f}x", (index, commit[key]["compute"]["median"]),
                      textcoords="offset points", xytext=(0, 4), ha="center", fontsize=9)
    left.set_xticks(range(len(marks)), [label for label, _ in marks])
    left.set_ylabel("ms per single-row INSERT commit, 1 client")
    left.legend()
    right.set_xticks([0], [f"read-write\n{rw['ratio']:.2f}x"])
    right.set_ylabel("TPS")
    fig.suptitle(f"Commit latency and write throughput; objects in {report['storage']}")
    _save(fig, path)
    return "commit latency and read-write TPS, compute vs local"


def plot_cold_start(report: JSON, path: Path) -> str:
    cold = report["figures"]["cold_start"]
    warm = report["figures"]["warm_connect"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    phases = [("mount daemon", "mount_s"), ("PostgreSQL", "postgres_s"),
              ("proxy, SCRAM, query", "proxy_auth_and_query_s")]
    bottom = 0.0
    for label, key in phases:
        value = cold[key]["median"]
        left.bar(["cold start"], [value], bottom=bottom, label=f"{label} {value:.3f} s")
        bottom += value
    left.scatter(["cold start"] * len(cold["first_row_s"]["samples"]),
                 cold["first_row_s"]["samples"], color="black", s=10, zorder=3,
                 label="each wake (total)")
    left.axhline(1.5, color="red", linestyle="--", linewidth=1, label="goal 1.5 s")
    left.set_ylabel("seconds, connect to first row")
    left.legend(fontsize=7, loc="upper right")
    right.boxplot([[s * 1000 for s in warm["proxy_s"]["samples"]],
                   [s * 1000 for s in warm["direct_s"]["samples"]]],
                  tick_labels=["through proxy", "direct socket"])
    right.set_ylabel("ms, connect + SELECT 1")
    right.set_title("warm connect")
    fig.suptitle("Scale to zero: waking a suspended branch")
    _save(fig, path)
    return "cold start through the proxy and warm connect overhead"


def plot_pagebench(report: JSON, path: Path) -> str:
    fig, axis = plt.subplots(figsize=(7, 4))
    points = [p for p in report["points"] if p.get("access") == "random"]
    for batch in sorted({p["batch"] for p in points}):
        series = sorted((p["clients"], p["pages_per_s"]) for p in points if p["batch"] == batch)
        axis.plot([c for c, _ in series], [v for _, v in series], marker="o",
                  label=f"batch {batch}")
    axis.set_xscale("log", base=2)
    axis.set_xlabel("client processes")
    axis.set_ylabel("pages/s")
    axis.set_title("GetPages over loopback gRPC")
    axis.legend()
    _save(fig, path)
    return "page service throughput by clients and batch size"


def plot_branch_create(report: JSON, path: Path) -> str:
    rpc = report["rpc"]["create_branch"]
    fig, axis = plt.subplots(figsize=(6, 3.8))
    labels = [f"{name}\n({report['rpc']['branch_lsns'][name]} LSNs)" for name in rpc]
    axis.boxplot([rpc[name]["samples_ms"] for name in rpc], tick_labels=labels)
    axis.set_ylabel("ms per CreateBranch RPC")
    axis.set_title("Branch creation does not grow with history")
    _save(fig, path)
    return "branch creation time against database history"


def plot_latency(report: JSON, path: Path) -> str:
    fig, axis = plt.subplots(figsize=(7, 4))
    marks = ("p50", "p99", "p99_9", "max")
    for point in report["points"]:
        if point.get("access") != "random" or point["clients"] not in (1, 16):
            continue
        shown = [(mark, point["latency_ms"][mark]) for mark in marks
                 if mark in point["latency_ms"]]
        axis.plot([m.replace("_", ".") for m, _ in shown], [v for _, v in shown], marker="o",
                  label=f"{point['clients']} client(s), batch {point['batch']}")
    axis.set_yscale("log")
    axis.set_ylabel("ms per GetPages request")
    axis.set_title("GetPages latency percentiles (random blocks)")
    axis.legend(fontsize=8)
    _save(fig, path)
    return "page service latency distribution"


def plot_cache(report: JSON, path: Path) -> str:
    points = report["figures"]["cache"]
    pairs = sorted({(p["batch"], p["access"]) for p in points})
    labels = [f"batch {batch}\n{access}" for batch, access in pairs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for offset, state, color in ((-0.2, "miss", COMPUTE_COLOR), (0.2, "hit", LOCAL_COLOR)):
        chosen = {(p["batch"], p["access"]): p for p in points if p["state"] == state}
        positions = [i + offset for i in range(len(pairs))]
        left.bar(positions, [chosen[pair]["first_request_ms"] for pair in pairs], 0.4,
                 color=color, label=f"layer cache {state}")
        right.bar(positions, [chosen[pair]["pages_per_s"] for pair in pairs], 0.4,
                  color=color, label=f"layer cache {state}")
    for axis, label in ((left, "ms, first request of the pass"),
                        (right, "pages/s over the pass")):
        axis.set_xticks(range(len(pairs)), labels, fontsize=8)
        axis.set_ylabel(label)
        axis.legend(fontsize=8)
    fig.suptitle(f"GetPages with an empty and a full layer cache ({report['config']['storage']})")
    _save(fig, path)
    return "page service: layer cache miss against hit"


def plot_branch_sizes(report: JSON, path: Path) -> str:
    figures = report["figures"]
    sizes = list(figures["branch_creation"])
    labels = [f"{figures['tenants'][size]['database_bytes'] / 1e6:,.0f} MB" for size in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    left.boxplot([[s * 1000 for s in figures["branch_creation"][size]["rpc_s"]["samples"]]
                  for size in sizes], tick_labels=labels)
    left.set_ylabel("ms per CreateBranch RPC")
    left.set_ylim(bottom=0)
    left.set_xlabel("database size")
    left.set_title("creating the branch")
    forks = [figures["branch_creation"][size]["fork_to_first_row_s"]["median"]
             for size in sizes]
    right.bar(labels, forks, color=COMPUTE_COLOR)
    right.set_ylabel("s, create + compute start + first row")
    right.set_xlabel("database size")
    right.set_title("a fork ready for queries")
    fig.suptitle("Branch creation against database size")
    _save(fig, path)
    return "branch creation against database size"


def plot_storage(report: JSON, path: Path) -> str:
    store = report["figures"]["branches"]
    steps = store["steps"]
    counts = [step["branches"] for step in steps]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(counts, [step["owned_bytes"] / 1e6 for step in steps], marker="o",
              color=COMPUTE_COLOR, label="stored (owned layers)")
    left.plot(counts, [step["logical_bytes"] / 1e6 for step in steps], linestyle="--",
              color=LOCAL_COLOR, label="full copies (sum of logical sizes)")
    left.set_xlabel("branches, each with 1 % of its table rewritten")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("MB")
    left.set_ylim(bottom=0)
    left.set_title("storage against number of branches")
    left.legend(fontsize=8)
    stages = [("base", steps[0]), (f"{counts[-1]} branches", steps[-1]),
              ("main\nrewritten", store["main_rewritten"]),
              ("branches\ndeleted", store["after_delete"]), ("after GC", store["after_gc"])]
    right.bar([label for label, _ in stages], [s["owned_bytes"] / 1e6 for _, s in stages],
              color=[LOCAL_COLOR, COMPUTE_COLOR, COMPUTE_COLOR, COMPUTE_COLOR, LOCAL_COLOR])
    right.set_ylabel("MB owned by the tenant")
    right.set_title(f"GC reclaim ({store['gc_s']:.2f} s)")
    _save(fig, path)
    return "storage against number of branches, and GC reclaim"


def plot_branch_count(report: JSON, path: Path) -> str:
    steps = report["figures"]["steps"]
    baseline = report.get("baseline")
    fig, axis = plt.subplots(figsize=(7, 4))
    for operation, color in (("create_branch", "C0"), ("delete_branch", "C1"),
                             ("create_checkpoint", "C2")):
        axis.plot([step["branches"] for step in steps],
                  [step[operation]["ms"]["median"] for step in steps], marker="o",
                  color=color, label=operation)
        if baseline is not None:
            older = baseline["figures"]["steps"]
            axis.plot([step["branches"] for step in older],
                      [step[operation]["ms"]["median"] for step in older], marker="x",
                      linestyle="--", color=color, alpha=0.6,
                      label=f"{operation} ({baseline['label']})")
    axis.set_xscale("log")
    axis.set_ylim(bottom=0)
    axis.set_xlabel("branches in the tenant")
    axis.set_ylabel("median ms per call")
    axis.set_title("Branch changes against the number of branches")
    axis.legend(fontsize="small")
    _save(fig, path)
    return "branch create, delete and checkpoint against the number of branches"


def plot_footprint(report: JSON, path: Path) -> str:
    samples = report["figures"]["samples"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2),
                                      gridspec_kw={"width_ratios": [3, 2]})
    branches = sorted({name for point in samples for name in point["owned"]})
    steps = range(len(samples))
    for name in branches:
        left.plot(steps, [point["owned"].get(name, 0) / 1e6 for point in samples],
                  marker="o", label=f"{name} owned")
    left.plot(steps, [point["store_bytes"] / 1e6 for point in samples], linestyle="--",
              color=LOCAL_COLOR, label="object store")
    left.plot(steps, [point["pageserver_disk_bytes"] / 1e6 for point in samples],
              linestyle=":", color="black", label="page server on disk")
    left.plot(steps, [point["home_disk_bytes"] / 1e6 for point in samples],
              linestyle="-.", color="grey", label="home on disk (computes' caches too)")
    left.set_xticks(list(steps), [point["phase"] for point in samples], rotation=35,
                    ha="right", fontsize=7)
    left.set_ylabel("MB")
    left.set_ylim(bottom=0)
    left.set_title("bytes through load, pgbench, compaction and GC")
    left.legend(fontsize=7)
    compacted = next(point for point in samples if point["phase"] == "forks compacted")
    names = list(compacted["owned"])
    right.bar(names, [compacted["owned"][name] / 1e6 for name in names], color=COMPUTE_COLOR)
    right.axhline(report["figures"]["sizes"]["items_bytes"] / 1e6, color=LOCAL_COLOR,
                  linestyle="--", label="items with its index")
    right.set_ylabel("MB owned after compaction")
    right.set_title("owned bytes per branch")
    right.legend(fontsize=7)
    _save(fig, path)
    return "storage footprint over time and per branch"


def plot_cold_scan(report: JSON, path: Path) -> str:
    cold = report["figures"]["cold_scan"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8),
                                      gridspec_kw={"width_ratios": [2, 3]})
    for position, (key, color) in enumerate((("compute_mb_s", COMPUTE_COLOR),
                                             ("local_mb_s", LOCAL_COLOR))):
        left.bar([position], [cold[key]["median"]], 0.6, color=color,
                 yerr=[[cold[key]["median"] - cold[key]["min"]],
                       [cold[key]["max"] - cold[key]["median"]]], capsize=3)
        left.scatter([position] * len(cold[key]["samples"]), cold[key]["samples"],
                     color="black", s=10, zorder=3)
    left.axhline(400, color="red", linestyle="--", linewidth=1, label="target 400 MB/s")
    left.set_xticks([0, 1], ["compute", "local"])
    left.set_ylabel("MB/s (median, min-max, each scan)")
    left.set_title(f"{cold['table_bytes'] / 1e6:.0f} MB, {cold['cache_mb']} MB cache")
    left.legend(fontsize=8)
    trips = cold["round_trips"]["median"]
    shown = [("pages per\nround trip", cold["pages_served"]["median"] / max(trips, 1)),
             ("most requests\nin flight", cold["max_in_flight"]["median"]),
             ("read-ahead share\nof requests, %",
              100 * cold["read_ahead_requests"]["median"] / max(trips, 1))]
    if "fuse_read_kb" in cold:  # reports from before rfcs/0025 lack it
        shown.append(("KB per read\nfrom the kernel", cold["fuse_read_kb"]["median"]))
    bars = right.bar([label for label, _ in shown], [value for _, value in shown],
                     color=COMPUTE_COLOR)
    right.bar_label(bars, fmt="%.0f", fontsize=8)
    right.set_title(f"the compute's side: {trips:.0f} GetPages round trips")
    fig.suptitle("Cold heap scan, compute vs local PostgreSQL")
    _save(fig, path)
    return "cold sequential scan: throughput, pages per round trip, requests in flight"


COMMIT_RUNS = (("commit", "commit,\n1 client"), ("read_write", "read-write,\n4 clients"))
COMPUTE_SIDES = (("compute", "object store"), ("compute_local_ack", "local ack"))


def _per_txn(report: JSON, run: str, side: str, name: str) -> float:
    figure = report["figures"][run]["per_txn"][side].get(name)
    return float(figure["median"]) if figure is not None else 0.0


def plot_commit_cost(report: JSON, path: Path) -> str:
    bars = [(run, side, f"{label}\n{durability}") for run, label in COMMIT_RUNS
            for side, durability in COMPUTE_SIDES
            if side in report["figures"][run]["per_txn"]]
    at = range(len(bars))
    labels = [label for _, _, label in bars]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    cpu, switches, sync, shipped = axes[0][0], axes[0][1], axes[1][0], axes[1][1]
    bottom = [0.0] * len(bars)
    for part, color in (("daemon", COMPUTE_COLOR), ("server", "#e08a3c")):
        values = [_per_txn(report, run, side, f"{part}_cpu_s") * 1000 for run, side, _ in bars]
        cpu.bar(at, values, bottom=bottom, color=color,
                label="mount daemon" if part == "daemon" else "page server")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    cpu.axhline(0.35, color="red", linestyle="--", linewidth=1, label="target 0.35 ms")
    cpu.set_ylabel("ms of CPU per transaction")
    cpu.set_title("CPU per commit by component")
    bottom = [0.0] * len(bars)
    for part, kind, color in (("daemon", "voluntary", COMPUTE_COLOR),
                              ("daemon", "involuntary", "#8fb0dd"),
                              ("server", "voluntary", "#e08a3c"),
                              ("server", "involuntary", "#f3c597")):
        values = [_per_txn(report, run, side, f"{part}_{kind}_switches")
                  for run, side, _ in bars]
        switches.bar(at, values, bottom=bottom, color=color, label=f"{part}, {kind}")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    switches.set_ylabel("context switches per transaction")
    switches.set_title("context switches per commit")
    runs = [(run, side, f"{label}\n{'local PG' if side == 'local' else durability}")
            for run, label in COMMIT_RUNS
            for side, durability in (*COMPUTE_SIDES, ("local", ""))
            if side in report["figures"][run]["per_txn"]]
    bottom = [0.0] * len(runs)
    for name, color, label in (("wal_write_time", COMPUTE_COLOR, "WAL write (with O_DSYNC: "
                                "the sync too)"), ("wal_sync_time", LOCAL_COLOR, "WAL sync")):
        values = [_per_txn(report, run, side, name) for run, side, _ in runs]
        sync.bar(range(len(runs)), values, bottom=bottom, color=color, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    sync.set_xticks(range(len(runs)), [label for _, _, label in runs], fontsize=7)
    sync.set_ylabel("ms per transaction (pg_stat_wal)")
    sync.set_title("WAL write and sync time per commit")
    width = 0.27
    for offset, (name, color, label) in zip(
            (-width, 0.0, width),
            (("wal_bytes", LOCAL_COLOR, "WAL written by PostgreSQL"),
             ("ingested_bytes", COMPUTE_COLOR, "shipped to the page server"),
             ("uploaded_bytes", "#e08a3c", "written to the object store")), strict=True):
        shipped.bar([i + offset for i in at],
                    [_per_txn(report, run, side, name) / 1024 for run, side, _ in bars],
                    width, color=color, label=label)
    shipped.set_ylabel("KB per transaction")
    shipped.set_title("bytes shipped per transaction")
    for axis in (cpu, switches, shipped):
        axis.set_xticks(at, labels, fontsize=7)
    for axis in (cpu, switches, sync, shipped):
        axis.legend(fontsize=7)
    fig.suptitle(f"Cost per transaction on the compute's write path; objects in "
                 f"{report['storage']}")
    _save(fig, path)
    return "cost per commit: CPU and context switches by component, WAL time, bytes shipped"


Target = tuple[str, float, float, bool]  # label, measured, target, higher is better


def issue_targets(compute: JSON | None, commit: JSON | None) -> list[Target]:
    """The data path's targets (issue 13) that this run measured, each with its figure."""
    targets: list[Target] = []
    if compute is not None:
        figures = compute["figures"]
        targets += [("pgbench read-write,\ncompute/local", figures["read_write"]["ratio"],
                     0.6, True),
                    ("pgbench -S,\ncompute/local", figures["read_only"]["ratio"], 0.9, True),
                    ("pgbench -i time,\ncompute/local", figures["load"]["ratio"], 2.5, False),
                    ("cold scan,\nMB/s", figures["cold_scan"]["compute_mb_s"]["median"],
                     400.0, True)]
    if commit is not None:
        costs = commit["figures"]["commit"]["per_txn"]["compute"]
        cpu_ms = (costs["daemon_cpu_s"]["median"] + costs["server_cpu_s"]["median"]) * 1000
        targets.append(("CPU per commit,\ndaemon + server, ms", cpu_ms, 0.35, False))
    return targets


def plot_targets(targets: list[Target], path: Path) -> str:
    """Each figure as the share of its target reached (1 = met), the measured value above."""
    shares = [measured / target if higher else target / measured
              for _, measured, target, higher in targets]
    fig, axis = plt.subplots(figsize=(max(6.0, 1.6 * len(targets)), 4))
    bars = axis.bar(range(len(targets)), shares,
                    color=[COMPUTE_COLOR if share >= 1 else "#c65b5b" for share in shares])
    for bar, (_, measured, target, higher) in zip(bars, targets, strict=True):
        axis.annotate(f"{measured:.3g}\n({'>=' if higher else '<='} {target:g})",
                      (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    axis.axhline(1.0, color="black", linestyle="--", linewidth=1)
    axis.set_xticks(range(len(targets)), [label for label, _, _, _ in targets], fontsize=8)
    axis.set_ylabel("share of the target reached (1 = met)")
    axis.set_ylim(0, max(1.2, max(shares) * 1.25))
    axis.set_title("The data path against its targets (issue 13)")
    _save(fig, path)
    return "the data path against its targets"


PLOTS: dict[str, list[tuple[str, Callable[[JSON, Path], str]]]] = {
    "compute": [("compute_tps.png", plot_compute_tps), ("cold_scan.png", plot_cold_scan)],
    "commit": [("commit.png", plot_commit), ("commit_cost.png", plot_commit_cost)],
    "proxy": [("cold_start.png", plot_cold_start)],
    "pagebench": [("pagebench.png", plot_pagebench), ("latency.png", plot_latency),
                  ("cache.png", plot_cache)],
    "branch": [("branch_create.png", plot_branch_create)],
    "branch_count": [("branch_count.png", plot_branch_count)],
    "storage": [("branch_sizes.png", plot_branch_sizes), ("storage.png", plot_storage)],
    "footprint": [("footprint.png", plot_footprint)],
}


def headlines(results: Path, statuses: dict[str, str]) -> list[str]:
    """The few ratios a reader wants first, from the suites of this run that succeeded."""
    def loaded(suite: str) -> JSON | None:
        return _load(results, suite) if statuses.get(suite) == "ok" else None

    lines = []
    if (compute := loaded("compute")) is not None:
        figures = compute["figures"]
        lines.append(f"- pgbench compute/local TPS: read-write {figures['read_write']['ratio']:.2f}"
                     f", read-only {figures['read_only']['ratio']:.2f}, read-only with small "
                     f"shared_buffers {figures['read_only_small_buffers']['ratio']:.2f}; "
                     f"`pgbench -i` {figures['load']['ratio']:.1f}x the local time; cold "
                     f"heap scan {figures['cold_scan']['compute_mb_s']['median']:.0f} MB/s "
                     f"against {figures['cold_scan']['local_mb_s']['median']:.0f} MB/s local")
    if (commit := loaded("commit")) is not None:
        figures = commit["figures"]
        latency = figures["commit"]["mean_ms"]
        lines.append(f"- commit latency (1 client, single-row INSERT): compute "
                     f"{latency['compute']['median']:.2f} ms against local "
                     f"{latency['local']['median']:.2f} ms ({latency['ratio']:.1f}x); "
                     f"read-write TPS compute/local {figures['read_write']['ratio']:.2f}; "
                     f"CPU per commit, mount daemon + page server "
                     f"{_commit_cpu_ms(commit):.2f} ms")
    if (proxy := loaded("proxy")) is not None:
        cold = proxy["figures"]["cold_start"]["first_row_s"]
        store = proxy["figures"]["agent_storage"]
        reads = proxy["figures"]["select_only"]
        lines.append(f"- cold start through the proxy: median {cold['median']:.2f} s, p90 "
                     f"{cold['p90']:.2f} s; pgbench -S through the proxy/direct "
                     f"{reads['ratio']:.2f} (TCP), {reads['socket_ratio']:.2f} (the proxy's "
                     f"unix socket); storage after {store['loops']} agent loops "
                     f"{store['after_over_base']:.3f}x the base tenant")
    if (storage := loaded("storage")) is not None:
        made = storage["figures"]["branch_creation"]
        sizes = list(made)
        steps = storage["figures"]["branches"]["steps"]
        lines.append(f"- CreateBranch: {made[sizes[0]]['rpc_s']['median'] * 1000:.1f} ms at "
                     f"{sizes[0]} MB, {made[sizes[-1]]['rpc_s']['median'] * 1000:.1f} ms at "
                     f"{sizes[-1]} MB; {steps[-1]['branches']} branches stored in "
                     f"{steps[-1]['owned_bytes'] / steps[0]['owned_bytes']:.2f}x the base "
                     f"against {steps[-1]['logical_bytes'] / steps[0]['logical_bytes']:.1f}x "
                     "for full copies")
    if (footprint := loaded("footprint")) is not None:
        figures = footprint["figures"]
        lines.append(f"- footprint: history {figures['history']['ratio']:.1f}x the WAL per "
                     f"transaction; compaction in the window {figures['compaction']['ratio']:.2f}x;"
                     f" page server disk {figures['disk']['pageserver_over_store']:.2f}x the "
                     f"store, the whole home {figures['disk']['home_over_store']:.2f}x; after "
                     "GC past a short window "
                     f"{figures['short_window']['ratio']:.2f}x pg_database_size")
    return ["## Headlines", "", *lines, ""] if lines else []


def _commit_cpu_ms(commit: JSON) -> float:
    costs = commit["figures"]["commit"]["per_txn"]["compute"]
    return float(costs["daemon_cpu_s"]["median"] + costs["server_cpu_s"]["median"]) * 1000


def targets_section(results: Path, statuses: dict[str, str]) -> list[str]:
    """The plot of the data path's targets, from the compute and commit suites of this run."""
    def loaded(suite: str) -> JSON | None:
        return _load(results, suite) if statuses.get(suite) == "ok" else None

    targets = issue_targets(loaded("compute"), loaded("commit"))
    if not targets:
        return []
    title = plot_targets(targets, results / "targets.png")
    return [f"## {title}", "", f"![{title}](targets.png)", ""]


def write_report(results: Path, statuses: dict[str, str], storage: str) -> Path:
    """``REPORT.md`` for the suites of one run (``statuses``: suite -> ok / failed ...)."""
    lines = ["# Strata benchmark report", "",
             f"Objects in {storage}. Each suite runs its baseline in the same invocation; "
             "details, raw samples and hosts are in the JSON next to this file.", "",
             "| suite | this run | details |", "|---|---|---|"]
    for suite, status in statuses.items():
        detail = f"[{suite}.md]({suite}.md)" if status == "ok" else "no figures reported"
        lines.append(f"| {suite} | {status} | {detail} |")
    lines += ["", *headlines(results, statuses), *targets_section(results, statuses)]
    for suite, plots in PLOTS.items():
        report = _load(results, suite) if statuses.get(suite) == "ok" else None
        if report is None:
            continue
        for image, plot in plots:
            title = plot(report, results / image)
            lines += [f"## {title}", "", f"![{title}]({image})", ""]
        markdown = results / f"{suite}.md"
        if markdown.exists():  # the suite's own text, without its title
            lines += [line for line in markdown.read_text().splitlines()
                      if not line.startswith("# ")] + [""]
    path = results / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report [--results DIR]``: ``REPORT.md`` and its plots again, from the
    JSON results of the run that ``DIR/run.json`` describes (no suite is run)."""
    parser = argparse.ArgumentParser(prog="python -m bench.report",
                                     description=(main.__doc__ or "").split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the directory of run.json and the suites' JSON "
                             "[default: bench/results]")
    args = parser.parse_args(argv)
    try:
        run = json.loads((args.results / "run.json").read_text())
        statuses, storage = dict(run["suites"]), str(run["storage"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bench.report: no usable run.json in {args.results}: {exc}", file=sys.stderr)
        return 2
    print(f"report: {write_report(args.results, statuses, storage)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
