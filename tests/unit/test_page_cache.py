"""The compute's local page cache: states, acknowledgements, eviction, tickets, persistence."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from common.keys import PAGE_SIZE, Relation
from common.sparse import allocated_bytes, runs
from compute import page_cache
from compute.page_cache import (
    DATA_FILE,
    INDEX_FILE,
    CacheFullError,
    CacheLockedError,
    CacheStamp,
    PageCache,
    PageKey,
    PageState,
    drop_unsaved,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

REL_A = Relation(1663, 5, 16384, 0)
REL_B = Relation(1663, 5, 16385, 0)
STAMP = CacheStamp("tenant", "timeline-1", 0x1_0000_0028)


def mb(pages: int) -> float:
    """capacity_mb giving exactly ``pages`` slots."""
    return pages * PAGE_SIZE / (1024 * 1024)


def key(block: int, rel: Relation = REL_A) -> PageKey:
    return (rel.to_bytes(), block)


def page(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAGE_SIZE)


def fill(n: int) -> bytes:
    return bytes([n % 256]) * PAGE_SIZE


@pytest.fixture
def make_cache(tmp_path: Path) -> Iterator[Callable[..., PageCache]]:
    opened: list[PageCache] = []

    def make(pages: int = 8, expected: CacheStamp | None = None, sub: str = "cache") -> PageCache:
        cache = PageCache.open(tmp_path / sub, mb(pages), expected)
        opened.append(cache)
        return cache

    yield make
    for cache in opened:
        cache.close()


# ------------------------------------------------------------------- states


def test_dirty_then_acknowledged_clean(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    k = key(1)
    v1 = cache.put_dirty(k, page(1))
    assert cache.state(k) is PageState.DIRTY
    assert cache.version(k) == v1
    assert cache.dirty_keys() == [k]
    assert cache.end_flush({k: v1}) == 1
    assert cache.state(k) is PageState.CLEAN
    assert cache.dirty_keys() == []
    assert cache.get(k) == page(1)
    assert cache.end_flush({k: v1, key(99): v1}) == 0  # CLEAN and absent keys are skipped


def test_write_after_its_flush_stays_dirty(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    k = key(1)
    flushing = {k: cache.put_dirty(k, page(1))}
    v2 = cache.put_dirty(k, page(2))  # written again while its write is on the wire
    assert v2 != flushing[k]
    assert cache.state(k) is PageState.DIRTY
    assert cache.end_flush(flushing) == 0
    assert cache.state(k) is PageState.DIRTY
    assert cache.get(k) == page(2)
    assert cache.end_flush({k: v2}) == 1
    assert cache.state(k) is PageState.CLEAN
    assert cache.get(k) == page(2)


def test_stale_acknowledgement_changes_nothing(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    k = key(1)
    first = {k: cache.put_dirty(k, page(1))}
    second = {k: cache.put_dirty(k, page(2))}
    assert cache.end_flush(second) == 1
    assert cache.state(k) is PageState.CLEAN
    assert cache.end_flush(first) == 0  # an older version acknowledged late
    assert cache.state(k) is PageState.CLEAN
    assert cache.get(k) == page(2)


def test_same_version_acknowledged_twice(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    k = key(1)
    versions = {k: cache.put_dirty(k, page(1))}
    assert cache.end_flush(versions) == 1
    assert cache.end_flush(versions) == 0  # e.g. a resent batch: already durable
    assert cache.state(k) is PageState.CLEAN
    stats = cache.stats()
    assert (stats.clean, stats.dirty) == (1, 0)


def test_unacknowledged_pages_stay_dirty(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    k1, k2 = key(1), key(2)
    failed = {k1: cache.put_dirty(k1, page(1)), k2: cache.put_dirty(k2, page(2))}
    cache.put_dirty(k2, page(3))  # the flush failed: no call; k2 is written again
    assert cache.state(k1) is PageState.DIRTY
    assert cache.state(k2) is PageState.DIRTY
    assert cache.get(k2) == page(3)
    assert cache.stats().dirty == 2
    assert cache.end_flush(failed) == 1  # resent and acknowledged: k1 only
    assert cache.state(k1) is PageState.CLEAN
    assert cache.state(k2) is PageState.DIRTY


def test_end_flush_with_versions_from_put_dirty(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    k1, k2 = key(1), key(2)
    pending = {k1: cache.put_dirty(k1, page(1)), k2: cache.put_dirty(k2, page(2))}
    cache.put_dirty(k2, page(3))  # a newer write is still pending
    assert cache.end_flush(pending) == 1
    assert cache.state(k1) is PageState.CLEAN
    assert cache.state(k2) is PageState.DIRTY


def test_versions_never_repeat_after_discard(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    k = key(1)
    flushing = {k: cache.put_dirty(k, page(1))}
    cache.discard([k])
    cache.put_dirty(k, page(2))  # re-created after the truncation
    cache.end_flush(flushing)  # ack of the write from before the truncation
    assert cache.state(k) is PageState.DIRTY


# ----------------------------------------------------------------- eviction


def test_capacity_bound_and_eviction(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=8)
    for block in range(50):
        assert cache.put_clean(key(block), fill(block))
        assert len(cache) <= 8
    stats = cache.stats()
    assert stats.clean == 8 and stats.capacity == 8
    assert stats.evictions == 42
    assert stats.bytes_used == 8 * PAGE_SIZE
    for block in range(42, 50):  # CLOCK with clear bits evicts in insertion order
        assert cache.get(key(block)) == fill(block)


def test_hit_gives_second_chance(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=4)
    for block in range(4):
        cache.put_clean(key(block), fill(block))
    assert cache.get(key(0)) == fill(0)
    cache.put_clean(key(10), fill(10))
    assert cache.contains(key(0))
    assert not cache.contains(key(1))


def test_a_scan_larger_than_the_cache_leaves_the_hot_set_alone(
        make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=64)
    hot = [key(block, REL_B) for block in range(32)]
    for block, hot_key in enumerate(hot):
        cache.put_clean(hot_key, fill(block))
        assert cache.get(hot_key) == fill(block)
    for block in range(1000):  # each scan page read once, as a scan does
        assert cache.put_clean(key(block), fill(block), scan=True)
        assert cache.get(key(block)) == fill(block)
    assert all(cache.contains(hot_key) for hot_key in hot)
    assert len(cache) == 64


def test_a_scan_page_read_twice_is_an_ordinary_page(
        make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=8)
    cache.put_clean(key(0), fill(0), scan=True)
    cache.get(key(0))
    cache.get(key(0))  # used again: it belongs to the working set now
    for block in range(1, 30):
        cache.put_clean(key(block), fill(block), scan=True)
    assert cache.contains(key(0))


def test_scan_pages_leave_oldest_first_and_unread_ones_wait(
        make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=8)
    for block in range(12):  # read-ahead: none of them read yet
        cache.put_clean(key(block), fill(block), scan=True)
    assert [block for block in range(12) if cache.contains(key(block))] == list(range(4, 12))


def test_read_run_copies_cached_pages_into_a_buffer_and_names_the_missing(
        make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=8)
    rel = REL_A.to_bytes()
    for block in (4, 6):
        cache.put_clean(key(block), page(block))
    out = bytearray(3 * PAGE_SIZE)
    assert cache.read_run(rel, 4, 3, memoryview(out)) == [1]
    assert out == page(4) + bytes(PAGE_SIZE) + page(6)
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (2, 1)


def test_read_run_clips_a_read_that_starts_and_ends_inside_pages(
        make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=8)
    for block in (1, 2):
        cache.put_clean(key(block), page(block))
    out = bytearray(PAGE_SIZE)  # 4 KB of block 1, then 4 KB of block 2
    assert cache.read_run(REL_A.to_bytes(), 1, 2, memoryview(out), skip=PAGE_SIZE // 2) == []
    assert out == page(1)[PAGE_SIZE // 2:] + page(2)[:PAGE_SIZE // 2]


def test_put_clean_many_stores_views_of_one_buffer_and_honours_tickets(
        make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=8)
    ticket = cache.fetch_ticket()
    cache.put_dirty(key(1), fill(9))  # written after the ticket: the fetch is older
    reply = memoryview(page(0) + page(1) + page(2))
    views = [reply[at:at + PAGE_SIZE] for at in range(0, 3 * PAGE_SIZE, PAGE_SIZE)]
    assert cache.put_clean_many([key(0), key(1), key(2)], views, ticket, scan=True) == 2
    assert cache.get(key(0)) == page(0) and cache.get(key(2)) == page(2)
    assert cache.get(key(1)) == fill(9)
    assert cache.written([key(0), key(1), key(5)]) == {key(1)}
    assert cache.absent([key(0), key(5)]) == [key(5)]
    with pytest.raises(ValueError, match="2 keys for 1 pages"):
        cache.put_clean_many([key(3), key(4)], [page(3)])


def test_put_clean_many_refuses_pages_discarded_since_the_ticket_and_stops_when_full(
        make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=4)
    ticket = cache.fetch_ticket()
    cache.discard([key(2)])  # truncated while the fetch was in flight
    assert cache.put_clean_many([key(1), key(2)], [page(1), page(2)], ticket) == 1
    assert not cache.contains(key(2))
    for block in range(10, 14):
        cache.put_dirty(key(block), fill(block))  # every slot unflushed
    assert cache.put_clean_many([key(5), key(6)], [page(5), page(6)]) == 0
    assert not cache.contains(key(5))


def test_eviction_never_drops_unflushed_pages(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=8)
    for block in range(6):
        cache.put_dirty(key(block), fill(block))  # none acknowledged yet
    for block in range(100, 200):
        cache.put_clean(key(block), fill(block))
        assert len(cache) <= 8
    for block in range(6):
        assert cache.peek(key(block)) == fill(block)
    stats = cache.stats()
    assert (stats.dirty, stats.clean) == (6, 2)


def test_full_of_unflushed_pages(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=4)
    versions = {key(b): cache.put_dirty(key(b), fill(b)) for b in range(4)}
    with pytest.raises(CacheFullError):
        cache.put_dirty(key(4), fill(4))
    assert cache.put_dirty(key(0), fill(40)) > versions[key(0)]  # overwrite still works
    flushing = {k: versions[k] for k in (key(1), key(2))}  # on the wire, not yet acknowledged
    assert not cache.put_clean(key(5), fill(5))  # does not cache, does not raise
    with pytest.raises(CacheFullError):
        cache.put_dirty(key(4), fill(4))
    cache.end_flush(flushing)
    cache.put_dirty(key(4), fill(4))  # evicts one of the two CLEAN pages
    assert cache.get(key(0)) == fill(40)
    assert cache.get(key(3)) == fill(3)
    assert cache.stats().evictions == 1


def test_put_clean_never_replaces_a_cached_page(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    dirty, flushed, clean = key(1), key(2), key(3)
    cache.put_dirty(dirty, page(1))
    cache.end_flush({flushed: cache.put_dirty(flushed, page(2))})
    assert cache.put_clean(clean, page(3))
    assert not cache.put_clean(dirty, page(10))
    assert not cache.put_clean(flushed, page(20))
    assert not cache.put_clean(clean, page(30))
    assert cache.get(dirty) == page(1)
    assert cache.get(flushed) == page(2)
    assert cache.get(clean) == page(3)
    assert cache.state(dirty) is PageState.DIRTY
    assert cache.state(flushed) is PageState.CLEAN


# ------------------------------------------------------------------ discard


def test_discard(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=16)
    cache.put_clean(key(0), page(0))
    cache.put_dirty(key(1), page(1))
    flushing = {key(2): cache.put_dirty(key(2), page(2))}
    assert cache.discard([key(0), key(1), key(2), key(7)]) == 3
    assert len(cache) == 0
    cache.end_flush(flushing)  # ack for a discarded page is ignored
    assert cache.state(key(2)) is None
    stats = cache.stats()
    assert (stats.clean, stats.dirty, stats.bytes_used) == (0, 0, 0)


def test_discard_relation_from(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=32)
    for block in range(10):
        cache.put_dirty(key(block), fill(block))
        cache.put_clean(key(block, REL_B), fill(block))
    assert cache.discard_relation_from(REL_A, 4) == 6
    assert [b for b in range(10) if cache.contains(key(b))] == [0, 1, 2, 3]
    assert cache.discard_relation_from(REL_B.to_bytes()) == 10
    assert cache.discard_relation_from(REL_B.to_bytes()) == 0
    assert len(cache) == 4
    assert cache.stats().dirty == 4


# ------------------------------------------------------------------ tickets


def test_ticket_refuses_fetch_older_than_a_write(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=2)
    k = key(1)
    ticket = cache.fetch_ticket()  # the shim starts fetching k from the page server
    # Meanwhile PostgreSQL writes k; the write is flushed and acknowledged.
    cache.end_flush({k: cache.put_dirty(k, page(2))})
    block = 100
    while cache.contains(k):  # k, now CLEAN, is evicted by later fetches
        cache.put_clean(key(block), page(block))
        block += 1
    assert not cache.put_clean(k, page(1), ticket=ticket)  # stale: must not come back
    assert not cache.contains(k)
    assert cache.put_clean(k, page(2), ticket=cache.fetch_ticket())


def test_ticket_refuses_fetch_older_than_a_discard(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    ticket = cache.fetch_ticket()
    cache.discard([key(1)])
    cache.discard_relation_from(REL_B, 5)
    assert not cache.put_clean(key(1), page(1), ticket=ticket)
    assert not cache.put_clean(key(5, REL_B), page(1), ticket=ticket)
    assert cache.put_clean(key(4, REL_B), page(1), ticket=ticket)  # below the cut
    assert cache.put_clean(key(2), page(1), ticket=ticket)  # untouched key
    later = cache.fetch_ticket()
    assert cache.put_clean(key(6, REL_B), page(1), ticket=later)


def test_old_tickets_are_refused_once_forgotten(
    make_cache: Callable[..., PageCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(page_cache, "_INVALIDATION_MEMORY", 2)
    cache = make_cache()
    ticket = cache.fetch_ticket()
    cache.discard([key(1)])
    cache.discard([key(2)])
    assert cache.put_clean(key(9), page(9), ticket=ticket)  # untouched and remembered
    cache.discard([key(3)])  # key(1) is forgotten: only the floor knows now
    assert not cache.put_clean(key(1), page(1), ticket=ticket)
    assert not cache.put_clean(key(8), page(8), ticket=ticket)  # conservative
    assert cache.put_clean(key(1), page(1), ticket=cache.fetch_ticket())


def test_ticket_fresh_for_clean_evictions(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=2)
    ticket = cache.fetch_ticket()
    for block in range(10):  # fetched pages come and go; none was written
        assert cache.put_clean(key(block), fill(block), ticket=ticket)


# ------------------------------------------------------------- persistence


def test_reuse_after_clean_close(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=16)
    for block in range(10):
        cache.put_clean(key(block), page(block))
    versions = {key(b, REL_B): cache.put_dirty(key(b, REL_B), page(b)) for b in range(10, 14)}
    versions[key(3)] = cache.put_dirty(key(3), page(33))
    cache.end_flush(versions)
    cache.discard([key(5)])
    keys = [key(b) for b in range(10)] + [key(b, REL_B) for b in range(10, 14)]
    before = {k: cache.peek(k) for k in keys}
    assert cache.close(STAMP)
    assert (cache.directory / INDEX_FILE).exists()

    again = make_cache(pages=16, expected=STAMP)
    assert again.reused
    assert not (again.directory / INDEX_FILE).exists()  # consumed before serving
    for k, content in before.items():
        assert again.get(k) == content
        if content is not None:
            assert again.state(k) is PageState.CLEAN
    stats = again.stats()
    assert stats.clean == 13 and stats.hits == 13 and stats.misses == 1 and stats.corrupt == 0
    # The reused cache works as usual.
    again.put_dirty(key(5), page(55))
    assert again.get(key(5)) == page(55)


@pytest.mark.parametrize(
    ("pages", "expected"),
    [
        (16, CacheStamp("tenant", "timeline-1", STAMP.lsn + 1)),  # the branch moved on
        (16, CacheStamp("tenant", "timeline-2", STAMP.lsn)),  # another timeline
        (16, CacheStamp("other", "timeline-1", STAMP.lsn)),
        (16, None),
        (32, STAMP),  # another capacity
    ],
)
def test_no_reuse_with_another_stamp_or_capacity(
    make_cache: Callable[..., PageCache], pages: int, expected: CacheStamp | None
) -> None:
    cache = make_cache(pages=16)
    cache.put_clean(key(1), page(1))
    assert cache.close(STAMP)
    again = make_cache(pages=pages, expected=expected)
    assert not again.reused
    assert len(again) == 0 and again.get(key(1)) is None
    assert not (again.directory / INDEX_FILE).exists()
    again.close(STAMP)
    third = make_cache(pages=16, expected=STAMP)  # the first save is gone for good
    assert not third.reused or third.get(key(1)) is None


def test_no_reuse_when_closed_with_unflushed_pages(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    cache.put_clean(key(1), page(1))
    cache.put_dirty(key(2), page(2))
    assert not cache.close(STAMP)
    assert not make_cache(expected=STAMP).reused


def test_no_reuse_without_a_stamp_at_close(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    cache.put_clean(key(1), page(1))
    assert not cache.close()
    assert not cache.close(STAMP)  # already closed
    with pytest.raises(ValueError):
        cache.get(key(1))
    assert not make_cache(expected=STAMP).reused


_CRASHING_CHILD = """
import os, sys
from compute.page_cache import CacheStamp, PageCache
stamp = CacheStamp("tenant", "timeline-1", int(sys.argv[2]))
cache = PageCache.open(sys.argv[1], 0.125, stamp)
assert cache.reused, "the child should have reused the saved cache"
cache.put_dirty((bytes(13), 7), b"x" * 8192)
os._exit(0)  # a crash: no close
"""


def test_no_reuse_after_crash(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    cache = PageCache.open(directory, 0.125)
    cache.put_clean(key(1), page(1))
    assert cache.close(STAMP)
    subprocess.run(
        [sys.executable, "-c", _CRASHING_CHILD, str(directory), str(STAMP.lsn)],
        cwd=REPO_ROOT,
        check=True,
        timeout=60,
    )
    assert not (directory / INDEX_FILE).exists()
    with PageCache.open(directory, 0.125, STAMP) as again:
        assert not again.reused
        assert again.get(key(1)) is None


# -------------------------------------------------------------------- disk

# What a file of N pages may take beyond N x 8 KB: the filesystem's last block (the size
# is set by writing one byte at the end) and an indirect block or two.
_SLACK = 64 * 1024


def disk_pages(cache_dir: Path) -> float:
    return allocated_bytes(cache_dir / DATA_FILE) / PAGE_SIZE


def test_the_slots_file_takes_disk_for_what_the_cache_holds(
    make_cache: Callable[..., PageCache],
) -> None:
    cache = make_cache(pages=4096)  # 32 MB of slots
    assert allocated_bytes(cache.directory / DATA_FILE) <= _SLACK
    for block in range(300):
        cache.put_clean(key(block), page(block))
    held = allocated_bytes(cache.directory / DATA_FILE)
    assert 300 * PAGE_SIZE <= held <= 300 * PAGE_SIZE + _SLACK
    cache.discard([key(block) for block in range(0, 100)])
    cache.discard_relation_from(REL_A.to_bytes(), 250)
    after = allocated_bytes(cache.directory / DATA_FILE)
    assert 150 * PAGE_SIZE <= after <= 150 * PAGE_SIZE + _SLACK
    for block in range(100, 250):  # what is left reads as it was
        assert cache.get(key(block)) == page(block)


def test_close_keeps_the_lowest_ordinary_slots_and_gives_back_the_rest(
    make_cache: Callable[..., PageCache],
) -> None:
    cache = make_cache(pages=256)
    for block in range(40):  # a scan first: its pages still go last
        cache.put_clean(key(block, REL_B), page(block), scan=True)
    for block in range(100):
        cache.put_clean(key(block), page(block))
    cache.discard([key(block) for block in range(5)])  # the slots of 0..4 come free
    for block in range(100, 105):  # and are taken again, as the newest pages
        cache.put_clean(key(block), page(block))
    assert cache.close(STAMP, keep_mb=mb(50))
    assert 50 <= disk_pages(cache.directory) <= 50 + _SLACK / PAGE_SIZE

    again = make_cache(pages=256, expected=STAMP)
    assert again.reused and len(again) == 50
    kept = sorted(block for block in range(105) if again.contains(key(block)))
    assert kept == [*range(5, 50), *range(100, 105)]  # the lowest slots, whatever is in them
    for block in kept:
        assert again.get(key(block)) == page(block)
    assert not any(again.contains(key(block, REL_B)) for block in range(40))


def test_scan_pages_are_kept_only_when_room_is_left(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=64)
    for block in range(10):
        cache.put_clean(key(block), page(block), scan=True)
    cache.put_clean(key(20), page(20))
    assert cache.close(STAMP, keep_mb=mb(5))
    again = make_cache(pages=64, expected=STAMP)
    assert again.contains(key(20)) and len(again) == 5


@pytest.mark.parametrize("how", ["keep nothing", "no stamp", "unflushed pages", "empty"])
def test_a_close_that_keeps_nothing_deletes_the_slots_file(
    make_cache: Callable[..., PageCache], how: str
) -> None:
    cache = make_cache(pages=64)
    if how != "empty":
        for block in range(20):
            cache.put_clean(key(block), page(block))
    if how == "unflushed pages":
        cache.put_dirty(key(30), page(30))
    stamp = None if how == "no stamp" else STAMP
    assert not cache.close(stamp, keep_mb=0 if how == "keep nothing" else None)
    assert not (cache.directory / DATA_FILE).exists()
    assert not (cache.directory / INDEX_FILE).exists()
    assert not make_cache(pages=64, expected=STAMP).reused


def test_drop_unsaved_deletes_only_a_killed_caches_file(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    assert not drop_unsaved(directory)  # no cache at all
    cache = PageCache.open(directory, 0.125)
    cache.put_clean(key(1), page(1))
    assert not drop_unsaved(directory)  # open: its owner decides
    assert cache.close(STAMP)
    assert not drop_unsaved(directory)  # saved for the next start
    assert (directory / DATA_FILE).exists()
    subprocess.run(  # reuses it, then dies without a close
        [sys.executable, "-c", _CRASHING_CHILD, str(directory), str(STAMP.lsn)],
        cwd=REPO_ROOT, check=True, timeout=60,
    )
    assert (directory / DATA_FILE).exists() and not (directory / INDEX_FILE).exists()
    assert drop_unsaved(directory)
    assert not (directory / DATA_FILE).exists()


def test_runs_of_slots() -> None:
    assert list(runs([])) == []
    assert list(runs([3])) == [(3, 1)]
    assert list(runs([0, 1, 2, 5, 6, 9])) == [(0, 3), (5, 2), (9, 1)]


def test_corrupt_slot_is_a_miss(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    for block in range(4):
        cache.put_clean(key(block), page(block))
    assert cache.close(STAMP)
    data_path = cache.directory / DATA_FILE
    raw = bytearray(data_path.read_bytes())
    offset = raw.find(page(2))
    assert offset >= 0 and offset % PAGE_SIZE == 0
    raw[offset + 100] ^= 0x01
    data_path.write_bytes(raw)

    again = make_cache(expected=STAMP)
    assert again.reused
    assert again.get(key(2)) is None
    assert not again.contains(key(2))
    for block in (0, 1, 3):
        assert again.get(key(block)) == page(block)
    stats = again.stats()
    assert (stats.corrupt, stats.misses, stats.hits, stats.clean) == (1, 1, 3, 3)
    assert again.put_clean(key(2), page(2))
    assert again.get(key(2)) == page(2)


def test_corrupt_index_is_not_reused(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    cache.put_clean(key(1), page(1))
    assert cache.close(STAMP)
    index_path = cache.directory / INDEX_FILE
    raw = bytearray(index_path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    index_path.write_bytes(raw)
    again = make_cache(expected=STAMP)
    assert not again.reused
    assert again.get(key(1)) is None
    assert not index_path.exists()


def test_directory_is_locked(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache()
    with pytest.raises(CacheLockedError):
        make_cache()
    cache.close()
    make_cache()


def test_validation(make_cache: Callable[..., PageCache], tmp_path: Path) -> None:
    cache = make_cache()
    with pytest.raises(ValueError):
        cache.put_dirty(key(1), b"short")
    with pytest.raises(ValueError):
        cache.put_clean((b"rel", 1), page(1))
    with pytest.raises(ValueError):
        cache.put_clean(key(1 << 32), page(1))
    with pytest.raises(ValueError):
        PageCache.open(tmp_path / "tiny", 0.001)
    assert len(cache) == 0


# ------------------------------------------------------------- concurrency


def test_threads(make_cache: Callable[..., PageCache]) -> None:
    cache = make_cache(pages=64)
    errors: list[BaseException] = []
    written: dict[PageKey, bytes] = {}  # writer thread's own keys: latest content
    stop = threading.Event()

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        mine = [key(b, Relation(1663, 5, 20000 + seed, 0)) for b in range(8)]
        pending: dict[PageKey, int] = {}  # this thread's unacknowledged writes
        try:
            for i in range(1500):
                k = rnd.choice(mine)
                content = fill(seed * 31 + i)
                try:
                    pending[k] = cache.put_dirty(k, content)
                except CacheFullError:
                    cache.end_flush(pending)
                    pending.clear()
                    continue
                written[k] = content
                if i % 7 == 0 and rnd.random() >= 0.2:  # else the flush failed: resent later
                    cache.end_flush(pending)
                    pending.clear()
                assert cache.peek(k) in (content, None)  # only this thread writes k
        except BaseException as exc:
            errors.append(exc)

    def reader(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            while not stop.is_set():
                k = key(rnd.randrange(200), REL_B)
                got = cache.get(k)
                if got is None:
                    cache.put_clean(k, fill(k[1]), ticket=cache.fetch_ticket())
                else:
                    assert got == fill(k[1])
                stats = cache.stats()
                assert stats.clean + stats.dirty <= 64
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
    readers = [threading.Thread(target=reader, args=(100 + s,)) for s in range(3)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    for k, content in written.items():
        assert cache.peek(k) in (content, None)  # CLEAN pages may have been evicted
    for k in cache.dirty_keys():
        assert cache.peek(k) == written[k]
    stats = cache.stats()
    assert stats.pages == len(cache) <= 64


# ------------------------------------------------------------- model check

CAPACITY = 4
KEYS = [key(b, rel) for rel in (REL_A, REL_B) for b in range(4)]
MODEL_STAMP = CacheStamp("t", "tl", 1)


class PageCacheModel(RuleBasedStateMachine):
    """The cache against a dict model; clean pages may vanish only by eviction."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="strata-page-cache-"))
        self.cache = PageCache.open(self.dir, mb(CAPACITY))
        self.content: dict[PageKey, bytes] = {}
        self.state: dict[PageKey, PageState] = {}
        self.version: dict[PageKey, int] = {}
        self.hits = self.misses = 0
        self.batches: list[dict[PageKey, int]] = []  # written versions not yet acknowledged
        # Outstanding fetches: the ticket and the keys written or discarded since.
        self.tickets: list[tuple[int, set[PageKey]]] = []
        self.steps = 0  # since the last reopen

    def teardown(self) -> None:
        self.cache.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _unflushed(self) -> int:
        return sum(1 for s in self.state.values() if s is not PageState.CLEAN)

    def _drop(self, k: PageKey) -> None:
        del self.content[k], self.state[k]
        self.version.pop(k, None)

    def _sync_evictions(self) -> None:
        for k in list(self.content):
            if not self.cache.contains(k):
                assert self.state[k] is PageState.CLEAN, f"{k} evicted while {self.state[k]}"
                self._drop(k)

    def _touch(self, keys: list[PageKey]) -> None:
        for _, touched in self.tickets:
            touched.update(keys)

    @rule(k=st.sampled_from(KEYS), n=st.integers(0, 255))
    def put_dirty(self, k: PageKey, n: int) -> None:
        if k not in self.content and self._unflushed() == CAPACITY:
            with pytest.raises(CacheFullError):
                self.cache.put_dirty(k, fill(n))
            return
        version = self.cache.put_dirty(k, fill(n))
        assert version > max(self.version.values(), default=0)
        self.content[k] = fill(n)
        self.state[k] = PageState.DIRTY
        self.version[k] = version
        self._touch([k])
        self._sync_evictions()

    @rule(k=st.sampled_from(KEYS), n=st.integers(0, 255))
    def put_clean(self, k: PageKey, n: int) -> None:
        stored = self.cache.put_clean(k, fill(n))
        if k in self.content or self._unflushed() == CAPACITY:
            assert not stored
        else:
            assert stored
            self.content[k] = fill(n)
            self.state[k] = PageState.CLEAN
        self._sync_evictions()

    @rule(take=st.booleans(), i=st.integers(0, 3), k=st.sampled_from(KEYS), n=st.integers(0, 255))
    def fetch(self, take: bool, i: int, k: PageKey, n: int) -> None:
        """Start a fetch from the page server (take a ticket), or complete one."""
        if take or not self.tickets:
            self.tickets.append((self.cache.fetch_ticket(), set()))
            return
        ticket, touched = self.tickets.pop(i % len(self.tickets))
        stored = self.cache.put_clean(k, fill(n), ticket=ticket)
        if k in touched or k in self.content or self._unflushed() == CAPACITY:
            assert not stored  # a fetch that may be stale is never cached
        if stored:
            self.content[k] = fill(n)
            self.state[k] = PageState.CLEAN
        self._sync_evictions()

    @rule(k=st.sampled_from(KEYS))
    def get(self, k: PageKey) -> None:
        got = self.cache.get(k)
        if k in self.content:
            assert got == self.content[k]
            self.hits += 1
        else:
            assert got is None
            self.misses += 1

    @rule(
        action=st.sampled_from(["end", "rewrite", "fail", "cut"]),
        keys=st.none() | st.lists(st.sampled_from(KEYS), max_size=4),
        i=st.integers(0, 3),
        n=st.integers(0, 255),
    )
    def flush(self, action: str, keys: list[PageKey] | None, i: int, n: int) -> None:
        """Cut a batch of written versions, acknowledge or fail one, or rewrite one of its pages."""
        if action == "cut" or not self.batches:
            dirty = [k for k, s in self.state.items() if s is PageState.DIRTY]
            chosen = dirty if keys is None else keys
            batch = {k: self.version[k] for k in chosen if k in self.version}
            if batch:
                self.batches.append(batch)
        elif action == "rewrite":
            flushing = list(self.batches[i % len(self.batches)])
            self.put_dirty(flushing[n % len(flushing)], n)
        else:
            versions = self.batches.pop(i % len(self.batches))
            if action == "fail":  # no call: its pages stay DIRTY
                return
            durable = [
                k
                for k, v in versions.items()
                if self.version.get(k) == v and self.state[k] is PageState.DIRTY
            ]
            assert self.cache.end_flush(versions) == len(durable)
            for k in durable:
                self.state[k] = PageState.CLEAN

    @rule(
        keys=st.lists(st.sampled_from(KEYS), max_size=3),
        rel=st.none() | st.sampled_from([REL_A, REL_B]),
        first=st.integers(0, 4),
    )
    def remove(self, keys: list[PageKey], rel: Relation | None, first: int) -> None:
        """Unlink or truncate: discard keys, or a relation's blocks from ``first`` on."""
        if rel is None:
            gone = keys
            assert self.cache.discard(keys) == len(set(gone) & set(self.content))
        else:
            gone = [k for k in KEYS if k[0] == rel.to_bytes() and k[1] >= first]
            count = self.cache.discard_relation_from(rel, first)
            assert count == len(set(gone) & set(self.content))
        for k in set(gone) & set(self.content):
            self._drop(k)
        self._touch(gone)

    @precondition(lambda self: self.steps >= 10)
    @rule(same_stamp=st.booleans(), keep=st.none() | st.integers(0, CAPACITY))
    def reopen(self, same_stamp: bool, keep: int | None) -> None:
        saved = self.cache.close(MODEL_STAMP, keep_mb=None if keep is None else mb(keep))
        assert saved == (self._unflushed() == 0 and len(self.content) > 0 and keep != 0)
        expected = MODEL_STAMP if same_stamp else CacheStamp("t", "tl", 2)
        self.cache = PageCache.open(self.dir, mb(CAPACITY), expected)
        assert self.cache.reused == (saved and same_stamp)
        if not self.cache.reused:
            self.content.clear()
            self.state.clear()
        else:  # a kept page is as it was; the close chose which (see test_close_keeps_...)
            kept = len(self.content) if keep is None else min(keep, len(self.content))
            assert len(self.cache) == kept
            self.content = {k: v for k, v in self.content.items() if k in self.cache}
            self.state = {k: v for k, v in self.state.items() if k in self.cache}
        self.version.clear()  # versions are per open cache
        self.hits = self.misses = 0
        self.batches.clear()  # flushes and fetches do not outlive a restart
        self.tickets.clear()
        self.steps = 0

    @invariant()
    def matches_model(self) -> None:
        self.steps += 1
        stats = self.cache.stats()
        assert len(self.cache) == len(self.content) <= CAPACITY
        for k, content in self.content.items():
            assert self.cache.state(k) is self.state[k]
            assert self.cache.peek(k) == content
        states = list(self.state.values())
        assert stats.clean == states.count(PageState.CLEAN)
        assert stats.dirty == states.count(PageState.DIRTY)
        assert stats.bytes_used == len(self.content) * PAGE_SIZE
        assert (stats.hits, stats.misses, stats.capacity) == (self.hits, self.misses, CAPACITY)
        assert sorted(self.cache.dirty_keys()) == sorted(
            k for k, s in self.state.items() if s is PageState.DIRTY
        )


PageCacheModel.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPageCacheModel = PageCacheModel.TestCase
