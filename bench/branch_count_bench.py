"""Cost of a branch change against the number of branches a tenant already has.

Agents leave thousands of forks behind, so creating, deleting or checkpointing a branch
must not grow with their count. One tenant is built in-process (background work off,
objects in a local directory) with a small ``main``, then grown to each count in
``COUNTS`` by forking ``main``; at each count ``Tenant.create_branch`` (followed by an
untimed delete), ``Tenant.delete_branch`` (of a branch made untimed just before) and
``Tenant.create_checkpoint`` (followed by an untimed checkpoint delete) are timed
``samples`` times each, and the median and p90 reported with the ratio of the largest
count to the smallest.

Run ``python -m bench.branch_count_bench [--quick] [--out bench/results/branch_count.json]``.
Nothing here asserts on time. With ``--out`` the JSON report, a markdown table (``.md``)
and the plot (``branch_count.png`` next to it) are written. ``--baseline REPORT.json`` (a
run of this suite on an older checkout) is carried into the report, its table and plot,
for a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench import objectstore
from bench.harness import JSON, dump_json, host_info, stop_on_sigterm, summary, timed, versions
from bench.report import plot_branch_count
from bench.synthetic import build_small, open_engine
from pageserver.tenant import Tenant

TENANT = "small"  # bench.synthetic.build_small: 1,000 page versions in one layer on main
OPERATIONS = ("create_branch", "delete_branch", "create_checkpoint")
SEED = 20261130
PLOT = "branch_count.png"  # the name bench.report gives it too


@dataclass(frozen=True)
class Settings:
    """Branch counts measured and timed repeats per operation and count."""

    mode: str
    counts: tuple[int, ...]
    samples: int
    warmup: int


FULL = Settings(mode="full", counts=(10, 100, 1_000, 10_000), samples=25, warmup=3)
QUICK = Settings(mode="quick", counts=(10, 100, 1_000), samples=9, warmup=2)


def grow(tenant: Tenant, count: int) -> float:
    """Fork ``main`` until the tenant has ``count`` branches; seconds taken."""
    started = time.perf_counter()
    for number in range(len(tenant.manifest.branches), count):
        tenant.create_branch(f"fork-{number:05d}")
    return time.perf_counter() - started


def sample(settings: Settings, action: Callable[[int], Callable[[], object]],
           undo: Callable[[int], object]) -> list[float]:
    """Milliseconds of ``action(i)()`` for each kept round; ``undo(i)`` untimed after it.
    ``action(i)`` itself (the set-up) is untimed too."""
    kept: list[float] = []
    for round_no in range(settings.warmup + settings.samples):
        ms = timed(action(round_no)) * 1000
        undo(round_no)
        if round_no >= settings.warmup:
            kept.append(ms)
    return kept


def measure(tenant: Tenant, settings: Settings) -> dict[str, list[float]]:
    """Timed samples of each operation at the tenant's current branch count."""
    def deletable(i: int) -> Callable[[], object]:
        tenant.create_branch(f"bench-delete-{i}")
        return lambda: tenant.delete_branch(f"bench-delete-{i}")

    return {
        "create_branch": sample(
            settings, lambda i: lambda: tenant.create_branch(f"bench-create-{i}"),
            lambda i: tenant.delete_branch(f"bench-create-{i}")),
        "delete_branch": sample(settings, deletable, lambda i: None),
        "create_checkpoint": sample(
            settings, lambda i: lambda: tenant.create_checkpoint("main", f"bench-cp-{i}"),
            lambda i: tenant.delete_checkpoint(f"bench-cp-{i}")),
    }


def run(home: Path, settings: Settings) -> JSON:
    """Grow one tenant through ``settings.counts``, timing the operations at each."""
    store = objectstore.suite_store("branch_count", home / "objects")
    engine = open_engine(home / "pageserver", store)
    try:
        build_small(engine, np.random.default_rng(SEED), versions=1000, random_bytes=256)
        tenant = engine.tenant(TENANT)
        steps: list[JSON] = []
        for count in settings.counts:
            grow_s = grow(tenant, count)
            samples = measure(tenant, settings)
            steps.append({"branches": count, "grow_seconds": grow_s,
                          **{op: {"ms": summary(values)} for op, values in samples.items()}})
            medians = ", ".join(f"{op} {steps[-1][op]['ms']['median']:.2f} ms"
                                for op in OPERATIONS)
            print(f"{count:>6} branches (grown in {grow_s:.1f} s): {medians}", flush=True)
    finally:
        engine.close(flush=False)
    first, last = steps[0], steps[-1]
    ratios = {op: last[op]["ms"]["median"] / first[op]["ms"]["median"] for op in OPERATIONS}
    return {"storage": objectstore.describe(), "steps": steps,
            "ratio_last_to_first": ratios}


def render_table(figures: JSON) -> list[str]:
    """Markdown lines: median (p90) per count and operation, and the ratios."""
    steps = figures["steps"]
    lines = [
        "| branches | " + " | ".join(f"`{op}`" for op in OPERATIONS) + " | grown in s |",
        "|--:|" + "--:|" * (len(OPERATIONS) + 1),
    ]
    for step in steps:
        cells = [f"{step[op]['ms']['median']:.2f} ({step[op]['ms']['p90']:.2f})"
                 for op in OPERATIONS]
        lines.append(f"| {step['branches']:,} | " + " | ".join(cells)
                     + f" | {step['grow_seconds']:.1f} |")
    ratio = figures["ratio_last_to_first"]
    lines.append(f"| {steps[-1]['branches']:,} / {steps[0]['branches']:,} | "
                 + " | ".join(f"{ratio[op]:.2f}x" for op in OPERATIONS) + " | |")
    return lines


def render_markdown(report: JSON) -> str:
    """The machine, the table of medians (p90) per count and operation, and the ratios;
    the baseline's too if there is one."""
    host, config, figures = report["host"], report["config"], report["figures"]
    lines = [
        "# Strata branch changes against the number of branches",
        "",
        f"`python -m bench.branch_count_bench{' --quick' if config['mode'] == 'quick' else ''}`"
        f" on {host['hostname']} ({host['cpu_count']} CPUs), Python {host['python']}, "
        f"{host['started_utc']}, commit {host['git_commit']} ({host['git_dirty_files']} files "
        f"differ from it). Objects: {figures['storage']}. Total {report['total_seconds']:.0f} s.",
        "",
        f"One tenant grown by forking `main`; at each count {config['samples']} timed calls "
        f"per operation after {config['warmup']} warm-up calls, in-process (background work "
        "off). Median ms (p90).",
        "",
        *render_table(figures),
        "",
    ]
    baseline = report.get("baseline")
    if baseline is not None:
        lines += [f"Baseline: {baseline['label']}, run {baseline['host']['started_utc']} on "
                  f"the same machine (total {baseline['total_seconds']:.0f} s).", "",
                  *render_table(baseline["figures"]), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.branch_count_bench",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="up to 1,000 branches, fewer samples")
    parser.add_argument("--baseline", type=Path, metavar="REPORT.json",
                        help="an older run of this suite to compare with")
    parser.add_argument("--baseline-label", default="the baseline",
                        help="what the baseline ran (a commit)")
    parser.add_argument("--out", type=Path,
                        help="write the JSON report here (and a .md copy, and the plot)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    stop_on_sigterm()
    host = host_info()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="strata-branch-count-") as tmp:
        figures = run(Path(tmp), settings)
    report: JSON = {
        "host": {**host, "finished_utc": datetime.now(UTC).isoformat(timespec="seconds")},
        "versions": versions(), "config": asdict(settings), "figures": figures,
        "total_seconds": time.perf_counter() - started,
    }
    if args.baseline is not None:
        older = json.loads(args.baseline.read_text())
        report["baseline"] = {"label": args.baseline_label, "host": older["host"],
                              "figures": older["figures"],
                              "total_seconds": older["total_seconds"]}
    print(render_markdown(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(dump_json(report) + "\n")
        args.out.with_suffix(".md").write_text(render_markdown(report))
        plot = args.out.parent / PLOT
        plot_branch_count(report, plot)
        print(f"wrote {args.out}, its .md and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
