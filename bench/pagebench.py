"""Pagebench: concurrent GetPages clients against a page server process over loopback gRPC.

Like Neon's pagebench: N clients, each keeping one long-lived bidirectional ``GetPages``
stream open and sending one request after another (send, wait for the response), with
B blocks per request, at random or sequential blocks. The benchmark starts its own
``python -m pageserver.main`` on 127.0.0.1 in a temporary directory, ingests one
relation through IngestService, compacts it (force) so reads come from layer files, then
sweeps clients x batch size x access pattern for a fixed time per point after a warm-up.
Every client is a separate OS process (the GIL would make one client process the
bottleneck); they share the machine's cores with the server. The server is then profiled
with py-spy on repeats of the single-client single-page point and of a point missing each
goal, and the most concurrent points are repeated with the server pinned to one core (a
GIL-contention diagnostic).

Layer cache, miss against hit: from S3 the server keeps a local copy of each layer file it
reads (``EngineConfig.layer_cache_dir``), downloaded on first use; a local-directory
store's layers are read in place, so there a miss is a read from disk with the kernel's
page cache dropped and a hit one from memory. Per
batch size and access pattern, one client times a fixed pass of requests right after a
restart with that cache deleted (every layer comes from the store again: the miss), then
the same pass again once every layer is local (the hit); first-request latency, p50/p99
and pages/s of both. The server's background compaction check also reads every layer,
about a second after it starts: a miss pass lasting longer shares the downloads with it.

After the server stops, the sweep's single-client reads are timed in-process
(``Timeline.get_pages``) as the baseline.

Objects live in a local directory in the temporary home, or under a fresh prefix of the
S3 URL in ``$STRATA_BENCH_STORAGE`` (see ``bench.objectstore``), which the server gets
as ``--storage``.

Run ``python -m bench.pagebench [--quick] [--out bench/results/pagebench.json]``. Nothing
here asserts on time. With ``--out`` the JSON report and a markdown copy of the table
(same name, ``.md``) are written; py-spy's collapsed stacks go next to them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench import objectstore
from bench.harness import (
    CHANNEL_OPTIONS,
    JSON,
    ROOT,
    TENANT,
    ServerProcess,
    dump_json,
    host_info,
    stop_on_sigterm,
    versions,
)
from bench.synthetic import BATCH_PAGES, PAGE_HEADER, REL_PATH, PageMaker, layer_stats
from common.bearer import call_credentials_metadata
from common.convert import op_to_pb, relation_from_pb
from common.keys import PAGE_SIZE
from common.ops import Create, FileOp, Mkdir
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.remote import open_storage
from pageserver.timeline import Timeline
from proto import strata_pb2 as pb
from proto import strata_pb2_grpc as pb_grpc

GOAL_BATCHED_PAGES_S = 50_000.0
GOAL_SINGLE_P99_MS = 1.0
NEON_REFERENCE = ("Neon pagebench (published): ~4.5k req/s per client at p99 0.75 ms for "
                  "single pages; ~60k pages/s with batching")
START_LEAD_S = 0.3  # between handing out a point's jobs and its common start time
PY_SPY_RATE_HZ = 1000


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one run (``full`` or ``quick``)."""

    mode: str
    seed: int
    pages: int  # blocks of the relation (8 KB each); a multiple of every batch size
    random_bytes: int  # incompressible bytes per page; the rest is zeros
    clients: tuple[int, ...]
    batches: tuple[int, ...]
    accesses: tuple[str, ...]
    warmup_s: float
    duration_s: float
    cache_batches: tuple[int, ...]  # batch sizes of the layer-cache miss/hit passes
    cache_requests: int  # requests per pass at most (fewer if the relation is read by then)


FULL = Settings(mode="full", seed=20240602, pages=32_768, random_bytes=2048,
                clients=(1, 4, 16), batches=(1, 16, 128), accesses=("random", "sequential"),
                warmup_s=0.5, duration_s=3.0, cache_batches=(1, 16, 128), cache_requests=4096)
QUICK = Settings(mode="quick", seed=20240602, pages=5120, random_bytes=2048,
                 clients=(1, 16), batches=(1, 128), accesses=("random", "sequential"),
                 warmup_s=0.3, duration_s=1.0, cache_batches=(1, 128), cache_requests=1000)


# --- measuring ------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have spent busy since boot (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def summarize_ms(latencies_s: Sequence[float] | np.ndarray) -> JSON:
    """Latency percentiles in milliseconds."""
    values = np.asarray(latencies_s, dtype=np.float64) * 1000
    if not values.size:
        return {"n": 0}
    p50, p99, p999 = np.percentile(values, [50, 99, 99.9]).tolist()
    return {"n": int(values.size), "mean": float(values.mean()), "p50": p50, "p99": p99,
            "p99_9": p999, "max": float(values.max())}


# --- setup: tenant, ingest, compaction --------------------------------------------------------


def load_relation(server: ServerProcess, settings: Settings) -> tuple[pb.Relation, JSON]:
    """Create tenant ``bench``, ingest ``settings.pages`` pages through IngestService, compact."""
    rng = np.random.default_rng(settings.seed)
    maker = PageMaker(rng, settings.random_bytes)
    admin = server.metadata()
    with server.channel() as channel:
        manage = pb_grpc.ManagementServiceStub(channel)  # type: ignore[no-untyped-call]
        ingest = pb_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]
        pages = pb_grpc.PageServiceStub(channel)  # type: ignore[no-untyped-call]
        manage.CreateTenant(pb.CreateTenantRequest(tenant=TENANT, empty=True), metadata=admin)
        epoch = manage.AttachWriter(pb.AttachWriterRequest(tenant=TENANT, branch="main"),
                                    metadata=admin).writer_epoch
        batches = math.ceil(settings.pages / BATCH_PAGES)

        def requests() -> Iterator[pb.IngestRequest]:
            yield pb.IngestRequest(open=pb.IngestOpen(tenant=TENANT, branch="main",
                                                      writer_epoch=epoch))
            first: list[FileOp] = [Mkdir("base"), Mkdir("base/5"), Create(REL_PATH)]
            yield pb.IngestRequest(batch=pb.IngestBatch(
                batch_id=0, ops=[op_to_pb(op) for op in first]))
            for index in range(batches):
                blocks = np.arange(index * BATCH_PAGES,
                                   min((index + 1) * BATCH_PAGES, settings.pages))
                batch = maker.batch(blocks, 0)
                yield pb.IngestRequest(batch=pb.IngestBatch(
                    batch_id=index + 1, ops=[op_to_pb(op) for op in batch.ops]))

        started = time.perf_counter()
        acks = list(ingest.Ingest(requests(), metadata=admin))
        ingest_s = time.perf_counter() - started
        started = time.perf_counter()
        compacted = manage.Compact(pb.CompactRequest(tenant=TENANT, force=True), metadata=admin,
                                   timeout=600)
        compact_s = time.perf_counter() - started
        stat = pages.Stat(pb.StatRequest(at=pb.ReadPoint(tenant=TENANT, latest=True),
                                         path=REL_PATH), metadata=admin)
    return stat.file.relation, {
        "via": "gRPC IngestService (one stream, batches pipelined, each acknowledged durable)",
        "pages": settings.pages, "bytes": settings.pages * PAGE_SIZE,
        "batches": batches + 1, "batch_pages": BATCH_PAGES, "acks": len(acks),
        "last_lsn": acks[-1].lsn, "ingest_seconds": ingest_s,
        "ingest_pages_per_s": settings.pages / ingest_s,
        "compact_seconds": compact_s,
        "compaction": {"l0_merged": compacted.l0_merged, "l1_written": compacted.l1_written,
                       "images_written": compacted.images_written},
        "file_size": stat.file.size,
    }


# --- clients ----------------------------------------------------------------------------------


class BlockPicker:
    """The blocks of successive requests of one client.

    ``random``: ``batch`` uniformly drawn blocks. ``sequential``: consecutive runs of
    ``batch`` blocks, each client starting at its own share of the relation, wrapping around.
    """

    def __init__(self, access: str, pages: int, batch: int, client: int, clients: int,
                 seed: int) -> None:
        self._random = access == "random"
        self._pages = pages
        self._batch = batch
        self._rng = np.random.default_rng(seed)
        self._next = client * pages // clients // batch * batch

    def next(self) -> list[int]:
        if self._random:
            blocks: list[int] = self._rng.integers(0, self._pages, self._batch).tolist()
            return blocks
        if self._next + self._batch > self._pages:
            self._next = 0
        first = self._next
        self._next += self._batch
        return list(range(first, first + self._batch))


def page_ok(page: bytes, block: int) -> bool:
    """Whether ``page`` is the page ingested for ``block``."""
    return len(page) == PAGE_SIZE and PAGE_HEADER.unpack_from(page) == (block, 0)


@dataclass(frozen=True)
class Job:
    """What one client does for one point of the sweep, or for one pass of fixed length."""

    client: int
    clients: int
    batch: int
    access: str
    pages: int
    relation: bytes  # a serialized pb.Relation
    start_at: float  # time.monotonic() when the warm-up starts (shared by all clients)
    warmup_s: float
    duration_s: float
    seed: int
    requests: int = 0  # > 0: exactly this many requests, every one timed (no warm-up, no clock)


async def run_job(stub: Any, metadata: tuple[tuple[str, str], ...], job: Job) -> JSON:
    """One client's stream: requests one at a time until the point's end (or until
    ``job.requests`` were answered); raw latencies and the wall time they span."""
    picker = BlockPicker(job.access, job.pages, job.batch, job.client, job.clients,
                         job.seed + job.client)
    at = pb.ReadPoint(tenant=TENANT, latest=True)
    relation = pb.Relation.FromString(job.relation)
    counted = job.requests > 0
    measure_from = -math.inf if counted else job.start_at + job.warmup_s
    end = math.inf if counted else measure_from + job.duration_s
    limit = job.requests if counted else math.inf
    latencies: list[float] = []
    warmup = errors = bad_pages = 0
    cpu_start: float | None = None
    first_begin = last_end = 0.0
    call = stub.GetPages(metadata=metadata)
    await asyncio.sleep(max(0.0, job.start_at - time.monotonic()))
    request_id = 0
    late_s = time.monotonic() - job.start_at
    while (now := time.monotonic()) < end and len(latencies) < limit:
        if cpu_start is None and now >= measure_from:
            cpu_start = time.process_time()
        blocks = picker.next()
        request_id += 1
        request = pb.GetPagesRequest(request_id=request_id, at=at, relation=relation,
                                     blocks=blocks)
        begin = time.perf_counter()
        await call.write(request)
        response = await call.read()
        seconds = time.perf_counter() - begin
        if response is grpc.aio.EOF:
            raise RuntimeError("the GetPages stream ended early")
        if response.status.code or len(response.pages) != len(blocks):
            errors += 1
        elif not (page_ok(response.pages[0], blocks[0]) and page_ok(response.pages[-1],
                                                                     blocks[-1])):
            bad_pages += 1
        if now < measure_from:
            warmup += 1
        else:
            if not latencies:
                first_begin = begin
            latencies.append(seconds)
            last_end = begin + seconds
    await call.done_writing()
    return {"client": job.client, "pid": os.getpid(), "requests": len(latencies),
            "warmup_requests": warmup, "late_start_s": late_s,
            "timed_seconds": last_end - first_begin, "errors": errors,
            "bad_pages": bad_pages,
            "cpu_seconds": time.process_time() - (cpu_start or time.process_time()),
            "latencies_us": [round(s * 1e6) for s in latencies]}


async def client_loop(address: str, token: str, jobs: Queue[Job | None],
                      results: Queue[JSON]) -> None:
    """Run jobs from ``jobs`` on one channel until None arrives."""
    metadata = call_credentials_metadata(token)
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.PageServiceStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()
        results.put({"ready": os.getpid()})
        loop = asyncio.get_running_loop()
        while (job := await loop.run_in_executor(None, jobs.get)) is not None:
            try:
                await channel.channel_ready()  # reconnected, if the server was restarted
                results.put(await run_job(stub, metadata, job))
            except Exception as exc:  # reported to the parent, which fails the run
                results.put({"client": job.client, "failed": repr(exc)})


def client_main(address: str, token: str, jobs: Queue[Job | None], results: Queue[JSON]) -> None:
    """Entry point of a client process."""
    asyncio.run(client_loop(address, token, jobs, results))


class ClientPool:
    """Client processes (spawned, one channel each), reused across the points of a sweep."""

    def __init__(self, size: int, server: ServerProcess) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process using gRPC
        self.results: Queue[JSON] = context.Queue()
        self.jobs: list[Queue[Job | None]] = [context.Queue() for _ in range(size)]
        self.procs: list[SpawnProcess] = [
            context.Process(target=client_main, name=f"pagebench-client-{index}", daemon=True,
                            args=(server.address, server.token(), queue, self.results))
            for index, queue in enumerate(self.jobs)
        ]
        for proc in self.procs:
            proc.start()
        for _ in self.procs:  # connected and idle: points never wait for a process to start
            self.results.get(timeout=300)

    def close(self) -> None:
        """Ask every client to exit; terminate those that do not."""
        for queue in self.jobs:
            queue.put(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join()


@dataclass(frozen=True)
class Point:
    """One point of the sweep."""

    clients: int
    batch: int
    access: str

    @property
    def name(self) -> str:
        return f"c{self.clients}_b{self.batch}_{self.access}"


def collect(pool: ClientPool, clients: int, what: str, timeout_s: float = 120.0) -> list[JSON]:
    """The results of the first ``clients`` clients' jobs, in client order; raises if a
    client failed."""
    results = sorted((pool.results.get(timeout=timeout_s) for _ in range(clients)),
                     key=lambda result: int(result["client"]))
    failed = [result for result in results if "failed" in result]
    if failed:
        raise RuntimeError(f"{what}: client failed: {failed[0]['failed']}")
    return results


def run_point(pool: ClientPool, server: ServerProcess, relation: pb.Relation,
              settings: Settings, point: Point, profile_to: Path | None = None) -> JSON:
    """Run ``point`` once: every client from a common start; server CPU over the timed window.

    With ``profile_to``, py-spy samples the server over the warm-up and timed window.
    """
    start_at = time.monotonic() + START_LEAD_S
    measure_from = start_at + settings.warmup_s
    for client in range(point.clients):
        pool.jobs[client].put(Job(
            client=client, clients=point.clients, batch=point.batch, access=point.access,
            pages=settings.pages, relation=relation.SerializeToString(), start_at=start_at,
            warmup_s=settings.warmup_s, duration_s=settings.duration_s, seed=settings.seed))
    spy = None
    if profile_to is not None:
        time.sleep(max(0.0, start_at - time.monotonic()))
        spy = start_py_spy(server.pid, settings.warmup_s + settings.duration_s, profile_to)
    time.sleep(max(0.0, measure_from - time.monotonic()))
    cpu_before, busy_before = server.cpu_seconds(), machine_busy_seconds()
    time.sleep(max(0.0, measure_from + settings.duration_s - time.monotonic()))
    server_cpu = server.cpu_seconds() - cpu_before
    machine_busy = machine_busy_seconds() - busy_before
    try:
        clients = collect(pool, point.clients, point.name)
    finally:
        if spy is not None:
            spy.wait(120)
    requests = sum(int(c["requests"]) for c in clients)
    clients_cpu = sum(float(c["cpu_seconds"]) for c in clients)
    latencies = np.concatenate([np.asarray(c["latencies_us"], dtype=np.float64) / 1e6
                                for c in clients])
    seconds = settings.duration_s
    return {
        **asdict(point), "name": point.name, "client_processes": point.clients,
        "seconds": seconds, "requests": requests, "pages": requests * point.batch,
        "requests_per_s": requests / seconds, "pages_per_s": requests * point.batch / seconds,
        "requests_per_s_per_client": requests / seconds / point.clients,
        "latency_ms": summarize_ms(latencies),
        "errors": sum(int(c["errors"]) for c in clients),
        "bad_pages": sum(int(c["bad_pages"]) for c in clients),
        "server_cpu_cores": server_cpu / seconds,
        "server_cpu_us_per_request": server_cpu / requests * 1e6 if requests else None,
        "clients_cpu_cores": clients_cpu / seconds,
        # Busy cores of the whole machine beyond the server and clients: other processes.
        "other_cpu_cores": max(0.0, machine_busy - server_cpu - clients_cpu) / seconds,
        "load_average_1min": os.getloadavg()[0],
        "per_client": clients,
    }


def sweep_points(settings: Settings) -> list[Point]:
    return [Point(clients, batch, access) for clients in settings.clients
            for batch in settings.batches for access in settings.accesses]


# --- in-process baseline -----------------------------------------------------------------------


def inprocess_point(timeline: Timeline, relation: pb.Relation, settings: Settings,
                    batch: int, access: str) -> JSON:
    """The same reads as one client, calling ``Timeline.get_pages`` directly."""
    picker = BlockPicker(access, settings.pages, batch, 0, 1, settings.seed)
    engine_relation = relation_from_pb(relation)
    latencies: list[float] = []
    bad_pages = 0
    start = time.monotonic()
    measure_from = start + settings.warmup_s
    end = measure_from + settings.duration_s
    while (now := time.monotonic()) < end:
        blocks = picker.next()
        begin = time.perf_counter()
        pages = timeline.get_pages(engine_relation, np.asarray(blocks, dtype=np.int64))
        seconds = time.perf_counter() - begin
        bad_pages += not (page_ok(pages[0], blocks[0]) and page_ok(pages[-1], blocks[-1]))
        if now >= measure_from:
            latencies.append(seconds)
    requests = len(latencies)
    return {"batch": batch, "access": access, "seconds": settings.duration_s,
            "requests": requests, "requests_per_s": requests / settings.duration_s,
            "pages_per_s": requests * batch / settings.duration_s,
            "latency_ms": summarize_ms(latencies), "bad_pages": bad_pages,
            "latencies_us": [round(s * 1e6) for s in latencies]}


def measure_inprocess(server: ServerProcess, relation: pb.Relation, settings: Settings) -> JSON:
    """Open the stopped server's state in this process and time the single-client reads."""
    started = time.perf_counter()
    config = EngineConfig(state_dir=server.state_dir, background_period_s=0)
    engine = Engine(config, open_storage(server.storage))
    try:
        timeline = engine.timeline(TENANT, "main")
        open_s = time.perf_counter() - started
        cases = {f"b{batch}_{access}": inprocess_point(timeline, relation, settings, batch,
                                                      access)
                 for batch in settings.batches for access in settings.accesses}
        layers = layer_stats(timeline)
    finally:
        engine.close(flush=False)
    return {"how": "after the server stopped: Engine opened on its state directory and object "
                   "store, background work off, one thread calling Timeline.get_pages at the "
                   "latest LSN with the same block sequences as client 0 of a 1-client point",
            "open_seconds": open_s, "layers": layers, "cases": cases}


# --- profiling ---------------------------------------------------------------------------------


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_py_spy(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """Sample ``pid`` while a thread holds the GIL, without pausing it, into collapsed stacks."""
    exe = py_spy()
    assert exe is not None
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(math.ceil(seconds)),
         "--rate", str(PY_SPY_RATE_HZ), "--nonblocking", "--gil", "--threads", "--format", "raw",
         "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_file(frame: str) -> str:
    """The file (or native library) of a py-spy frame, shortened to the part that matters."""
    match = _FRAME.match(frame)
    where = match.group("file") if match else frame
    for marker in ("site-packages/", "python3.11/", str(ROOT) + "/"):
        if marker in where:
            return where.rpartition(marker)[2]
    return where


def frame_function(frame: str) -> str:
    """``function (file)`` of a py-spy frame, without the line number."""
    match = _FRAME.match(frame)
    return f"{match.group('func')} ({frame_file(frame)})" if match else frame


def thread_label(frame: str) -> str:
    """``strata-rpc`` from py-spy's ``thread (1234): strata-rpc_7``."""
    return re.sub(r"^thread \(\d+\): |_\d+$", "", frame)


def compact_stacks(path: Path) -> None:
    """Rewrite py-spy's collapsed stacks without thread ids and line numbers, merged."""
    merged: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) >= 2 and count_text.isdigit():
            key = ";".join([thread_label(frames[0]), *map(frame_function, frames[1:])])
            merged[key] += int(count_text)
    path.write_text("".join(f"{stack} {n}\n" for stack, n in merged.most_common()))


def summarize_profile(path: Path, seconds: float, requests: int, top: int = 15) -> JSON:
    """Where the server's GIL-holding time goes: per thread, per file and per function.

    py-spy ran with ``--gil``: a sample is taken only while some thread holds the GIL, so
    ``samples / (rate x seconds)`` is the fraction of time the GIL was busy.
    """
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    incl_file: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) < 2 or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        threads[thread_label(frames[0])] += count
        self_fn[frame_function(frames[-1])] += count
        for name in {frame_function(frame) for frame in frames[1:]}:
            incl_fn[name] += count
        for name in {frame_file(frame) for frame in frames[1:]}:
            incl_file[name] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "rate_hz": PY_SPY_RATE_HZ,
            "gil_busy_fraction": total / (PY_SPY_RATE_HZ * seconds),
            "gil_us_per_request": total / PY_SPY_RATE_HZ / requests * 1e6 if requests else None,
            "by_thread_pct": shares(threads), "self_pct": shares(self_fn),
            "inclusive_pct": shares(incl_fn), "inclusive_pct_by_file": shares(incl_file)}


def profile_targets(points: list[JSON]) -> dict[str, Point]:
    """Points to repeat under py-spy: the single-client single-page point (cost of one
    request), and for each goal a point missing it: largest batch, then fewest clients."""
    targets = {"single_page_one_client": Point(1, 1, "random")}
    for goal, batched in (("single_page_goal_missed", False), ("batched_goal_missed", True)):
        missed = [p for p in points if (p["batch"] > 1) == batched
                  and goal_status(p)[1] == "MISSED"]
        if missed:
            first = min(missed, key=lambda p: (-p["batch"], p["clients"],
                                               p["access"] != "random"))
            targets[goal] = Point(first["clients"], first["batch"], first["access"])
    return targets


def profile_points(pool: ClientPool, server: ServerProcess, relation: pb.Relation,
                   settings: Settings, targets: dict[str, Point], out_dir: Path) -> JSON:
    """Repeat each target point with py-spy sampling the server; where its time goes."""
    if py_spy() is None:
        return {"skipped": "py-spy not found (pip install py-spy)"}
    profiles: JSON = {}
    for why, point in targets.items():
        raw = out_dir / f"pagebench-profile-{point.name}.txt"
        rerun = run_point(pool, server, relation, settings, point, profile_to=raw)
        if raw.exists():
            compact_stacks(raw)
        profiles[why] = {
            "point": point.name,
            "collapsed_stacks": str(raw.relative_to(ROOT) if raw.is_relative_to(ROOT) else raw),
            "rerun_pages_per_s": rerun["pages_per_s"], "rerun_latency_ms": rerun["latency_ms"],
            "rerun_server_cpu_cores": rerun["server_cpu_cores"],
            **(summarize_profile(raw, settings.warmup_s + settings.duration_s,
                                 sum(c["requests"] + c["warmup_requests"]
                                     for c in rerun["per_client"]))
               if raw.exists() else {"error": "py-spy wrote nothing"}),
        }
    return profiles


# --- one-core experiment ----------------------------------------------------------------------


def pin_server(server: ServerProcess, cpus: set[int]) -> None:
    """Restrict every thread of the server process to ``cpus``."""
    for task in Path(f"/proc/{server.pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def one_core_experiment(pool: ClientPool, server: ServerProcess, relation: pb.Relation,
                        settings: Settings, points: list[JSON]) -> JSON:
    """Repeat the most concurrent random points with the server pinned to CPU 0.

    With its threads free to run on every core, the server may spend CPU fighting over the
    GIL; pinned, it cannot, and the clients have the other core(s) to themselves.
    """
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        return {"skipped": "one CPU only"}
    most = max(settings.clients)
    chosen = [p for p in points if p["clients"] == most and p["access"] == "random"]
    results = []
    pin_server(server, {min(cpus)})
    try:
        for free in chosen:
            pinned = run_point(pool, server, relation, settings,
                               Point(free["clients"], free["batch"], free["access"]))
            results.append({
                "point": free["name"],
                "free": {key: free[key] for key in ("pages_per_s", "server_cpu_cores",
                                                    "server_cpu_us_per_request")},
                "pinned": {key: pinned[key] for key in ("pages_per_s", "server_cpu_cores",
                                                        "server_cpu_us_per_request",
                                                        "clients_cpu_cores", "other_cpu_cores")},
                "pinned_latency_ms": pinned["latency_ms"],
            })
    finally:
        pin_server(server, cpus)
    return {"server_cpus": [min(cpus)], "points": results}


# --- layer cache: miss and hit -------------------------------------------------------------

CACHE_FIGURES = ("first_request_ms", "p50_ms", "p99_ms", "pages_per_s")
CACHE_HOW = ("one client, per batch size and access: a pass of requests (cache_requests at "
             "most, fewer if that reads the relation once), each timed from the first, right "
             "after a restart with the server's layer cache deleted (miss: every layer comes "
             "from the object store again; a local store's files also leave the kernel's page "
             "cache), then the same pass again once every layer is local (hit)")


def cached_layers(server: ServerProcess) -> list[int]:
    """Sizes of the layer files in the server's local layer cache (its copies of objects in
    the store); a download still being written (``.tmp``) does not count."""
    cache = EngineConfig(state_dir=server.state_dir).layer_cache_dir
    return [path.stat().st_size for path in cache.rglob("*")
            if path.suffix != ".tmp" and path.is_file()]


def evict_page_cache(directory: Path) -> None:
    """Have the kernel drop its cached pages of every file under ``directory``."""
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def restart_cold(server: ServerProcess) -> float:
    """Stop the server, delete its layer cache and start it again; the start's seconds.

    Nothing else keeps layer data across the restart: layer handles and their open
    readers (mmaps) live in the process, and the clean stop flushed every memtable, so the
    ingest log replays nothing into memory. A local-directory store's files are also
    dropped from the kernel's page cache, so reading them means reading the disk.
    """
    exit_code = server.stop()
    if exit_code != 0:
        raise RuntimeError(f"page server exited {exit_code} when stopped; see {server.log_path}")
    shutil.rmtree(EngineConfig(state_dir=server.state_dir).layer_cache_dir, ignore_errors=True)
    if "://" not in server.storage:
        evict_page_cache(Path(server.storage))
    server.start()
    return server.start_seconds


def run_pass(pool: ClientPool, server: ServerProcess, relation: pb.Relation,
             settings: Settings, batch: int, access: str, state: str) -> JSON:
    """Client 0 sends one pass of requests at once, each timed, the first included: up to
    ``settings.cache_requests``, fewer if that reads as many blocks as the relation has."""
    requests = min(settings.cache_requests, settings.pages // batch)
    before = cached_layers(server)
    pool.jobs[0].put(Job(
        client=0, clients=1, batch=batch, access=access, pages=settings.pages,
        relation=relation.SerializeToString(), start_at=time.monotonic(), warmup_s=0.0,
        duration_s=0.0, seed=settings.seed, requests=requests))
    (result,) = collect(pool, 1, f"{state} pass b{batch}_{access}", timeout_s=600.0)
    after = cached_layers(server)
    latency = summarize_ms(np.asarray(result["latencies_us"], dtype=np.float64) / 1e6)
    seconds = float(result["timed_seconds"])
    return {
        "batch": batch, "access": access, "state": state, "requests": result["requests"],
        "pages": result["requests"] * batch, "seconds": seconds,
        "pages_per_s": result["requests"] * batch / seconds,
        "first_request_ms": result["latencies_us"][0] / 1000,
        "p50_ms": latency["p50"], "p99_ms": latency["p99"], "latency_ms": latency,
        "errors": result["errors"], "bad_pages": result["bad_pages"],
        "cached_layers_before": len(before), "cached_layers_after": len(after),
        "cached_bytes_after": sum(after),
        "latencies_us": result["latencies_us"],
    }


def stored_layers(server: ServerProcess) -> int:
    """Layer files in the object store: every layer of every timeline, since compaction and
    GC delete the objects of the layers they replace."""
    return sum(1 for key in open_storage(server.storage).list("") if "/layers/" in key)


def wait_for_cache(server: ServerProcess, layers: int, timeout_s: float = 60.0) -> float:
    """Wait until the server's layer cache holds ``layers`` files; the seconds waited.

    About a second after it starts, the server's background compaction check reads every
    layer, downloading those that reads have not needed.
    """
    started = time.monotonic()
    while len(cached_layers(server)) < layers and time.monotonic() - started < timeout_s:
        time.sleep(0.05)
    return time.monotonic() - started


def cache_pair(pool: ClientPool, server: ServerProcess, relation: pb.Relation,
               settings: Settings, batch: int, access: str) -> list[JSON]:
    """The miss pass (right after a restart with the layer cache deleted), then the hit
    pass: the same requests again once every layer is local, so no download runs along."""
    start_s = restart_cold(server)
    miss = run_pass(pool, server, relation, settings, batch, access, "miss")
    layers = stored_layers(server)
    in_place = "://" not in server.storage  # a local store: nothing is downloaded
    waited_s = 0.0 if in_place else wait_for_cache(server, layers)
    hit = run_pass(pool, server, relation, settings, batch, access, "hit")
    return [{**miss, "server_start_s": start_s, "layers_in_store": layers},
            {**hit, "waited_for_cache_s": waited_s, "layers_in_store": layers}]


def cache_ratios(points: list[JSON]) -> list[JSON]:
    """Miss over hit of each figure of the passes, per batch size and access."""
    hits = {(p["batch"], p["access"]): p for p in points if p["state"] == "hit"}
    ratios = []
    for miss in (p for p in points if p["state"] == "miss"):
        hit = hits[(miss["batch"], miss["access"])]
        ratios.append({"batch": miss["batch"], "access": miss["access"],
                       "miss_over_hit": {key: miss[key] / hit[key] for key in CACHE_FIGURES}})
    return ratios


# --- report ------------------------------------------------------------------------------------


def goal_status(point: JSON) -> tuple[str, str]:
    """The goal a point is judged by, and whether it is met."""
    if point["batch"] == 1:
        met = point["latency_ms"]["p99"] <= GOAL_SINGLE_P99_MS
        return f"p99 <= {GOAL_SINGLE_P99_MS:g} ms", "met" if met else "MISSED"
    met = point["pages_per_s"] >= GOAL_BATCHED_PAGES_S
    return f">= {GOAL_BATCHED_PAGES_S:,.0f} pages/s", "met" if met else "MISSED"


def table_lines(report: JSON) -> list[str]:
    """The sweep and the baseline as markdown table lines."""
    lines = [
        "| clients (procs) | batch | access | req/s | req/s/client | pages/s | p50 ms | p99 ms "
        "| p99.9 ms | server CPU | clients CPU | other CPU | goal | status |",
        "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for p in report["points"]:
        lat = p["latency_ms"]
        goal, status = goal_status(p)
        lines.append(
            f"| {p['clients']} ({p['client_processes']}) | {p['batch']} | {p['access']} "
            f"| {p['requests_per_s']:,.0f} | {p['requests_per_s_per_client']:,.0f} "
            f"| {p['pages_per_s']:,.0f} | {lat['p50']:.3f} | {lat['p99']:.3f} "
            f"| {lat['p99_9']:.3f} | {p['server_cpu_cores']:.2f} | {p['clients_cpu_cores']:.2f} "
            f"| {p['other_cpu_cores']:.2f} | {goal} | {status} |")
    lines += ["", "In-process baseline (one thread, `Timeline.get_pages`) and gRPC with 1 client:",
              "", "| batch | access | in-proc pages/s | gRPC pages/s | in-proc / gRPC "
              "| in-proc p50 ms | gRPC p50 ms | in-proc p99 ms | gRPC p99 ms "
              "| gRPC / in-proc p50 |",
              "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row in report["grpc_vs_inprocess"]:
        lines.append(
            f"| {row['batch']} | {row['access']} | {row['inprocess_pages_per_s']:,.0f} "
            f"| {row['grpc_pages_per_s']:,.0f} | {row['throughput_ratio']:.1f}x "
            f"| {row['inprocess_p50_ms']:.3f} | {row['grpc_p50_ms']:.3f} "
            f"| {row['inprocess_p99_ms']:.3f} | {row['grpc_p99_ms']:.3f} "
            f"| {row['latency_ratio_p50']:.1f}x |")
    return lines


def cache_lines(report: JSON) -> list[str]:
    """The layer-cache passes as a markdown table: miss against hit."""
    points = report["figures"]["cache"]
    hits = {(p["batch"], p["access"]): p for p in points if p["state"] == "hit"}
    lines = [
        f"Layer cache: {CACHE_HOW}; cache_requests = {report['config']['cache_requests']:,}. "
        "'layers': layer files in the server's cache when the miss pass started and ended, "
        "of those in the store.", "",
        "| batch | access | requests | first ms miss | hit | p50 ms miss | hit | p99 ms miss "
        "| hit | pages/s miss | hit | first miss/hit | p50 miss/hit | layers |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for miss in (p for p in points if p["state"] == "miss"):
        hit = hits[(miss["batch"], miss["access"])]
        lines.append(
            f"| {miss['batch']} | {miss['access']} | {miss['requests']:,} "
            f"| {miss['first_request_ms']:.2f} | {hit['first_request_ms']:.2f} "
            f"| {miss['p50_ms']:.3f} | {hit['p50_ms']:.3f} "
            f"| {miss['p99_ms']:.3f} | {hit['p99_ms']:.3f} "
            f"| {miss['pages_per_s']:,.0f} | {hit['pages_per_s']:,.0f} "
            f"| {miss['first_request_ms'] / hit['first_request_ms']:.1f}x "
            f"| {miss['p50_ms'] / hit['p50_ms']:.2f}x "
            f"| {miss['cached_layers_before']} -> {miss['cached_layers_after']} "
            f"of {miss['layers_in_store']} |")
    return lines


def goal_lines(points: list[JSON]) -> list[str]:
    """The two goals against the best point for each."""
    batched = max((p for p in points if p["batch"] > 1), key=lambda p: p["pages_per_s"])
    single = [p for p in points if p["batch"] == 1 and p["clients"] == 1]
    return [
        f"- Batched goal (>= {GOAL_BATCHED_PAGES_S:,.0f} pages/s): best {batched['name']} "
        f"{batched['pages_per_s']:,.0f} pages/s: "
        f"{'met' if batched['pages_per_s'] >= GOAL_BATCHED_PAGES_S else 'MISSED'}.",
        f"- Single-page goal (p99 <= {GOAL_SINGLE_P99_MS:g} ms) with one client: "
        + "; ".join(f"{p['access']} p99 {p['latency_ms']['p99']:.3f} ms ({goal_status(p)[1]})"
                    for p in single)
        + "; with more clients the server does not answer more requests per second, so "
          "latency grows with the number of clients (queueing).",
    ]


def one_core_lines(experiment: JSON) -> list[str]:
    """The one-core experiment as a markdown table."""
    if "points" not in experiment:
        return []
    lines = [f"Diagnostic: the most concurrent random points again, server threads pinned to "
             f"CPU {experiment['server_cpus'][0]} (clients free):", "",
             "| point | pages/s free | pages/s pinned | server CPU free | pinned "
             "| server CPU us/request free | pinned |", "|---|--:|--:|--:|--:|--:|--:|"]
    for row in experiment["points"]:
        free, pinned = row["free"], row["pinned"]
        lines.append(f"| {row['point']} | {free['pages_per_s']:,.0f} | {pinned['pages_per_s']:,.0f}"
                     f" | {free['server_cpu_cores']:.2f} | {pinned['server_cpu_cores']:.2f} "
                     f"| {free['server_cpu_us_per_request']:,.0f} "
                     f"| {pinned['server_cpu_us_per_request']:,.0f} |")
    return [*lines, ""]


def compare(points: list[JSON], inprocess: JSON) -> list[JSON]:
    """gRPC with one client against the in-process baseline, per batch size and access."""
    rows = []
    for p in points:
        base = inprocess["cases"].get(f"b{p['batch']}_{p['access']}")
        if p["clients"] != 1 or base is None:
            continue
        rows.append({
            "batch": p["batch"], "access": p["access"],
            "inprocess_pages_per_s": base["pages_per_s"], "grpc_pages_per_s": p["pages_per_s"],
            "throughput_ratio": base["pages_per_s"] / p["pages_per_s"],
            "inprocess_p50_ms": base["latency_ms"]["p50"], "grpc_p50_ms": p["latency_ms"]["p50"],
            "inprocess_p99_ms": base["latency_ms"]["p99"], "grpc_p99_ms": p["latency_ms"]["p99"],
            "latency_ratio_p50": p["latency_ms"]["p50"] / base["latency_ms"]["p50"],
        })
    return rows


def render_markdown(report: JSON) -> str:
    """A short markdown report: machine, setup, goals, the tables and the profiles."""
    host, config, setup = report["host"], report["config"], report["setup"]
    lines = [
        "# Strata pagebench: GetPages over loopback gRPC",
        "",
        f"`python -m bench.pagebench{' --quick' if config['mode'] == 'quick' else ''}` on "
        f"{host['hostname']} ({host['cpu_count']} CPUs, {host['memory_gb']} GB, "
        f"{host['platform']}), Python {host['python']}, "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + f", {host['started_utc']}, commit {host['git_commit']} "
        f"({host['git_dirty_files']} files differ from it). Objects: {config['storage']}. "
        f"Total {report['total_seconds']:.0f} s.",
        "",
        f"Setup: {setup['pages']:,} pages ({setup['bytes'] / 2**20:.0f} MB) ingested over gRPC "
        f"in {setup['ingest_seconds']:.1f} s ({setup['ingest_pages_per_s']:,.0f} pages/s), "
        f"then Compact(force) in {setup['compact_seconds']:.1f} s ("
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in setup["compaction"].items())
        + "); reads come from "
        f"{report['inprocess']['layers']['total']} layer files "
        f"({report['inprocess']['layers']['image']} image). Each point: "
        f"{config['warmup_s']} s warm-up, then {config['duration_s']} s timed; each client is "
        "its own process with one long-lived GetPages stream, one request in flight. "
        f"**Client processes share the {host['cpu_count']} cores with the server**: "
        "'server CPU' and 'clients CPU' are cores used during the timed window, 'other CPU' "
        "the rest of the machine's busy cores (other processes: noise).",
        "",
        f"Goals: batched >= {GOAL_BATCHED_PAGES_S:,.0f} pages/s; single-page p99 <= "
        f"{GOAL_SINGLE_P99_MS:g} ms. Reference: {NEON_REFERENCE}.",
        "",
        *table_lines(report),
        "",
        f"Errors: {sum(p['errors'] for p in report['points'])}, pages failing the content check: "
        f"{sum(p['bad_pages'] for p in report['points'])}.",
        "",
        *goal_lines(report["points"]),
        "",
        *one_core_lines(report["one_core_experiment"]),
        *cache_lines(report),
        "",
    ]
    for why, prof in report["profiles"].items():
        if not isinstance(prof, dict):  # {"skipped": why} when py-spy is missing
            lines += [f"Profile {why}: {prof}", ""]
            continue
        if "self_pct" not in prof:
            lines += [f"Profile {why}: {prof.get('error', prof)}", ""]
            continue
        rerun = prof["rerun_latency_ms"]
        lines += [
            f"## Server profile: {why.replace('_', ' ')} ({prof['point']})",
            "",
            f"py-spy --gil at {prof['rate_hz']} Hz on a rerun ({prof['rerun_pages_per_s']:,.0f} "
            f"pages/s, p50 {rerun['p50']:.2f} ms, p99 {rerun['p99']:.2f} ms, server "
            f"{prof['rerun_server_cpu_cores']:.2f} cores): GIL held "
            f"{100 * prof['gil_busy_fraction']:.0f}% of the time, "
            f"{prof['gil_us_per_request']:.0f} us of GIL-holding Python per request. By thread: "
            + ", ".join(f"{name} {pct}%" for name, pct in prof["by_thread_pct"][:4]) + ".",
            "",
            "| inclusive % by file | | self % by function | |",
            "|---|--:|---|--:|",
            *(f"| {a[0]} | {a[1]} | {b[0]} | {b[1]} |"
              for a, b in zip(prof["inclusive_pct_by_file"][:12], prof["self_pct"][:12],
                              strict=False)),
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Set up, sweep, profile if a goal is missed, time layer-cache misses and hits, run the
    baseline; print and write reports."""
    parser = argparse.ArgumentParser(prog="python -m bench.pagebench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer points, shorter, smaller")
    parser.add_argument("--out", type=Path, help="write the JSON report here (and a .md copy)")
    parser.add_argument("--no-profile", action="store_true", help="never run py-spy")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    stop_on_sigterm()
    host = host_info()
    started = time.perf_counter()
    out_dir = args.out.parent if args.out is not None else Path(tempfile.gettempdir())
    out_dir.mkdir(parents=True, exist_ok=True)
    points: list[JSON] = []
    cache: list[JSON] = []
    with tempfile.TemporaryDirectory(prefix="strata-pagebench-") as tmp:
        root = Path(tmp)
        with ServerProcess(root / "state", objectstore.suite_store("pagebench", root / "objects"),
                           root / "pageserver.log") as server:
            print(f"[{time.perf_counter() - started:6.1f}s] server pid {server.pid} on "
                  f"{server.address}; ingesting {settings.pages:,} pages", flush=True)
            relation, setup = load_relation(server, settings)
            pool = ClientPool(max(settings.clients), server)
            try:
                for point in sweep_points(settings):
                    result = run_point(pool, server, relation, settings, point)
                    points.append(result)
                    lat = result["latency_ms"]
                    print(f"[{time.perf_counter() - started:6.1f}s] {point.name:22} "
                          f"{result['pages_per_s']:9,.0f} pages/s {result['requests_per_s']:7,.0f}"
                          f" req/s  p50 {lat['p50']:.3f} p99 {lat['p99']:.3f} "
                          f"p99.9 {lat['p99_9']:.3f} ms  server {result['server_cpu_cores']:.2f}"
                          f" clients {result['clients_cpu_cores']:.2f}"
                          f" other {result['other_cpu_cores']:.2f} cores", flush=True)
                profiles = {} if args.no_profile else profile_points(
                    pool, server, relation, settings, profile_targets(points), out_dir)
                print(f"[{time.perf_counter() - started:6.1f}s] server pinned to one core",
                      flush=True)
                one_core = one_core_experiment(pool, server, relation, settings, points)
                for batch in settings.cache_batches:
                    for access in settings.accesses:
                        pair = cache_pair(pool, server, relation, settings, batch, access)
                        cache += pair
                        print(f"[{time.perf_counter() - started:6.1f}s] layer cache "
                              f"b{batch}_{access}: " + "; ".join(
                                  f"{p['state']} first {p['first_request_ms']:.2f} ms, p50 "
                                  f"{p['p50_ms']:.3f} p99 {p['p99_ms']:.3f} ms, "
                                  f"{p['pages_per_s']:,.0f} pages/s" for p in pair), flush=True)
            finally:
                pool.close()
            server_exit = server.stop()
        print(f"[{time.perf_counter() - started:6.1f}s] server stopped ({server_exit}); "
              "in-process baseline", flush=True)
        inprocess = measure_inprocess(server, relation, settings)
    report: JSON = {
        "host": {**host, "finished_utc": datetime.now(UTC).isoformat(timespec="seconds")},
        "versions": versions(),
        "config": {**asdict(settings), "page_size": PAGE_SIZE, "start_lead_s": START_LEAD_S,
                   "server": "python -m pageserver.main --listen 127.0.0.1:0 "
                             "--metrics-listen '' (defaults otherwise: 32 RPC threads)",
                   "client": "grpc.aio, one process and one channel per client",
                   "storage": objectstore.describe(), "cache_passes": CACHE_HOW},
        "goals": {"batched_pages_per_s": GOAL_BATCHED_PAGES_S,
                  "single_page_p99_ms": GOAL_SINGLE_P99_MS, "reference": NEON_REFERENCE},
        "setup": setup,
        "server_exit_code": server_exit,
        "points": points,
        "profiles": profiles,
        "one_core_experiment": one_core,
        "inprocess": inprocess,
        "grpc_vs_inprocess": compare(points, inprocess),
        "figures": {"cache": cache, "cache_ratios": cache_ratios(cache)},
        "total_seconds": time.perf_counter() - started,
    }
    print()
    print("\n".join(table_lines(report)))
    print()
    print("\n".join(cache_lines(report)))
    print(f"\n{settings.mode} run: {report['total_seconds']:.0f} s")
    if args.out is not None:
        args.out.write_text(dump_json(report) + "\n")
        args.out.with_suffix(".md").write_text(render_markdown(report))
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
