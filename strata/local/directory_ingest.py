"""Put a PostgreSQL data directory into an empty branch through the page server's Ingest
stream, under a writer epoch: the same operations, in the same batches, as the page
server's own import of a new tenant's ``initdb`` cluster (``common.directory_ops``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from common.client import StrataClient
from common.convert import op_to_pb
from common.directory_ops import batched_ops, total_bytes
from proto import strata_pb2 as pb

HOLDER: Final = "strata tenant import"


def ingest_directory(client: StrataClient, tenant: str, branch: str, source: Path,
                     wal_lsn: int, progress: Callable[[int, int], None]) -> int:
    """Ingest every directory and file under ``source`` into ``branch``; the LSN of the
    last batch. ``progress`` gets (bytes acknowledged, bytes total) per batch."""
    total = total_bytes(source)
    epoch = client.attach_writer(tenant, branch, holder=HOLDER).writer_epoch
    acknowledged: dict[int, int] = {}

    def requests() -> Iterator[pb.IngestRequest]:
        yield pb.IngestRequest(open=pb.IngestOpen(tenant=tenant, branch=branch,
                                                  writer_epoch=epoch))
        for number, (ops, done, last) in enumerate(batched_ops(source), start=1):
            acknowledged[number] = done
            yield pb.IngestRequest(batch=pb.IngestBatch(
                batch_id=number, ops=[op_to_pb(op) for op in ops],
                wal_lsn=wal_lsn if last else 0,
                timestamp_us=time.time_ns() // 1000))

    last = 0
    for ack in client.open_ingest_stream(requests()):
        last = ack.lsn
        progress(acknowledged.get(ack.batch_id, total), total)
    client.detach_writer(tenant, branch, epoch)
    return last
