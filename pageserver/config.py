"""Engine configuration: where state lives and the thresholds of background work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pageserver.layer_cache import DEFAULT_LIMIT_BYTES


@dataclass(frozen=True)
class LogSettings:
    """Bounds of a tenant's ingest log in the object store (``pageserver/tenant_log.py``)."""

    chunk_bytes: int = 16 * 1024 * 1024  # records per chunk, at most (one record: any size)
    max_pending_bytes: int = 256 * 1024 * 1024  # appends refused past this much unconfirmed
    ack_timeout_s: float = 30.0  # a caller waits this long for its batch to be confirmed
    flush_after_chunks: int = 2048  # live chunks past which memtables are flushed early,
    # so that an attach replays at most about this many
    local_segment_bytes: int = 16 * 1024 * 1024  # preallocated size of a local log segment


@dataclass
class EngineConfig:
    """Tunables of the storage engine; defaults suit a small local deployment."""

    state_dir: Path
    memtable_bytes: int = 64 * 1024 * 1024  # freeze the open memtable past this size
    memtable_age_s: float = 300.0  # ... or once its first batch is this old
    l0_compaction_threshold: int = 8  # merge L0 deltas into L1 once this many stack up
    l1_target_entries: int = 65536  # page versions per L1 delta file
    image_threshold: int = 3  # deltas GC could drop over a key range before an image is
    # written at the GC cutoff, or:
    image_gain: float = 1.5  # page versions per key those deltas hold (the image: one)
    image_read_threshold: int = 10  # deltas a read at the newest LSN searches before an
    # image is written there, inside the history window (pageserver/compaction.py)
    image_partition_pages: int = 16384  # keys per image layer (128 MB of pages)
    pitr_window_s: float = 24 * 3600.0  # history kept readable behind the newest LSN
    fork_pitr_window_s: float = 3600.0  # at most this on forks without a window of their
    # own (pageserver/history.py)
    background_workers: int = 2  # bound on concurrent flush/compaction/GC jobs
    background_period_s: float = 1.0  # how often the ticker looks for work; 0 disables it
    gc_period_s: float = 600.0
    storage_sample_period_s: float = 300.0  # how often each tenant's bytes are sampled
    storage_samples: int = 2016  # samples kept per tenant (a week at 5 minutes)
    log: LogSettings = field(default_factory=LogSettings)
    writer_lease_s: float = 10.0  # a compute that misses heartbeats this long loses its slot
    read_drain_s: float = 60.0  # how long deleting layers waits for reads that may use them
    layer_cache_bytes: int = DEFAULT_LIMIT_BYTES  # bound on downloaded layers (S3 only)

    @property
    def layer_cache_dir(self) -> Path:
        return self.state_dir / "layers"

    @property
    def local_log_dir(self) -> Path:
        """Where tenants acknowledged after a local fsync keep their local logs."""
        return self.state_dir / "tenant-logs"
