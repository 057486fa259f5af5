"""Synthetic engine data the in-process suites share: tagged 8 KB pages, the relation
they go to, long histories in many L0 layers, and the timing of ``create_branch`` on them.

Every page starts with a (block, tag) header, so reads can be checked against the writes;
the rest is random bytes then zeros, so pages compress about as real ones do.
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.harness import JSON, summary, timed
from common.keys import PAGE_SIZE, Relation, parse_relation_path
from common.ops import Batch, Create, Mkdir, Truncate, Write
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.remote import open_storage
from pageserver.tenant import BranchPoint
from pageserver.timeline import Timeline

REL_PATH = "base/5/16384"
BATCH_PAGES = 64
PAGE_HEADER = struct.Struct("<QQ")  # block, tag: lets reads be checked against the writes
POOL_BYTES = 1 << 22  # random bytes that page bodies are sliced from


def open_engine(state_dir: Path, store: str) -> Engine:
    """An engine on ``state_dir`` with its objects at ``store`` (a directory or a URL).

    Background work is off: the suites freeze, flush and compact explicitly.
    """
    config = EngineConfig(state_dir=state_dir, background_period_s=0, pitr_window_s=0)
    return Engine(config, open_storage(store))


def create_file(timeline: Timeline, blocks: int) -> Relation:
    """Create ``REL_PATH`` of ``blocks`` pages on an empty timeline; returns its relation."""
    timeline.ingest(Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH),
                           Truncate(REL_PATH, blocks * PAGE_SIZE))))
    parsed = parse_relation_path(REL_PATH)
    assert parsed is not None
    return parsed[0]


def flush_timeline(timeline: Timeline) -> None:
    """Freeze the open memtable and write every frozen one as an L0 layer."""
    timeline.freeze()
    timeline.flush()


def layer_stats(timeline: Timeline) -> JSON:
    """How many layers of each kind the timeline has, and their bytes."""
    layers = list(timeline.layers)
    return {
        "total": len(layers),
        "l0_delta": sum(1 for x in layers if not x.is_image and x.desc.level == 0),
        "l1_delta": sum(1 for x in layers if not x.is_image and x.desc.level > 0),
        "image": sum(1 for x in layers if x.is_image),
        "bytes": sum(x.desc.size for x in layers),
    }


class PageMaker:
    """Batches of 8 KB pages: a (block, tag) header, random bytes, then zeros (lz4 ~4:1)."""

    def __init__(self, rng: np.random.Generator, random_bytes: int) -> None:
        self._rng = rng
        self._random_bytes = random_bytes
        self._pool = rng.bytes(POOL_BYTES)
        self._pad = bytes(PAGE_SIZE - PAGE_HEADER.size - random_bytes)

    def batch(self, blocks: np.ndarray, tag: int) -> Batch:
        """One batch writing every block of ``blocks`` with a fresh page tagged ``tag``."""
        size = self._random_bytes
        starts = self._rng.integers(0, POOL_BYTES - size, len(blocks)).tolist()
        return Batch(tuple(
            Write(REL_PATH, block * PAGE_SIZE,
                  PAGE_HEADER.pack(block, tag) + self._pool[start : start + size] + self._pad)
            for block, start in zip(blocks.tolist(), starts, strict=True)
        ))


@dataclass
class History:
    """What was written where: enough to know the expected page of any block at any LSN."""

    perms: np.ndarray  # [pass, i]: the i-th block written in that pass
    batch_lsns: np.ndarray  # [pass, batch]: LSN of that batch

    def expected_tags(self, lsn: int) -> np.ndarray:
        """Per block, the pass whose write is visible at ``lsn`` (-1: none, zeros)."""
        passes, blocks = self.perms.shape
        tags = np.full(blocks, -1, dtype=np.int64)
        for tag in range(passes):
            position = np.empty(blocks, dtype=np.int64)
            position[self.perms[tag]] = np.arange(blocks)
            tags[self.batch_lsns[tag, position // BATCH_PAGES] <= lsn] = tag
        return tags


def build_history(timeline: Timeline, rng: np.random.Generator, *, blocks: int, passes: int,
                  l0_layers: int, random_bytes: int) -> tuple[History, JSON]:
    """Write every one of ``blocks`` blocks ``passes`` times (random order) into at least
    ``l0_layers`` L0 layers; what was written, and how long it took."""
    per_pass = math.ceil(blocks / BATCH_PAGES)
    flush_every = per_pass * passes // l0_layers
    maker = PageMaker(rng, random_bytes)
    history = History(np.empty((passes, blocks), dtype=np.int64),
                      np.empty((passes, per_pass), dtype=np.int64))
    ingest_s = flush_s = 0.0
    unflushed = 0
    started = time.perf_counter()
    for tag in range(passes):
        history.perms[tag] = rng.permutation(blocks)
        for index in range(per_pass):
            batch = maker.batch(history.perms[tag, index * BATCH_PAGES:][:BATCH_PAGES], tag)
            begin = time.perf_counter()
            history.batch_lsns[tag, index] = timeline.ingest(batch)
            ingest_s += time.perf_counter() - begin
            unflushed += 1
            if unflushed == flush_every:
                flush_s += timed(lambda: flush_timeline(timeline))
                unflushed = 0
    flush_s += timed(lambda: flush_timeline(timeline))
    return history, {
        "page_versions": blocks * passes,
        "batches": passes * per_pass,
        "flush_every_batches": flush_every,
        "ingest_seconds": ingest_s,
        "flush_seconds": flush_s,
        "wall_seconds": time.perf_counter() - started,
        "layers": layer_stats(timeline),
    }


def build_small(engine: Engine, rng: np.random.Generator, *, versions: int,
                random_bytes: int) -> tuple[int, int]:
    """Tenant ``small``: ``versions`` page versions in one layer; (older, latest) LSNs."""
    timeline = engine.create_tenant("small").branch("main")
    create_file(timeline, versions)
    maker = PageMaker(rng, random_bytes)
    blocks = np.arange(versions, dtype=np.int64)
    lsns = [timeline.ingest(maker.batch(blocks[first : first + BATCH_PAGES], 0))
            for first in range(0, len(blocks), BATCH_PAGES)]
    engine.flush("small")
    return lsns[len(lsns) // 2], lsns[-1]


def measure_branching(engine: Engine, cases: dict[str, tuple[str, int | None]],
                      samples: int) -> JSON:
    """Interleaved create_branch timings per case (tenant, LSN; None = latest), in ms:
    ``samples`` per case after two warm-up rounds.

    Each branch is deleted again (untimed) so the tenant manifest keeps its size.
    """
    taken: dict[str, list[float]] = {name: [] for name in cases}
    for round_no in range(samples + 2):  # the first two rounds warm up
        for name, (tenant_id, lsn) in cases.items():
            tenant = engine.tenant(tenant_id)
            start = time.perf_counter()
            tenant.create_branch("bench-child", parent="main", at=BranchPoint(lsn=lsn))
            seconds = time.perf_counter() - start
            tenant.delete_branch("bench-child")
            if round_no >= 2:
                taken[name].append(seconds * 1000)
    return {name: {"tenant": cases[name][0], "lsn": cases[name][1], "samples_ms": values,
                   "ms": summary(values)} for name, values in taken.items()}
