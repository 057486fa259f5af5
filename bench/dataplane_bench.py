"""The compute's data path alone, over each transport: gRPC streams, and the framed data
plane on a unix socket and on TCP (rfcs/0020).

A ``python -m pageserver.main`` child serves all three; this process plays the compute
with its own clients (``compute.remote.BatchWriter`` and ``PageReader``, as the mount
daemon uses them, without FUSE or PostgreSQL). Per transport, interleaved over rounds:
- commits: one-page batches (8 KB written at a rotating block), each sent when the
  previous one is acknowledged (durable in the object store, the default): latency p50
  and p99, and CPU time and context switches (voluntary + involuntary, summed over
  threads, /proc) of the client and of the page server per batch;
- page reads: single-page GetPages of random blocks of a 1,000-page relation, whose
  layers the server has in memory or in its page cache: p50 and p99, CPU per read.

Run ``python -m bench.dataplane_bench [--quick] [--out FILE.json]``. Nothing here asserts
on time.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.harness import JSON, ServerProcess, dump_json, host_info, process_usage, versions
from common.client import StrataClient
from common.convert import relation_from_pb
from common.frames import Buffer
from common.keys import PAGE_SIZE, Relation
from common.ops import Batch, Create, Write
from compute.remote import BatchWriter, PageReader

RELATION_PAGES = 1000
TRANSPORTS = ("grpc", "unix", "tcp")


@dataclass(frozen=True)
class Settings:
    name: str
    rounds: int
    commits: int
    reads: int


FULL = Settings("full", rounds=3, commits=2000, reads=5000)
QUICK = Settings("quick", rounds=1, commits=300, reads=1000)


def _costs(before: dict[str, float], after: dict[str, float], count: int) -> JSON:
    switches = (after["voluntary_switches"] + after["involuntary_switches"]
                - before["voluntary_switches"] - before["involuntary_switches"])
    return {"cpu_us": (after["cpu_s"] - before["cpu_s"]) * 1e6 / count,
            "switches": switches / count}


def _timed(count: int, action: Callable[[int], object], server_pid: int) -> JSON:
    """Latency p50/p99 (ms) of ``count`` calls of ``action``, and the CPU and context
    switches of this process and of the server per call."""
    latencies: list[float] = []
    client_before, server_before = process_usage(os.getpid()), process_usage(server_pid)
    for index in range(count):
        started = time.perf_counter()
        action(index)
        latencies.append((time.perf_counter() - started) * 1e3)
    client = _costs(client_before, process_usage(os.getpid()), count)
    server = _costs(server_before, process_usage(server_pid), count)
    return {"p50_ms": statistics.median(latencies),
            "p99_ms": float(np.percentile(latencies, 99)),
            "client_cpu_us": client["cpu_us"], "server_cpu_us": server["cpu_us"],
            "client_switches": client["switches"], "server_switches": server["switches"]}


def _page(block: int, version: int) -> bytes:
    return f"{block}:{version}".encode().ljust(PAGE_SIZE, b".")


def measure(settings: Settings, root: Path) -> JSON:
    server = ServerProcess(root / "state", str(root / "objects"), root / "pageserver.log",
                           extra_args=("--data-socket", f"@strata-bench-{os.getpid()}",
                                       "--data-listen", "127.0.0.1:0"))
    with server, StrataClient(server.address, server.token()) as client:
        info = server.ready_info()
        addresses = {"grpc": "", "unix": f"unix:{info['data_socket']}",
                     "tcp": str(info["data_listen"])}
        client.create_tenant("t", empty=True)
        attached = client.attach_writer("t", "main", holder="bench")
        writers = {name: BatchWriter(client, "t", "main", attached.writer_epoch, 0,
                                     data_plane=address) for name, address in addresses.items()}
        readers = {name: PageReader(client, "t", "main", streams=1, data_plane=address)
                   for name, address in addresses.items()}
        batch_ids = iter(range(1, 1 << 40))
        writers["grpc"].write(Batch((Create("f"), Write("f", 0, _page(0, 0) * RELATION_PAGES)),
                                    batch_id=next(batch_ids)))
        (listed,) = [f for f in client.list_files("t", "main").files if f.path == "f"]
        relation: Relation = relation_from_pb(listed.relation)
        samples: dict[str, dict[str, list[JSON]]] = {
            name: {"commit": [], "read": []} for name in TRANSPORTS}
        randomly = random.Random(13)
        for round_ in range(settings.rounds):
            order = TRANSPORTS if round_ % 2 == 0 else tuple(reversed(TRANSPORTS))
            for name in order:
                writer, reader = writers[name], readers[name]

                def commit(index: int, writer: BatchWriter = writer) -> int:
                    block = index % RELATION_PAGES
                    batch_id = next(batch_ids)
                    return writer.write(Batch((Write("f", block * PAGE_SIZE,
                                                     _page(block, batch_id)),),
                                              batch_id=batch_id))

                def read(_: int, reader: PageReader = reader) -> Sequence[Buffer]:
                    return reader.get_pages(relation, [randomly.randrange(RELATION_PAGES)])

                commit(0)  # warm: the stream opened
                read(0)
                samples[name]["commit"].append(_timed(settings.commits, commit, server.pid))
                samples[name]["read"].append(_timed(settings.reads, read, server.pid))
        for name in TRANSPORTS:
            writers[name].close()
            readers[name].close()
    return {name: {kind: _medians(runs) for kind, runs in kinds.items()}
            for name, kinds in samples.items()}


def _medians(runs: list[JSON]) -> JSON:
    return {key: statistics.median(float(run[key]) for run in runs) for key in runs[0]}


def render_markdown(report: JSON) -> str:
    figures = report["figures"]
    lines = [f"# Data plane ({report['settings']['name']}, {report['started_at']})", "",
             "Per one-page commit (acknowledged once in the object store) and per "
             "single-page read, through the compute's clients; medians over rounds.", "",
             "| transport | commit p50 ms | commit p99 ms | commit CPU client + server µs "
             "| switches client + server | read p50 ms | read p99 ms | read CPU client + "
             "server µs |", "|---|---|---|---|---|---|---|---|"]
    for name in TRANSPORTS:
        commit, read = figures[name]["commit"], figures[name]["read"]
        lines.append(
            f"| {name} | {commit['p50_ms']:.3f} | {commit['p99_ms']:.3f} | "
            f"{commit['client_cpu_us']:.0f} + {commit['server_cpu_us']:.0f} | "
            f"{commit['client_switches']:.1f} + {commit['server_switches']:.1f} | "
            f"{read['p50_ms']:.3f} | {read['p99_ms']:.3f} | "
            f"{read['client_cpu_us']:.0f} + {read['server_cpu_us']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.dataplane_bench",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, one round")
    parser.add_argument("--out", type=Path, help="write the JSON report here (and .md)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="strata-dataplane-bench-") as scratch:
        figures = measure(settings, Path(scratch))
    report = {"benchmark": "dataplane", "started_at": started.isoformat(),
              "finished_at": datetime.now(UTC).isoformat(), "host": host_info(),
              "versions": versions(), "settings": asdict(settings), "figures": figures}
    markdown = render_markdown(report)
    print(markdown)
    if args.out:
        args.out.write_text(dump_json(report))
        args.out.with_suffix(".md").write_text(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
