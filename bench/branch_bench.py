"""Cost of creating a branch: the engine call, the CreateBranch RPC and ``strata branch create``.

Two tenants are built in-process (background work off) straight into a
temporary ``$STRATA_HOME`` (``pageserver/`` state, ``objects/`` store): ``small`` with ~1k
page versions in one layer and ``large`` with ~1M page versions written into ~25 L0 layers
and then compacted (force), so the server has no compaction backlog while timed. The
engine's ``create_branch`` is timed there first (reopened, as the server runs it); then
``python -m pageserver.main`` serves that home and the ``CreateBranch`` RPC is timed over
loopback gRPC, and, if the CLI exists, ``python -m strata.cli branch create NAME
--tenant T`` end to end (a new process each time, finding the server and the admin token
through ``$STRATA_HOME``). Every created branch is deleted again, untimed, so the tenant
manifests keep their size. Rounds alternate the tenants; the first rounds warm up and are
dropped. The objects live in ``objects/`` of the home, or under a fresh prefix of the S3
URL in ``$STRATA_BENCH_STORAGE`` (see ``bench.objectstore``), for the engine and the
server alike.

Run ``python -m bench.branch_bench [--quick] [--out bench/results/branch.json]``. Nothing
here asserts on time. With ``--out`` the JSON report and a markdown table (``.md``) are
written.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np

from bench import objectstore
from bench.harness import (
    JSON,
    ROOT,
    ServerProcess,
    dump_json,
    host_info,
    stop_on_sigterm,
    summary,
    timed,
    versions,
)
from bench.synthetic import (
    build_history,
    build_small,
    create_file,
    layer_stats,
    measure_branching,
    open_engine,
)
from pageserver.engine import Engine
from proto import strata_pb2 as pb
from proto import strata_pb2_grpc as pb_grpc

TENANTS = ("small", "large")
RPC_BRANCH = "bench-rpc"
CLI_BRANCH = "bench-cli"
SEED = 20240601


@dataclass(frozen=True)
class Build:
    """How the two tenants are built (``bench.synthetic``) and how often the engine's
    create_branch is timed on them."""

    seed: int
    random_bytes: int  # incompressible bytes per 8 KB page; the rest is zeros
    read_blocks: int  # large tenant: blocks of its relation
    read_passes: int  # ... each block written this many times (page versions = product)
    read_l0_layers: int  # ... L0 layers the history is flushed into
    branch_small_versions: int  # small tenant: page versions, in one layer
    branch_samples: int  # timed engine create_branch calls per tenant

    @property
    def read_versions(self) -> int:
        return self.read_blocks * self.read_passes


@dataclass(frozen=True)
class Settings:
    """Sizes and repetitions of one run."""

    mode: str
    samples: int  # timed creates per tenant and way of creating
    warmup_rounds: int
    build: Build


FULL = Settings(mode="full", samples=20, warmup_rounds=2, build=Build(
    seed=SEED, random_bytes=256, read_blocks=200_000, read_passes=5, read_l0_layers=25,
    branch_small_versions=1000, branch_samples=20))
QUICK = Settings(mode="quick", samples=5, warmup_rounds=1, build=Build(
    seed=SEED, random_bytes=256, read_blocks=50_000, read_passes=2, read_l0_layers=10,
    branch_small_versions=1000, branch_samples=5))


def timed_ms(action: Callable[[], object]) -> float:
    """Milliseconds ``action`` takes."""
    return timed(action) * 1000


def build_and_time_engine(home: Path, store: str, settings: Settings) -> JSON:
    """Build both tenants into ``home`` and ``store``, then time the engine's
    create_branch on each, reopened as the server runs it."""
    build = settings.build
    rng = np.random.default_rng(build.seed)
    started = time.perf_counter()
    engine = open_engine(home / "pageserver", store)
    try:
        build_small(engine, rng, versions=build.branch_small_versions,
                    random_bytes=build.random_bytes)
        large = engine.create_tenant("large").branch("main")
        create_file(large, build.read_blocks)
        _, large_build = build_history(large, rng, blocks=build.read_blocks,
                                       passes=build.read_passes,
                                       l0_layers=build.read_l0_layers,
                                       random_bytes=build.random_bytes)
        # Compacted here, so the server finds no L0 backlog to compact while being timed.
        compact_start = time.perf_counter()
        compaction = asdict(engine.compact("large", force=True))
        compaction["seconds"] = time.perf_counter() - compact_start
    finally:
        engine.close()
    build_s = time.perf_counter() - started
    engine = open_engine(home / "pageserver", store)
    try:
        cases = measure_branching(engine, {tenant: (tenant, None) for tenant in TENANTS},
                                  build.branch_samples)
        last_batch = time_last_batch(engine, settings)
        layers = {tenant: layer_stats(engine.timeline(tenant, "main")) for tenant in TENANTS}
    finally:
        engine.close()
    return {
        "how": "in-process Engine (background work off) writing into the "
               "server's state directory and object store before the server starts; the large "
               "tenant compacted (force) after its build",
        "page_versions": {"small": build.branch_small_versions, "large": build.read_versions},
        "layers": layers, "large_build": large_build, "large_compaction": compaction,
        "build_seconds": build_s,
        "engine_create_branch": {tenant: {"samples_ms": case["samples_ms"],
                                          "ms": case["ms"]}
                                 for tenant, case in cases.items()},
        "new_branch_last_batch": last_batch,
    }


def time_last_batch(engine: Engine, settings: Settings) -> JSON:
    """``Timeline.last_batch()`` of a just-created branch: the CreateBranch RPC calls it (for
    the branch info it answers with), the engine's create_branch does not."""
    samples: dict[str, list[float]] = {tenant: [] for tenant in TENANTS}
    for round_no in range(settings.warmup_rounds + settings.samples):
        for tenant_id in TENANTS:
            tenant = engine.tenant(tenant_id)
            child = tenant.create_branch("bench-child")
            ms = timed_ms(child.last_batch)
            tenant.delete_branch("bench-child")
            if round_no >= settings.warmup_rounds:
                samples[tenant_id].append(ms)
    return {tenant: {"samples_ms": values, "ms": summary(values)}
            for tenant, values in samples.items()}


def time_rpcs(server: ServerProcess, settings: Settings) -> JSON:
    """CreateBranch (then an untimed DeleteBranch) per tenant, GetBranch of main, ListTenants."""
    admin = server.metadata()
    names = ("create_branch", "get_branch_main")
    samples: dict[str, dict[str, list[float]]] = {n: {t: [] for t in TENANTS} for n in names}
    floor: list[float] = []
    lsns: dict[str, int] = {}
    with server.channel() as channel:
        manage = pb_grpc.ManagementServiceStub(channel)  # type: ignore[no-untyped-call]
        for round_no in range(settings.warmup_rounds + settings.samples):
            keep = round_no >= settings.warmup_rounds
            for tenant in TENANTS:
                create = pb.CreateBranchRequest(tenant=tenant, name=RPC_BRANCH)
                start = time.perf_counter()
                created = manage.CreateBranch(create, metadata=admin, timeout=60)
                create_ms = (time.perf_counter() - start) * 1000
                lsns[tenant] = created.branch.branch_lsn
                manage.DeleteBranch(pb.DeleteBranchRequest(tenant=tenant, name=RPC_BRANCH),
                                    metadata=admin, timeout=60)
                get_ms = timed_ms(partial(manage.GetBranch, pb.GetBranchRequest(
                    tenant=tenant, name="main"), metadata=admin, timeout=60))
                if keep:
                    samples["create_branch"][tenant].append(create_ms)
                    samples["get_branch_main"][tenant].append(get_ms)
            list_ms = timed_ms(partial(manage.ListTenants, pb.ListTenantsRequest(),
                                       metadata=admin, timeout=60))
            if keep:
                floor.append(list_ms)
    return {
        "branch_lsns": lsns,
        **{name: {tenant: {"samples_ms": values, "ms": summary(values)}
                  for tenant, values in by_tenant.items()}
           for name, by_tenant in samples.items()},
        "list_tenants": {"samples_ms": floor, "ms": summary(floor)},
    }


def cli_missing() -> str | None:
    """Why ``python -m strata.cli branch create`` cannot be timed, or None if it can."""
    if importlib.util.find_spec("strata.cli") is None:
        return "no strata.cli module in this checkout"
    done = subprocess.run([sys.executable, "-m", "strata.cli", "branch", "create", "--help"],
                          cwd=ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        return f"`strata branch create --help` failed ({done.returncode}): {done.stderr[-300:]}"
    return None


def time_cli(home: Path, server: ServerProcess, settings: Settings) -> JSON:
    """``strata branch create`` per tenant in a new process, with the start-up baselines."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("STRATA_SERVER", "STRATA_TOKEN", "STRATA_TENANT")}
    env.update(STRATA_HOME=str(home), PYTHONPATH=str(ROOT))

    def run(*args: str) -> float:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr}")
        return seconds * 1000

    creates: dict[str, list[float]] = {tenant: [] for tenant in TENANTS}
    interpreter: list[float] = []
    cli_help: list[float] = []
    admin = server.metadata()
    with server.channel() as channel:
        manage = pb_grpc.ManagementServiceStub(channel)  # type: ignore[no-untyped-call]
        for round_no in range(settings.warmup_rounds + settings.samples):
            keep = round_no >= settings.warmup_rounds
            for tenant in TENANTS:
                ms = run("-m", "strata.cli", "branch", "create", CLI_BRANCH, "--tenant", tenant)
                manage.DeleteBranch(pb.DeleteBranchRequest(tenant=tenant, name=CLI_BRANCH),
                                    metadata=admin, timeout=60)
                if keep:
                    creates[tenant].append(ms)
            python_ms, help_ms = run("-c", "pass"), run("-m", "strata.cli", "--help")
            if keep:
                interpreter.append(python_ms)
                cli_help.append(help_ms)
    return {
        "command": "python -m strata.cli branch create NAME --tenant T (STRATA_HOME set)",
        "create_branch": {tenant: {"samples_ms": values, "ms": summary(values)}
                          for tenant, values in creates.items()},
        "python_c_pass": {"samples_ms": interpreter, "ms": summary(interpreter)},
        "cli_help": {"samples_ms": cli_help, "ms": summary(cli_help)},
    }


def table_rows(report: JSON) -> list[tuple[str, JSON | None, JSON | None]]:
    """(measure, small summary, large summary) per row of the table."""
    build, rpc, cli = report["build"], report["rpc"], report["cli"]
    rows: list[tuple[str, JSON | None, JSON | None]] = [
        ("engine `Tenant.create_branch`, in-process",
         *(build["engine_create_branch"][t]["ms"] for t in TENANTS)),
        ("engine `Timeline.last_batch()` of the new branch (part of the RPC's reply)",
         *(build["new_branch_last_batch"][t]["ms"] for t in TENANTS)),
        ("`CreateBranch` RPC (sync gRPC client, loopback)",
         *(rpc["create_branch"][t]["ms"] for t in TENANTS)),
        ("`GetBranch main` RPC (the branch info CreateBranch also returns)",
         *(rpc["get_branch_main"][t]["ms"] for t in TENANTS)),
        ("`ListTenants` RPC (floor: a management call doing almost nothing)",
         rpc["list_tenants"]["ms"], None),
    ]
    if "create_branch" in cli:
        rows += [
            ("`strata branch create` end to end (new process)",
             *(cli["create_branch"][t]["ms"] for t in TENANTS)),
            ("`python -c pass` (interpreter start-up)", cli["python_c_pass"]["ms"], None),
            ("`strata --help` (interpreter + CLI imports, no RPC)", cli["cli_help"]["ms"], None),
        ]
    return rows


def render_table(report: JSON) -> list[str]:
    """The results as markdown table lines."""
    versions_ = report["build"]["page_versions"]
    lines = [f"| measure | small ({versions_['small']:,} versions): median ms | p90 "
             f"| large ({versions_['large']:,} versions): median ms | p90 | large / small |",
             "|---|--:|--:|--:|--:|--:|"]
    for measure, small, large in table_rows(report):
        cells = [f"{s['median']:.2f} | {s['p90']:.2f}" if s else "- | -" for s in (small, large)]
        ratio = f"{large['median'] / small['median']:.2f}" if small and large else "-"
        lines.append(f"| {measure} | {cells[0]} | {cells[1]} | {ratio} |")
    return lines


def render_markdown(report: JSON) -> str:
    """A short markdown report: machine, how the tenants were built, the table, notes."""
    host, build, config = report["host"], report["build"], report["config"]
    cli = report["cli"]
    lines = [
        "# Strata branch creation: engine, RPC and CLI",
        "",
        f"`python -m bench.branch_bench{' --quick' if config['mode'] == 'quick' else ''}` on "
        f"{host['hostname']} ({host['cpu_count']} CPUs, {host['memory_gb']} GB), Python "
        f"{host['python']}, " + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + f", {host['started_utc']}, commit {host['git_commit']} ({host['git_dirty_files']} "
        f"files differ from it). Objects: {config['storage']}. "
        f"Total {report['total_seconds']:.0f} s.",
        "",
        f"Tenants: {build['how']}; {build['build_seconds']:.0f} s in all, of which "
        f"{build['large_compaction']['seconds']:.0f} s the large tenant's compaction. Small: "
        f"{build['layers']['small']['total']} layer(s); large: {build['layers']['large']['total']} "
        f"layers ({build['layers']['large']['bytes'] / 2**20:.0f} MB). The page server then "
        f"started on that home in {report['server_start_seconds']:.1f} s. "
        f"{config['samples']} timed creates per tenant and row after "
        f"{config['warmup_rounds']} warm-up round(s); each create is followed by an untimed "
        "delete. All at the parent's latest LSN.",
        "",
        *render_table(report),
        "",
    ]
    if "missing" in cli:
        lines += [f"End-to-end CLI figure missing: {cli['missing']}.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Build, time the engine, start the server, time the RPC and the CLI; write reports."""
    parser = argparse.ArgumentParser(prog="python -m bench.branch_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller large tenant, fewer samples")
    parser.add_argument("--out", type=Path, help="write the JSON report here (and a .md copy)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    stop_on_sigterm()
    host = host_info()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="strata-branch-bench-") as tmp:
        home = Path(tmp)
        store = objectstore.suite_store("branch", home / "objects")
        print(f"building tenants in {home} ({settings.build.read_versions:,} versions) ...",
              flush=True)
        build = build_and_time_engine(home, store, settings)
        (home / "logs").mkdir()
        server = ServerProcess(home / "pageserver", store, home / "logs" / "pageserver.log")
        with server:
            server_start_s = server.start_seconds
            print(f"[{time.perf_counter() - started:6.1f}s] server up in {server_start_s:.1f} s; "
                  "timing RPCs", flush=True)
            rpc = time_rpcs(server, settings)
            missing = cli_missing()
            print(f"[{time.perf_counter() - started:6.1f}s] CLI: {missing or 'timing'}", flush=True)
            cli = {"missing": missing} if missing else time_cli(home, server, settings)
    report: JSON = {
        "host": {**host, "finished_utc": datetime.now(UTC).isoformat(timespec="seconds")},
        "versions": versions(),
        "config": {**asdict(settings), "storage": objectstore.describe()},
        "build": build,
        "server_start_seconds": server_start_s,
        "rpc": rpc,
        "cli": cli,
        "total_seconds": time.perf_counter() - started,
    }
    print()
    print("\n".join(render_table(report)))
    print(f"\n{settings.mode} run: {report['total_seconds']:.0f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(dump_json(report) + "\n")
        args.out.with_suffix(".md").write_text(render_markdown(report))
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
