"""WAL appended commit by commit costs about its bytes, and every version stays readable.

PostgreSQL rewrites its last WAL page from the start on every commit; the layers keep
each version as the bytes it changed (docs/FORMAT.md, RFC 0018). These tests write WAL
the way PostgreSQL does, through ``Timeline.ingest``, and check what the layers cost and
that every commit's state reads back exactly, in L0 layers, after compaction into L1
deltas and images, and on branches cut between commits.
"""

from __future__ import annotations

import numpy as np

from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.engine import Engine
from pageserver.tenant import BranchPoint
from pageserver.timeline import Timeline

SEGMENT = "pg_wal/000000010000000000000001"
SEGMENT_PAGES = 8
RECORD = 400  # bytes a commit appends: random, so incompressible


class WalWriter:
    """Writes a WAL segment as PostgreSQL does: zero-filled when created, then each commit
    appends a record and rewrites its pages from the start of the first page it touches."""

    def __init__(self, timeline: Timeline, seed: int) -> None:
        self._timeline = timeline
        self._rng = np.random.default_rng(seed)
        self._segment = bytearray(SEGMENT_PAGES * PAGE_SIZE)
        self._end = 0
        timeline.ingest(Batch((Mkdir("pg_wal"), Create(SEGMENT),
                               Write(SEGMENT, 0, bytes(self._segment)))))

    def commit(self, count: int) -> dict[int, bytes]:
        """``count`` commits; the segment as each left it, by its LSN."""
        states: dict[int, bytes] = {}
        for _ in range(count):
            first_page = self._end // PAGE_SIZE * PAGE_SIZE
            self._segment[self._end:self._end + RECORD] = self._rng.integers(
                0, 256, RECORD, dtype=np.uint8).tobytes()
            self._end += RECORD
            last_page = -(-self._end // PAGE_SIZE) * PAGE_SIZE
            lsn = self._timeline.ingest(Batch((Write(
                SEGMENT, first_page, bytes(self._segment[first_page:last_page])),)))
            states[lsn] = bytes(self._segment)
        return states


def assert_every_state_reads_back(timeline: Timeline, states: dict[int, bytes]) -> None:
    for lsn, expected in states.items():
        assert timeline.read_file(SEGMENT, lsn=lsn) == expected, f"at LSN {lsn}"


def test_appended_wal_costs_about_its_bytes(engine: Engine) -> None:
    main = engine.create_tenant("t").branch("main")
    commits = 120  # 48 KB of records over 6 pages, rewritten 8 KB (or 16 KB) at a time
    states = WalWriter(main, seed=1).commit(commits)
    main.freeze()
    main.flush()
    appended = commits * RECORD
    # One 8 KB version per commit would cost 20x the records; each commit's patch, its
    # index entry and its packed metadata and batch record cost a little over them.
    assert main.owned_bytes() < 1.3 * appended + 4 * PAGE_SIZE
    assert_every_state_reads_back(main, states)


def test_every_commit_reads_back_through_compaction_and_branches(engine: Engine) -> None:
    tenant = engine.create_tenant("t")
    main = tenant.branch("main")
    wal = WalWriter(main, seed=2)
    states: dict[int, bytes] = {}
    for _ in range(4):  # four L0 layers, each starting chains of its own
        states.update(wal.commit(30))
        main.freeze()
        main.flush()
    assert_every_state_reads_back(main, states)
    engine.compact("t", force=True)  # L0s merged into L1 deltas, an image at the newest
    assert not [layer for layer in main.layers if layer.desc.level == 0]
    assert any(layer.is_image for layer in main.layers)
    assert_every_state_reads_back(main, states)
    for lsn in sorted(states)[5::25]:
        child = tenant.create_branch(f"at-{lsn}", at=BranchPoint(lsn=lsn))
        assert child.read_file(SEGMENT) == states[lsn]

