"""Numbered batches and writer epochs: a batch sent again is not applied twice, the record
of the last one survives restarts, and a restore never lets a stale epoch back in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from common.errors import FailedPreconditionError
from common.ops import Batch, Create, Write, decode_batch, encode_batch
from pageserver.applied_batch import AppliedBatch
from pageserver.engine import Engine
from pageserver.tenant import BranchPoint
from tests.engine.conftest import EngineFactory


def _numbered(batch_id: int, *ops: Create | Write) -> Batch:
    return Batch(tuple(ops), batch_id=batch_id)


def _attached(engine: Engine) -> int:
    """Tenant t with a writer attached to main; its epoch."""
    return engine.create_tenant("t").branch("main").attach_writer("h:/a")


def test_the_last_batch_sent_again_gets_its_lsn_and_is_not_applied_twice(
        engine: Engine) -> None:
    epoch = _attached(engine)
    main = engine.timeline("t", "main")
    first = main.ingest(_numbered(1, Create("f")), epoch)
    second = main.ingest(_numbered(2, Write("f", 0, b"a")), epoch)
    assert main.ingest(_numbered(2, Write("f", 0, b"a")), epoch) == second
    assert main.last_lsn == second and main.read_file("f") == b"a"
    assert main.applied_batch == main.durable_batch == AppliedBatch(epoch, 2, second)
    with pytest.raises(FailedPreconditionError, match="only the last applied batch"):
        main.ingest(_numbered(1, Create("f")), epoch)  # applied before the last: refused
    with pytest.raises(FailedPreconditionError, match="never applied"):
        main.ingest(_numbered(4, Create("g")), epoch)  # batch 3 is missing
    assert main.last_lsn == second and first == second - 1
    assert main.ingest(_numbered(3, Create("g")), epoch) == second + 1


def test_a_new_epoch_numbers_afresh_and_unnumbered_batches_are_not_recorded(
        engine: Engine) -> None:
    epoch = _attached(engine)
    main = engine.timeline("t", "main")
    main.ingest(_numbered(5, Create("f")), epoch)
    unnumbered = main.ingest(Batch((Create("g"),)), epoch)
    assert main.ingest(Batch((Create("h"),)), epoch) == unnumbered + 1  # never deduplicated
    assert main.applied_batch.batch_id == 5
    newer = main.attach_writer("h:/a")
    lsn = main.ingest(_numbered(1, Create("i")), newer)
    assert main.applied_batch == AppliedBatch(newer, 1, lsn)


def test_a_restart_keeps_the_epoch_and_the_last_batch_from_log_and_manifest(
        make_engine: EngineFactory) -> None:
    engine = make_engine()
    epoch = _attached(engine)
    main = engine.timeline("t", "main")
    main.ingest(_numbered(1, Create("f")), epoch)
    main.freeze()
    main.flush()  # batch 1 in layers: the manifest records it
    replayed = main.ingest(_numbered(2, Write("f", 0, b"b")), epoch)  # in the log only
    engine.close(flush=False)

    again = make_engine()
    main = again.timeline("t", "main")
    assert main.writer_epoch == epoch
    assert main.applied_batch == main.durable_batch == AppliedBatch(epoch, 2, replayed)
    assert main.ingest(_numbered(2, Write("f", 0, b"b")), epoch) == replayed
    assert main.last_lsn == replayed
    again.close(flush=True)

    flushed = make_engine().timeline("t", "main")  # everything in layers: the manifest's
    assert flushed.writer_epoch == epoch
    assert flushed.durable_batch == AppliedBatch(epoch, 2, replayed)


def test_a_received_record_is_logged_as_it_came_and_stamped_with_the_time(
        make_engine: EngineFactory) -> None:
    """A batch that came as a record (a RECORD frame) is logged as those bytes, its
    timestamp written into them; a restart replays it with that timestamp."""
    engine = make_engine()
    epoch = _attached(engine)
    main = engine.timeline("t", "main")
    batch = Batch((Create("f"), Write("f", 0, b"abc")), wal_lsn=7, writer_epoch=epoch,
                  batch_id=1)
    record = bytearray(encode_batch(batch))
    lsn = main.ingest(batch, epoch, record)
    stamped = decode_batch(record)
    assert stamped.timestamp_us > 0 and replace(stamped, timestamp_us=0) == batch
    assert main.last_batch() == (lsn, 7, stamped.timestamp_us)
    engine.close(flush=False)

    again = make_engine().timeline("t", "main")  # replayed from the log
    assert again.read_file("f") == b"abc"
    assert again.last_batch() == (lsn, 7, stamped.timestamp_us)
    assert again.applied_batch == AppliedBatch(epoch, 1, lsn)


def test_a_restored_branch_refuses_the_epochs_of_its_old_timeline(engine: Engine) -> None:
    tenant = engine.create_tenant("t")
    main = tenant.branch("main")
    main.ingest(Batch((Create("f"),)))
    dev = tenant.create_branch("dev")
    stale = dev.attach_writer("h:/a")
    lsn = dev.ingest(_numbered(1, Create("g")), stale)
    dev.writer_lease.release(stale)  # its lease ended; the compute may still run
    for point in (BranchPoint(lsn=lsn - 1), None):  # a restore, then a reset
        restored, _ = tenant.restore_branch("dev", point)
        assert restored.writer_epoch > stale
        with pytest.raises(FailedPreconditionError, match="stale"):
            restored.ingest(_numbered(2, Create("h")), stale)
        assert restored.attach_writer("h:/b") > stale + 1
        stale = restored.writer_epoch
        restored.writer_lease.release(stale)
