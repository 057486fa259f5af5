"""GC keeps each branch's own history window: forks default to a shorter one than main,
a branch's or the tenant's setting wins, the windows survive a restart, and the GC report
says which window each timeline followed."""

from __future__ import annotations

import time

from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver import gc
from pageserver.engine import Engine, TenantGcResult
from pageserver.history import BRANCH, FORK, SERVER, TENANT, Window
from pageserver.tenant import BranchSettings
from pageserver.timeline import Timeline, now_us
from tests.engine.conftest import EngineFactory

REL_PATH = "base/5/16384"
DAY_S, HOUR_S = 86400, 3600


def _engine(make_engine: EngineFactory, **config: object) -> Engine:
    engine = make_engine(pitr_window_s=float(DAY_S), fork_pitr_window_s=float(HOUR_S),
                         **config)
    engine.create_tenant("t").branch("main").ingest(
        Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    return engine


def _write(engine: Engine, timeline: Timeline, tag: int) -> None:
    timeline.ingest(Batch(tuple(Write(REL_PATH, block * PAGE_SIZE, bytes([tag]) * PAGE_SIZE)
                                for block in range(4))))
    engine.flush("t")


def _cutoffs(result: TenantGcResult) -> dict[str, tuple[int, Window]]:
    return {report.branches[0]: (report.result.cutoff, report.window)
            for report in result.reports}


def test_a_fork_loses_history_past_its_hour_while_main_keeps_a_day(
        make_engine: EngineFactory) -> None:
    engine = _engine(make_engine)
    tenant = engine.tenant("t")
    main = tenant.branch("main")
    _write(engine, main, 1)
    fork = tenant.create_branch("fork")
    _write(engine, fork, 2)
    _write(engine, fork, 3)
    two_hours_on = now_us() + 2 * HOUR_S * 1_000_000
    cutoffs = _cutoffs(engine.gc("t", at_us=two_hours_on, explain=True))
    assert cutoffs["main"] == (0, Window(float(DAY_S), SERVER))
    assert cutoffs["fork"][1] == Window(float(HOUR_S), FORK)
    assert cutoffs["fork"][0] == fork.disk_consistent_lsn  # everything left the hour


def test_branch_and_tenant_settings_win_and_survive_a_restart(
        make_engine: EngineFactory) -> None:
    engine = _engine(make_engine)
    tenant = engine.tenant("t")
    _write(engine, tenant.branch("main"), 1)
    kept = tenant.create_branch("kept", settings=BranchSettings(history_s=2 * DAY_S))
    _write(engine, kept, 2)
    tenant.set_history(HOUR_S // 2)
    tenant.update_branch("main", {"history_s": HOUR_S})
    fork = tenant.create_branch("fork")
    _write(engine, fork, 3)
    engine.close()
    engine = make_engine(pitr_window_s=float(DAY_S), fork_pitr_window_s=float(HOUR_S))
    tenant = engine.tenant("t")
    assert tenant.branch_window("main") == Window(float(HOUR_S), BRANCH)
    assert tenant.branch_window("kept") == Window(2.0 * DAY_S, BRANCH)
    assert tenant.branch_window("fork") == Window(HOUR_S / 2, TENANT)
    cutoffs = _cutoffs(engine.gc("t", at_us=now_us() + DAY_S * 1_000_000, explain=True))
    kept = tenant.branch("kept")  # two days: nothing of its own left its window
    assert cutoffs["kept"][0] == kept.branch_lsn < kept.disk_consistent_lsn
    assert cutoffs["main"][0] > 0
    assert cutoffs["fork"][0] == tenant.branch("fork").disk_consistent_lsn
    tenant.update_branch("main", {"history_s": None})
    assert tenant.branch_window("main") == Window(HOUR_S / 2, TENANT)
    tenant.set_history(None)
    assert tenant.branch_window("main") == Window(float(DAY_S), SERVER)
    assert tenant.branch_window("fork") == Window(float(HOUR_S), FORK)


def test_sizes_say_what_history_costs_and_what_a_delete_frees(
        make_engine: EngineFactory) -> None:
    engine = _engine(make_engine)
    tenant = engine.tenant("t")
    main = tenant.branch("main")
    _write(engine, main, 1)
    engine.compact("t", force=True)  # an image: the delta under it is history only
    _write(engine, main, 2)
    engine.compact("t", force=True)
    main.ingest(Batch((Mkdir("pg_wal"), Create("pg_wal/000000010000000000000001"),
                       Write("pg_wal/000000010000000000000001", 0, bytes(2 * PAGE_SIZE)))))
    assert main.logical_size() == 4 * PAGE_SIZE  # relations only, as PostgreSQL counts
    fork = tenant.create_branch("fork")
    _write(engine, fork, 3)
    assert tenant.reclaimable_bytes("fork") == fork.owned_bytes() > 0
    assert tenant.reclaimable_bytes("main") == 0  # the fork reads through it
    assert 0 < gc.history_bytes(main) < main.owned_bytes()
    assert gc.history_bytes(fork) == 0


def test_background_gc_follows_each_branch_window(make_engine: EngineFactory) -> None:
    engine = _engine(make_engine)
    tenant = engine.tenant("t")
    main = tenant.branch("main")
    _write(engine, main, 1)
    fork = tenant.create_branch("fork", settings=BranchSettings(history_s=1))
    _write(engine, fork, 2)
    time.sleep(1.2)  # the fork's history leaves its 1 s window; main keeps a day
    engine.tick(gc_due=True)
    engine.close()  # waits for the background jobs
    assert fork.gc_cutoff == fork.disk_consistent_lsn
    assert main.gc_cutoff == 0
