"""Pagebench's fixed-length client passes and the miss/hit ratios of the layer-cache phase."""

from __future__ import annotations

import asyncio
import time

from bench.pagebench import Job, cache_ratios, run_job
from bench.synthetic import PAGE_HEADER
from common.keys import PAGE_SIZE
from proto import strata_pb2 as pb


class FakeCall:
    """A GetPages stream answering each request at once with the pages pagebench ingests."""

    def __init__(self) -> None:
        self.requests: list[pb.GetPagesRequest] = []

    async def write(self, request: pb.GetPagesRequest) -> None:
        self.requests.append(request)

    async def read(self) -> pb.GetPagesResponse:
        request = self.requests[-1]
        pages = [PAGE_HEADER.pack(block, 0).ljust(PAGE_SIZE, b"\0") for block in request.blocks]
        return pb.GetPagesResponse(request_id=request.request_id, pages=pages)

    async def done_writing(self) -> None:
        pass


class FakeStub:
    def __init__(self) -> None:
        self.call = FakeCall()

    def GetPages(self, metadata: object) -> FakeCall:
        return self.call


def test_a_counted_job_times_exactly_its_requests_from_the_first() -> None:
    stub = FakeStub()
    job = Job(client=0, clients=1, batch=4, access="sequential", pages=64,
              relation=pb.Relation().SerializeToString(), start_at=time.monotonic(),
              warmup_s=0.0, duration_s=0.0, seed=1, requests=7)
    result = asyncio.run(run_job(stub, (), job))
    assert result["requests"] == 7 and len(result["latencies_us"]) == 7
    assert result["warmup_requests"] == 0 and result["errors"] == result["bad_pages"] == 0
    assert [list(r.blocks) for r in stub.call.requests] == [
        list(range(first, first + 4)) for first in range(0, 28, 4)]
    # From the first request's send to the last response: spans every latency (in whole us).
    assert result["timed_seconds"] >= (sum(result["latencies_us"]) - 7) / 1e6


def test_ratios_divide_each_miss_figure_by_the_same_pass_hit() -> None:
    def point(state: str, scale: float) -> dict[str, object]:
        return {"batch": 16, "access": "random", "state": state,
                "first_request_ms": 2.0 * scale, "p50_ms": 1.0 * scale, "p99_ms": 4.0 * scale,
                "pages_per_s": 1000.0 / scale}

    (ratio,) = cache_ratios([point("miss", 10.0), point("hit", 1.0)])
    assert ratio["batch"] == 16 and ratio["access"] == "random"
    assert ratio["miss_over_hit"] == {"first_request_ms": 10.0, "p50_ms": 10.0,
                                      "p99_ms": 10.0, "pages_per_s": 0.1}
