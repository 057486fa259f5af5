"""Scale to zero and the agent workflow, measured through the proxy as clients see it.

Everything runs as users run it, under a temporary ``$STRATA_HOME``: ``strata up`` (page
server and proxy), ``strata tenant create``, ``strata connect``; clients are psycopg.

Figures:
- Cold start: a client connects through the proxy to a branch whose compute is stopped
  (as after an idle suspend) until its first row arrives; median and p90 over repeated
  wakes, with where the time goes (mount daemon ready, PostgreSQL accepting, the rest:
  proxy, authentication, first query).
- Warm connect: connect + ``SELECT 1`` + close through the proxy against the same
  directly on the compute's unix socket (peer authentication), interleaved; the proxy's
  overhead, and where it goes: the client's SCRAM key derivation (PBKDF2 with the
  credential's iterations, timed here as libpq computes it), the proxy's own CPU time
  per connect, the rest (TCP, the compute's SCRAM check of the proxy's login, waits).
- Select-only throughput: ``pgbench -S`` (a few clients, a few seconds) through the proxy
  and directly on the compute's socket; the ratio is the median of the per-round ratios
  (the goal was >= 0.9), with the proxy's CPU time per transaction. In the same rounds,
  the transport ceiling: the same pgbench on a plain PostgreSQL over TCP loopback and
  over its socket. The proxy's clients come over TCP, so even a relay that cost nothing
  could not pass that ratio; what the relay itself costs is the ratio over the ceiling.
- Undo: the latency of a ``DROP TABLE`` through the proxy on a branch with undo (an
  automatic checkpoint before it) and on one with ``--no-undo``, interleaved; and from the
  proxy's log, how long each destructive statement was held (the branch's LSN read) and
  how long the checkpoint took to write in the background.
- Storage after agent loops: bytes in the object store for the base tenant, then after
  N loops (fork with a TTL, migrate, checkpoint, destroy, restore, check) once the TTLs
  expired, the reaper deleted the forks and GC ran; both measured after a flush and
  compaction, so memtable contents are counted alike.

Run ``python -m bench.proxy_bench [--quick] [--out bench/results/proxy.json]``. A failed
step voids the run: nothing is reported. Nothing here asserts on time.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psycopg

from bench.harness import (
    JSON,
    TENANT,
    BenchError,
    LocalPostgres,
    Strata,
    interleaved,
    pgbench_tps,
    root_bench_main,
    run,
    summary,
    timed,
)
from common import scram
from common.postgres import pg_bin_dir
from compute.node import ComputeNode


@dataclass(frozen=True)
class Settings:
    mode: str
    wakes: int
    warm_connects: int
    agent_loops: int
    select_runs: int  # pgbench -S runs on each side
    select_seconds: int
    select_clients: int
    drops: int  # DROP TABLE statements timed on each side of the undo figure


FULL = Settings("full", wakes=12, warm_connects=60, agent_loops=20, select_runs=4,
                select_seconds=10, select_clients=4, drops=40)
QUICK = Settings("quick", wakes=3, warm_connects=15, agent_loops=3, select_runs=3,
                 select_seconds=4, select_clients=4, drops=15)
UNDO_LOG = re.compile(r"automatic checkpoint \S+ of \S+ at LSN \d+ \(statement held "
                      r"([0-9.]+) ms, checkpoint written in ([0-9.]+) ms\)")
SELECT_SCALE = 2  # pgbench_accounts of 200,000 rows: cached after the warm-up run


def free_tcp_port() -> int:
    """A port free on 127.0.0.1 now, for the plain PostgreSQL of the transport ceiling
    (a fixed one collided with another bench's server still going down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def first_row(uri: str) -> None:
    with psycopg.connect(uri, connect_timeout=120) as conn:
        conn.execute("SELECT 1").fetchone()


def cold_starts(strata: Strata, settings: Settings) -> JSON:
    strata("branch", "create", "sleeper")
    uri = strata("connect", "sleeper")["uri"]
    first_row(uri)  # the first start also fills the page server's caches: not timed
    totals: list[float] = []
    phases: dict[str, list[float]] = {"mount_s": [], "postgres_s": []}
    for _ in range(settings.wakes):
        strata("compute", "stop", "sleeper")  # what an idle suspend does
        totals.append(timed(lambda: first_row(uri)))
        node = ComputeNode.load(strata.home / "computes" / TENANT / "sleeper")
        if node is None or not node.start_timings:
            raise BenchError("the woken compute recorded no start timings")
        for phase in phases:
            phases[phase].append(node.start_timings[phase])
    rest = [total - sum(parts) for total, *parts in zip(totals, *phases.values(), strict=True)]
    return {"first_row_s": summary(totals), **{k: summary(v) for k, v in phases.items()},
            "proxy_auth_and_query_s": summary(rest)}


def proxy_cpu_s(strata: Strata) -> float:
    """User + system CPU seconds the proxy process (all its threads) has used so far."""
    pid = (strata.home / "run" / "proxy.pid").read_text().split()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_scram_s() -> float:
    """The client's share of a SCRAM login: SaltedPassword, PBKDF2-SHA-256 (libpq computes
    it with the same OpenSSL routine)."""
    return statistics.median(timed(partial(hashlib.pbkdf2_hmac, "sha256", b"credential",
                                           os.urandom(16), scram.ITERATIONS))
                             for _ in range(20))


def warm_connects(strata: Strata, settings: Settings) -> JSON:
    uri = strata("connect", "sleeper")["uri"]
    first_row(uri)
    node = ComputeNode.load(strata.home / "computes" / TENANT / "sleeper")
    if node is None:
        raise BenchError("no compute for the warm connects")
    proxy_cpu = [0.0]

    def connect(target: str) -> float:
        before = proxy_cpu_s(strata)
        elapsed = timed(partial(first_row, target))
        if target == uri:
            proxy_cpu[0] += proxy_cpu_s(strata) - before
        return elapsed

    figures = interleaved(settings.warm_connects, {"proxy_s": uri, "direct_s": node.spec.dsn()},
                          connect)
    overhead_ms = (figures["proxy_s"]["median"] - figures["direct_s"]["median"]) * 1000
    scram_ms = client_scram_s() * 1000
    proxy_ms = proxy_cpu[0] / settings.warm_connects * 1000
    return {**figures, "overhead_ms": overhead_ms, "client_scram_ms": scram_ms,
            "proxy_cpu_ms": proxy_ms, "rest_ms": overhead_ms - scram_ms - proxy_ms}


def pgbench(*args: str) -> str:
    return run([str(pg_bin_dir() / "pgbench"), *args], timeout=600)


def select_tps(settings: Settings, target: str, seconds: int) -> float:
    """pgbench -S on ``target`` for ``seconds``: TPS without connection time."""
    return pgbench_tps(pgbench("-S", "-n", "-c", str(settings.select_clients), "-j", "2",
                               "-T", str(seconds), target))


def select_only(strata: Strata, settings: Settings, root: Path) -> JSON:
    """pgbench -S TPS through the proxy and on the compute's socket, and on a plain
    PostgreSQL over TCP loopback and over its socket (the transport ceiling: a proxy's
    clients pay TCP even when it relays for free), all four runs interleaved, so the
    ceiling is measured under the same load as the ratio it bounds."""
    strata("branch", "create", "reader")
    uri = strata("connect", "reader")["uri"]
    on_socket = strata("connect", "reader", "--socket")["uri"]
    first_row(uri)
    node = ComputeNode.load(strata.home / "computes" / TENANT / "reader")
    if node is None:
        raise BenchError("no compute for the select-only runs")
    direct = node.spec.dsn()
    pgbench("-i", "-s", str(SELECT_SCALE), "-q", uri)  # the tenant's tables, as a client's
    local = LocalPostgres(root / "plain", free_tcp_port(), tcp=True)
    local.init()
    try:
        local.start("128MB", True)
        unix = f"host={local.socket_dir} port={local.port} user=postgres dbname=postgres"
        tcp = f"host=127.0.0.1 port={local.port} user=postgres dbname=postgres"
        pgbench("-i", "-s", str(SELECT_SCALE), "-q", unix)
        for target in (direct, uri, unix):  # warm-up: caches fill, not measured
            select_tps(settings, target, 2)
        figures = select_runs(strata, settings, {"proxy_tps": uri, "direct_tps": direct,
                                                 "proxy_socket_tps": on_socket,
                                                 "tcp_tps": tcp, "unix_tps": unix})
        local.stop()
    finally:
        local.kill()
    strata("compute", "stop", "reader")
    return figures


def select_runs(strata: Strata, settings: Settings, targets: dict[str, str]) -> JSON:
    """The interleaved runs of ``select_only``: per target the TPS samples, and the
    median ratios of proxy/direct (over TCP and over the proxy's unix socket) and TCP/unix
    pairs taken in the same round."""
    uri = targets["proxy_tps"]
    proxy_cpu = [0.0, 0.0]  # CPU seconds of the proxy, transactions it relayed

    def measured(target: str) -> float:
        before = proxy_cpu_s(strata)
        tps = select_tps(settings, target, settings.select_seconds)
        if target == uri:
            proxy_cpu[0] += proxy_cpu_s(strata) - before
            proxy_cpu[1] += tps * settings.select_seconds
        return tps

    figures = interleaved(settings.select_runs, targets, measured)

    def pair_ratios(top: str, bottom: str) -> list[float]:
        return [a / b for a, b in zip(figures[top]["samples"], figures[bottom]["samples"],
                                      strict=True)]

    proxy_pairs, ceiling_pairs = (pair_ratios("proxy_tps", "direct_tps"),
                                  pair_ratios("tcp_tps", "unix_tps"))
    socket_pairs = pair_ratios("proxy_socket_tps", "direct_tps")
    ratio, ceiling = statistics.median(proxy_pairs), statistics.median(ceiling_pairs)
    return {
        "select_only": {**{key: figures[key]
                           for key in ("proxy_tps", "direct_tps", "proxy_socket_tps")},
                        "ratio": ratio, "pair_ratios": proxy_pairs,
                        "socket_ratio": statistics.median(socket_pairs),
                        "socket_pair_ratios": socket_pairs,
                        "proxy_cpu_us_per_transaction": proxy_cpu[0] / proxy_cpu[1] * 1e6},
        "transport_ceiling": {**{key: figures[key] for key in ("tcp_tps", "unix_tps")},
                              "ratio": ceiling, "pair_ratios": ceiling_pairs},
    }


def undo_cost(strata: Strata, settings: Settings) -> JSON:
    """DROP TABLE latency with and without an automatic checkpoint before it."""
    strata("branch", "create", "undoer")
    strata("branch", "create", "undoless", "--no-undo")
    conns = {name: psycopg.connect(strata("connect", name)["uri"], autocommit=True)
             for name in ("undoer", "undoless")}
    try:
        def drop(name: str) -> float:
            conn = conns[name]
            conn.execute("CREATE TABLE dropped AS SELECT 1 AS x")
            return timed(lambda: conn.execute("DROP TABLE dropped"))

        for name in conns:  # warm-up: catalog caches, the first checkpoint
            drop(name)
        figures = interleaved(settings.drops, {"with_undo_s": "undoer",
                                               "without_undo_s": "undoless"}, drop)
    finally:
        for conn in conns.values():
            conn.close()
    for name in conns:
        strata("compute", "stop", name)
    deadline = time.monotonic() + 60
    while len(logged := UNDO_LOG.findall(
            (strata.home / "logs" / "proxy.log").read_text())) < settings.drops + 1:
        if time.monotonic() > deadline:
            raise BenchError(f"the proxy logged {len(logged)} automatic checkpoints, not "
                             f"{settings.drops + 1}")
        time.sleep(0.5)
    return {**figures, "held_ms": summary([float(held) for held, _ in logged]),
            "written_ms": summary([float(written) for _, written in logged]),
            "checkpoints": len(logged)}


def agent_loop(strata: Strata, name: str) -> None:
    strata("branch", "create", name, "--ttl", "20s")
    uri = strata("connect", name)["uri"]
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders(id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO orders SELECT g, repeat('x', 200) "
                     "FROM generate_series(1, 5000) g")
    strata("checkpoint", "create", name, f"{name}-ok")
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("DROP TABLE orders")
    strata("branch", "restore", name, "--to-checkpoint", f"{name}-ok")
    with psycopg.connect(uri) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
    if row != (5000,):
        raise BenchError(f"agent loop {name}: restore gave {row}, not 5000 rows")
    strata("compute", "stop", name)


def settled_store_bytes(strata: Strata) -> int:
    """Object-store bytes once memtables are flushed, compaction ran and GC collected."""
    strata("compact")
    strata("gc")
    return strata.stored_bytes()


def agent_storage(strata: Strata, settings: Settings) -> JSON:
    base = settled_store_bytes(strata)
    began = time.perf_counter()
    for loop in range(settings.agent_loops):
        agent_loop(strata, f"agent-{loop}")
    loops_s = time.perf_counter() - began
    during = strata.stored_bytes()
    deadline = time.monotonic() + 120
    while any(b["name"].startswith("agent-") for b in strata("branch", "list")["branches"]):
        if time.monotonic() > deadline:
            raise BenchError("the reaper did not delete the expired agent branches")
        time.sleep(1)
    after = settled_store_bytes(strata)
    return {"loops": settings.agent_loops, "loop_s": loops_s / settings.agent_loops,
            "base_bytes": base, "with_forks_bytes": during, "after_bytes": after,
            "after_over_base": after / base}


def measure(settings: Settings, root: Path) -> JSON:
    strata = Strata(root / "home")
    strata.up("proxy", "--proxy-port", "0", "--suspend-timeout", "10m")
    strata("tenant", "create", TENANT)
    print("cold starts ...", file=sys.stderr)
    report = {"cold_start": cold_starts(strata, settings)}
    print("warm connects ...", file=sys.stderr)
    report["warm_connect"] = warm_connects(strata, settings)
    print("select-only pgbench: proxy, compute, plain PostgreSQL (TCP, socket) ...",
          file=sys.stderr)
    report.update(select_only(strata, settings, root))
    strata("compute", "stop", "sleeper")
    print("undo: DROP TABLE with and without an automatic checkpoint ...", file=sys.stderr)
    report["undo"] = undo_cost(strata, settings)
    print("agent loops ...", file=sys.stderr)
    report["agent_storage"] = agent_storage(strata, settings)
    return report


def render_markdown(report: JSON) -> str:
    figures, settings = report["figures"], report["settings"]
    cold, warm, store = (figures["cold_start"], figures["warm_connect"],
                         figures["agent_storage"])
    reads, ceiling = figures["select_only"], figures["transport_ceiling"]
    undo = figures["undo"]
    lines = [
        "# Through the proxy: cold start, warm connect, select-only TPS, undo, agent loops",
        "",
        f"{report['finished_at']}, mode {settings['mode']}, on {report['host']['cpu_count']} "
        f"CPUs; objects in {report.get('storage', 'a local directory')}.",
        "",
        f"| cold start ({settings['wakes']} wakes) | median | p90 |",
        "|---|---|---|",
    ]
    for key, label in (("first_row_s", "connect to first row"),
                       ("mount_s", "mount daemon ready (attach, tree, FUSE mount)"),
                       ("postgres_s", "PostgreSQL start and crash recovery"),
                       ("proxy_auth_and_query_s", "the rest: proxy, SCRAM, compute "
                                                  "bookkeeping, query")):
        lines.append(f"| {label} | {cold[key]['median']:.3f} s | {cold[key]['p90']:.3f} s |")
    lines += [
        "",
        f"Warm connect + `SELECT 1` ({settings['warm_connects']} each, interleaved): "
        f"through the proxy {warm['proxy_s']['median'] * 1000:.1f} ms, directly on the socket "
        f"{warm['direct_s']['median'] * 1000:.1f} ms: overhead {warm['overhead_ms']:.1f} ms: "
        f"the client's SCRAM key derivation {warm['client_scram_ms']:.1f} ms, the proxy's "
        f"CPU {warm['proxy_cpu_ms']:.1f} ms per connect, the rest {warm['rest_ms']:.1f} ms "
        "(TCP, the compute checking the proxy's SCRAM login, waits).",
        "",
        f"pgbench `-S` ({settings['select_clients']} clients, {settings['select_runs']} rounds "
        f"of 5 runs of {settings['select_seconds']} s each, interleaved): through the proxy "
        f"{reads['proxy_tps']['median']:.0f} TPS, directly on the socket "
        f"{reads['direct_tps']['median']:.0f} TPS: ratio {reads['ratio']:.2f} (median of "
        f"the pairs {', '.join(f'{r:.2f}' for r in reads['pair_ratios'])}); the proxy used "
        f"{reads['proxy_cpu_us_per_transaction']:.1f} µs of CPU per transaction. In the same "
        f"rounds, plain PostgreSQL over TCP loopback {ceiling['tcp_tps']['median']:.0f} TPS "
        f"against {ceiling['unix_tps']['median']:.0f} TPS on its socket: ratio "
        f"{ceiling['ratio']:.2f} (pairs {', '.join(f'{r:.2f}' for r in ceiling['pair_ratios'])}"
        "), the ceiling of any proxy whose clients come over TCP; the relay itself keeps "
        f"{reads['ratio'] / ceiling['ratio']:.2f} of it. Through the proxy's unix socket "
        f"(`strata connect --socket`, local clients) {reads['proxy_socket_tps']['median']:.0f}"
        f" TPS: ratio {reads['socket_ratio']:.2f} of the compute's socket (pairs "
        f"{', '.join(f'{r:.2f}' for r in reads['socket_pair_ratios'])}).",
        "",
        f"Undo: `DROP TABLE` through the proxy ({settings['drops']} each, interleaved) "
        f"{undo['with_undo_s']['median'] * 1000:.2f} ms on a branch with undo, "
        f"{undo['without_undo_s']['median'] * 1000:.2f} ms with `--no-undo` (medians; p90 "
        f"{undo['with_undo_s']['p90'] * 1000:.2f} and "
        f"{undo['without_undo_s']['p90'] * 1000:.2f} ms). The proxy held each destructive "
        f"statement {undo['held_ms']['median']:.2f} ms (p90 {undo['held_ms']['p90']:.2f}) "
        f"to read the branch's LSN; the checkpoint was written in the background in "
        f"{undo['written_ms']['median']:.2f} ms (p90 {undo['written_ms']['p90']:.2f}).",
        "",
        f"Storage after {store['loops']} agent loops ({store['loop_s']:.1f} s each), TTLs "
        f"expired, reaped, GC run: {store['after_bytes'] / 1e6:.1f} MB against "
        f"{store['base_bytes'] / 1e6:.1f} MB for the base tenant "
        f"({store['after_over_base']:.3f}x; {store['with_forks_bytes'] / 1e6:.1f} MB while "
        "the forks existed).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return root_bench_main(argv, name="proxy", doc=__doc__ or "", quick_help="few samples",
                           full=FULL, quick=QUICK, measure=measure, render=render_markdown)


if __name__ == "__main__":
    sys.exit(main())
