"""At attach: upload what a tenant's local log acknowledged and the store lacks, unless
another generation wrote the log since; then delete the local log.

A local log of generation g is continued in the store exactly as g's uploader would
have: its records after the last one of the newest chunk, in chunks created with
create-if-absent at the next numbers, stamped g. That is allowed only while the newest
chunk is g's: a chunk of another generation after g's last means another page server
attached the tenant since (its fence), and what g acknowledged after its last upload is
discarded, loudly. It was acknowledged within g's max lag before g stopped reaching the
store, the RPO the tenant chose (docs/rfcs/0010-local-acknowledgement-with-a-bounded-lag.md).
A create that finds its name taken by another generation means the same, and stops the
upload there. Records the store may hold twice (a crash between the last upload and
deleting the local log) are harmless: replay skips LSNs a timeline already has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pageserver.local_log import LocalTail, read_local_logs, remove_directory
from pageserver.log_chunk import Chunk, LogRecord, decode_chunk, encode_chunk, encode_record
from pageserver.manifest import log_chunk_key, log_prefix, log_seq_of
from pageserver.remote import RemoteStorage
from pageserver.remote.retry import CALL_POLICY, create_once, read_verified, retrying

log = logging.getLogger(__name__)

_LOOK_BACK = 64  # chunks read to find how much of a dropped local log was stored


@dataclass(frozen=True)
class Recovery:
    """What happened to a local log at attach: batches uploaded, and dropped."""

    uploaded: int = 0
    dropped: int = 0
    dropped_bytes: int = 0


def recover_local_log(storage: RemoteStorage, tenant_id: str, directory: Path,
                      chunk_bytes: int) -> Recovery:
    """Upload or drop the tail of every local log of the tenant in ``directory``, then
    delete it; meant for attach, before the new generation's fence chunk."""
    total = Recovery()
    for tail in read_local_logs(directory):
        if tail.records:
            done = _recover(storage, tenant_id, tail, chunk_bytes)
            total = Recovery(total.uploaded + done.uploaded, total.dropped + done.dropped,
                             total.dropped_bytes + done.dropped_bytes)
    remove_directory(directory)
    return total


def discard_local_log(storage: RemoteStorage, tenant_id: str, directory: Path,
                      why: str) -> None:
    """Delete a tenant's local log without uploading it (the tenant moved away), saying
    how many acknowledged batches the store lacks and are dropped."""
    for tail in read_local_logs(directory):
        if tail.records:
            seqs = sorted(map(log_seq_of, _list(storage, tenant_id)))
            stored, exact = _stored_part(storage, tenant_id, seqs, tail)
            _dropped(tenant_id, tail, tail.records[stored:], why, exact=exact)
    remove_directory(directory)


def _recover(storage: RemoteStorage, tenant_id: str, tail: LocalTail,
             chunk_bytes: int) -> Recovery:
    seqs = _list(storage, tenant_id)
    newest = _read(storage, tenant_id, max(map(log_seq_of, seqs))) if seqs else None
    if newest is None or newest.generation != tail.generation:
        writer = "no chunk" if newest is None else f"generation {newest.generation}"
        stored, exact = _stored_part(storage, tenant_id, sorted(map(log_seq_of, seqs)), tail)
        return _dropped(tenant_id, tail, tail.records[stored:], exact=exact, why=
                        f"the newest chunk of the store's log is by {writer} (the tenant "
                        "was attached elsewhere since)")
    todo = tail.records[_after(tail.records, newest):]
    seq, uploaded = newest.seq + 1, 0
    while todo:
        taken: list[bytes] = []
        size = 0
        for record in todo:
            framed = encode_record(record)
            if taken and size + len(framed) > chunk_bytes:
                break
            taken.append(framed)
            size += len(framed)
        if not create_once(storage, log_chunk_key(tenant_id, seq),
                           encode_chunk(tail.generation, seq, taken), CALL_POLICY):
            holder = _read(storage, tenant_id, seq)
            return _dropped(tenant_id, tail, todo,
                            f"chunk {seq} was created by generation {holder.generation} (the "
                            "tenant was attached elsewhere since)",
                            uploaded)
        todo, seq, uploaded = todo[len(taken):], seq + 1, uploaded + len(taken)
    if uploaded:
        log.warning("tenant %s: uploaded %d batches of the local log of generation %d "
                    "that the store did not hold yet", tenant_id, uploaded, tail.generation)
    return Recovery(uploaded=uploaded)


def _stored_part(storage: RemoteStorage, tenant_id: str, seqs: list[int],
                 tail: LocalTail) -> tuple[int, bool]:
    """How many of ``tail``'s records the store holds, when another generation wrote
    after it, and whether that is exact: found from the newest chunk of ``tail``'s
    generation, looking down past at most ``_LOOK_BACK`` chunks of later ones. Not exact
    when chunks after it were released (deleted): then at most that many."""
    for index in range(len(seqs) - 1, max(len(seqs) - 1 - _LOOK_BACK, -1), -1):
        chunk = _read(storage, tenant_id, seqs[index])
        if chunk.generation < tail.generation:
            break
        if chunk.generation == tail.generation:
            exact = index + 1 < len(seqs) and seqs[index + 1] == chunk.seq + 1
            return _after(tail.records, chunk), exact
    return 0, False


def _after(records: list[LogRecord], newest: Chunk) -> int:
    """Where the records the store lacks start: after the newest chunk's last record. If
    that record is not here, its segment was deleted, which happens only once all its
    records are stored; every record left comes after it."""
    if not newest.records:
        return 0
    last = newest.records[-1]
    for index in range(len(records) - 1, -1, -1):
        record = records[index]
        if (record.timeline_id, record.lsn) == (last.timeline_id, last.lsn):
            return index + 1
    return 0


def _dropped(tenant_id: str, tail: LocalTail, dropped: list[LogRecord], why: str,
             uploaded: int = 0, exact: bool = True) -> Recovery:
    """Log loudly what is dropped; not ``exact``: the store no longer shows which of
    ``dropped`` it holds (its chunks were released), so up to that many."""
    size = sum(len(encode_record(record)) for record in dropped)
    if dropped:
        log.error("tenant %s: DROPPING %s%d acknowledged batches (%d bytes) of the local "
                  "log of generation %d that the object store lacks: %s; they were "
                  "acknowledged within the tenant's max lag before its page server stopped "
                  "reaching the store (its RPO)", tenant_id, "" if exact else "up to ",
                  len(dropped), size, tail.generation, why)
    return Recovery(uploaded, len(dropped), size)


def _list(storage: RemoteStorage, tenant_id: str) -> list[str]:
    prefix = log_prefix(tenant_id)
    return retrying(CALL_POLICY, f"list of {prefix!r}", lambda: storage.list(prefix))


def _read(storage: RemoteStorage, tenant_id: str, seq: int) -> Chunk:
    key = log_chunk_key(tenant_id, seq)
    return read_verified(storage, key, lambda data: decode_chunk(data, key, seq))
