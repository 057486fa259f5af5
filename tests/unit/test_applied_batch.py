"""The record of the last numbered batch: the ordering rule, and how the record travels in
ingest-log records and manifests, old ones (without it) included."""

from __future__ import annotations

import pytest

from common.errors import CorruptionError, FailedPreconditionError
from common.ops import Batch, Create, Write, decode_batch, encode_batch
from pageserver.applied_batch import AppliedBatch, resent_lsn
from pageserver.manifest import TimelineManifest

LAST = AppliedBatch(writer_epoch=3, batch_id=7, lsn=40)


def test_the_next_batch_and_an_epochs_first_are_new() -> None:
    assert resent_lsn(LAST, 3, 8) is None
    assert resent_lsn(LAST, 4, 1) is None  # a newer writer numbers afresh
    assert resent_lsn(LAST, 4, 7) is None
    assert resent_lsn(AppliedBatch(), 1, 5) is None  # nothing recorded yet


def test_the_last_batch_sent_again_is_answered_with_its_lsn() -> None:
    assert resent_lsn(LAST, 3, 7) == 40


def test_an_unnumbered_batch_is_never_a_resend() -> None:
    assert resent_lsn(LAST, 3, 0) is None
    assert resent_lsn(AppliedBatch(3, 0, 0), 3, 0) is None


@pytest.mark.parametrize(("batch_id", "why"), [(6, "only the last applied batch"),
                                                (1, "only the last applied batch"),
                                                (9, "batches in between were never applied")])
def test_other_ids_of_the_epoch_are_refused(batch_id: int, why: str) -> None:
    with pytest.raises(FailedPreconditionError, match=why):
        resent_lsn(LAST, 3, batch_id)


def test_a_log_record_carries_the_writer_and_old_records_decode_without() -> None:
    ops = (Create("f"), Write("f", 0, b"x" * 100))
    numbered = Batch(ops, wal_lsn=9, timestamp_us=11, writer_epoch=3, batch_id=7)
    assert decode_batch(encode_batch(numbered)) == numbered
    old = Batch(ops, wal_lsn=9, timestamp_us=11)
    raw = encode_batch(old)
    assert encode_batch(numbered).startswith(raw)  # the fields are a trailer
    assert decode_batch(raw) == old and decode_batch(raw).batch_id == 0
    with pytest.raises(CorruptionError, match="trailing bytes"):
        decode_batch(raw + bytes(17))  # 17 bytes without the tag are not the trailer


def test_a_manifest_records_the_last_batch_and_old_manifests_have_none() -> None:
    manifest = TimelineManifest("tl", None, 0, 40, 0, 1, [], writer_epoch=3, last_batch=LAST)
    obj = manifest.to_json()
    assert TimelineManifest.from_json(obj) == manifest
    del obj["last_batch"]
    assert TimelineManifest.from_json(obj).last_batch == AppliedBatch()
