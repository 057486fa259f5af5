"""``python -m bench [--quick] [--only SUITE,...] [--storage s3://...|moto]``: every
benchmark, then one report.

Suites run one after another, each in its own process, each writing
``bench/results/<suite>.json`` and ``.md``; a suite that fails keeps nothing from this run
(its result file is written only on success) and the report says it failed. At the end
``bench/results/REPORT.md`` gets the plots. The compute, commit, proxy, storage and footprint suites
need root, FUSE and PostgreSQL 15. Objects go to local directories unless ``--storage`` names
an S3 URL (``s3://bucket/prefix?endpoint=URL``, credentials from ``AWS_*``) or ``moto``
(a moto_server on loopback for the run); see bench.objectstore.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench import objectstore
from bench.report import write_report
from common.errors import InvalidArgumentError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SUITES = {  # name -> module; the order runs the cheap ones first
    "engine": "bench.engine_bench",
    "branch": "bench.branch_bench",
    "branch_count": "bench.branch_count_bench",
    "pagebench": "bench.pagebench",
    "compute": "bench.compute_bench",
    "commit": "bench.commit_bench",
    "proxy": "bench.proxy_bench",
    "storage": "bench.storage_bench",
    "footprint": "bench.footprint_bench",
}


def run_suite(name: str, module: str, quick: bool, results: Path) -> str:
    """Run one suite into a scratch file; move it into place only if it succeeded."""
    scratch = results / f".{name}.running.json"
    command = [sys.executable, "-m", module, "--out", str(scratch), *(["--quick"] if quick
                                                                     else [])]
    began = time.monotonic()
    print(f"== {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=ROOT, check=False)
    seconds = time.monotonic() - began
    if done.returncode != 0 or not scratch.exists():
        scratch.unlink(missing_ok=True)
        scratch.with_suffix(".md").unlink(missing_ok=True)
        print(f"== {name}: FAILED (exit {done.returncode}) after {seconds:.0f} s; "
              "no figures reported", file=sys.stderr)
        return f"failed (exit {done.returncode})"
    scratch.replace(results / f"{name}.json")
    if scratch.with_suffix(".md").exists():
        scratch.with_suffix(".md").replace(results / f"{name}.md")
    print(f"== {name}: ok in {seconds:.0f} s", file=sys.stderr)
    return "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every suite's quick mode")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SUITES)}")
    parser.add_argument("--out-dir", type=Path, default=RESULTS,
                        help="where results and REPORT.md go [default: bench/results]")
    parser.add_argument("--storage", metavar="s3://BUCKET/PREFIX?endpoint=URL|moto",
                        help="object store of every suite [default: local directories]")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SUITES)
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        parser.error(f"unknown suites: {', '.join(unknown)}")
    results: Path = args.out_dir.resolve()
    results.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if args.storage == "moto":
            args.storage = stack.enter_context(objectstore.moto_for_run())
        if args.storage:
            os.environ[objectstore.ENV] = args.storage
        try:
            storage = objectstore.describe()
        except (ValueError, InvalidArgumentError) as exc:
            parser.error(f"--storage: {exc}")
        print(f"== objects in {storage}", file=sys.stderr)
        started = datetime.now(UTC).isoformat()
        statuses = {name: run_suite(name, SUITES[name], args.quick, results)
                    for name in chosen}
    (results / "run.json").write_text(json.dumps(
        {"started_at": started, "finished_at": datetime.now(UTC).isoformat(),
         "quick": args.quick, "storage": storage, "suites": statuses}, indent=2) + "\n")
    report = write_report(results, statuses, storage)
    print(f"report: {report}", file=sys.stderr)
    return 0 if all(status == "ok" for status in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
