"""The benchmark report: ``REPORT.md`` with PNG plots, from the suites' JSON results.

Only suites that succeeded in the run that wrote ``run.json`` are shown; a failed or
missing suite is listed as such, never with numbers from an older run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # after use(): the backend is chosen first
from matplotlib.figure import Figure

JSON = dict[str, Any]
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


PLOTS: dict[str, tuple[str, Callable[[JSON, Path], str]]] = {
    "compute": ("compute_tps.png", plot_compute_tps),
    "proxy": ("cold_start.png", plot_cold_start),
    "pagebench": ("pagebench.png", plot_pagebench),
    "branch": ("branch_create.png", plot_branch_create),
}


def write_report(results: Path, statuses: dict[str, str]) -> Path:
    """``REPORT.md`` for the suites of one run (``statuses``: suite -> ok / failed ...)."""
    lines = ["# Strata benchmark report", "",
             "Each suite runs its baseline in the same invocation; details, raw samples and "
             "hosts are in the JSON next to this file.", "",
             "| suite | this run | details |", "|---|---|---|"]
    for suite, status in statuses.items():
        detail = f"[{suite}.md]({suite}.md)" if status == "ok" else "no figures reported"
        lines.append(f"| {suite} | {status} | {detail} |")
    lines.append("")
    for suite, (image, plot) in PLOTS.items():
        report = _load(results, suite) if statuses.get(suite) == "ok" else None
        if report is None:
            continue
        title = plot(report, results / image)
        lines += [f"## {title}", "", f"![{title}]({image})", ""]
        markdown = results / f"{suite}.md"
        if markdown.exists():
            lines += [line for line in markdown.read_text().splitlines()
                      if line.startswith("|")] + [""]
    path = results / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
