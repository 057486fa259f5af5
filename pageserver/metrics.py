"""Prometheus metrics of one page server: RPCs, pages, ingest, layers, the layer cache
and uploads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.errors import NotFoundError, TenantElsewhereError
from pageserver.layer_cache import LayerCache
from pageserver.remote import ForwardingStorage, RemoteStorage

if TYPE_CHECKING:
    from pageserver.engine import Engine
    from pageserver.tenant import Tenant

_T = TypeVar("_T")
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric of a page server, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpc_requests = Counter(
            "strata_rpc_requests", "RPCs handled, by method and status code",
            ["method", "code"], registry=self.registry)
        self.rpc_seconds = Histogram(
            "strata_rpc_seconds", "RPC latency (per request message on streams)",
            ["method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.pages_served = Counter(
            "strata_pages_served", "8 KB pages returned by GetPages", registry=self.registry)
        self.ingest_bytes = Counter(
            "strata_ingest_bytes", "bytes of file data ingested", registry=self.registry)
        self.ingest_batches = Counter(
            "strata_ingest_batches", "batches made durable", registry=self.registry)
        self.upload_bytes = Counter(
            "strata_upload_bytes", "bytes written to the object store", registry=self.registry)
        self.upload_errors = Counter(
            "strata_upload_errors", "failed object-store writes", registry=self.registry)

    def watch_engine(self, engine: Engine) -> None:
        """Export layer counts and bytes per level and the tenant logs' backlog, read from
        the engine at scrape time."""
        self.registry.register(_LayerCollector(lambda: _layer_stats(engine)))
        self.registry.register(_LogCollector(engine))
        self.registry.register(_LayerCacheCollector(engine.layer_cache))


class _LayerCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        count = GaugeMetricFamily("strata_layers", "layer files by level", labels=["level"])
        size = GaugeMetricFamily("strata_layer_bytes", "bytes of layer files by level",
                                 labels=["level"])
        for level, (layers, total) in sorted(self._stats().items()):
            count.add_metric([level], layers)
            size.add_metric([level], total)
        yield count
        yield size


class _LogCollector(Collector):
    """The tenant logs in the object store: live chunks, bytes not yet confirmed (the
    upload backlog), chunks created and creates that failed, summed over tenants; and the
    largest lag of the store behind a local log (tenants of local durability)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        totals = [0, 0, 0, 0]
        lag = 0.0
        for tenant in _served(self._engine):
            stats = tenant.log.stats()
            for index, value in enumerate((stats.chunks, stats.pending_bytes, stats.uploads,
                                           stats.upload_failures)):
                totals[index] += value
            lag = max(lag, stats.local_lag_s)
        yield GaugeMetricFamily("strata_log_chunks", "log chunks not yet covered by layers",
                                value=totals[0])
        yield GaugeMetricFamily("strata_log_pending_bytes",
                                "bytes of batches waiting for the object store to confirm them",
                                value=totals[1])
        yield CounterMetricFamily("strata_log_chunks_created", "log chunks created",
                                  value=totals[2])
        yield CounterMetricFamily("strata_log_chunk_failures", "log chunk creates that failed",
                                  value=totals[3])
        yield GaugeMetricFamily("strata_log_local_lag_seconds",
                                "age of the oldest batch acknowledged after a local fsync that "
                                "the object store lacks, over tenants", value=lag)


class _LayerCacheCollector(Collector):
    """The layer cache: reads served from disk or downloaded, evictions, bytes held."""

    def __init__(self, cache: LayerCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        stats = self._cache.stats()
        yield CounterMetricFamily("strata_layer_cache_hits",
                                  "layer reads served from a file on this disk",
                                  value=stats.hits)
        yield CounterMetricFamily("strata_layer_cache_misses",
                                  "layer reads that downloaded the layer first",
                                  value=stats.misses)
        yield CounterMetricFamily("strata_layer_cache_evictions",
                                  "cached layer files deleted to stay under the limit",
                                  value=stats.evictions)
        yield CounterMetricFamily("strata_layer_cache_evicted_bytes",
                                  "bytes of the layer files evicted", value=stats.evicted_bytes)
        yield CounterMetricFamily("strata_layer_cache_downloaded_bytes",
                                  "bytes of layer files downloaded",
                                  value=stats.downloaded_bytes)
        yield GaugeMetricFamily("strata_layer_cache_bytes",
                                "bytes of downloaded layer files on disk (0 when layers are "
                                "read in place from a local store)", value=stats.bytes)
        yield GaugeMetricFamily("strata_layer_cache_limit_bytes",
                                "bound on the layer cache's bytes", value=stats.limit_bytes)
        yield GaugeMetricFamily("strata_layer_cache_in_place",
                                "1: layers are read in place from a local store",
                                value=int(stats.in_place))


def _served(engine: Engine) -> Iterator[Tenant]:
    """The tenants this page server serves now: one deleted, detached or taken by another
    page server since the listing (a superseded one stays listed until dropped) is
    skipped, so a scrape never fails on a tenant that moved."""
    for tenant_id in engine.tenants():
        try:
            yield engine.tenant(tenant_id)
        except (NotFoundError, TenantElsewhereError):
            continue


def _layer_stats(engine: Engine) -> dict[str, tuple[int, int]]:
    stats: dict[str, tuple[int, int]] = {"L0": (0, 0), "L1": (0, 0), "image": (0, 0)}
    for tenant in _served(engine):
        for timeline in list(tenant.timelines.values()):
            for layer in list(timeline.layers):
                level = "image" if layer.is_image else f"L{layer.desc.level}"
                count, size = stats[level]
                stats[level] = (count + 1, size + layer.desc.size)
    return stats


class InstrumentedStorage(ForwardingStorage):
    """A RemoteStorage that counts the bytes and errors of writes to another one."""

    def __init__(self, inner: RemoteStorage, metrics: Metrics) -> None:
        super().__init__(inner)
        self._metrics = metrics

    def local_path(self, key: str) -> Path | None:
        return self._inner.local_path(key)  # reads are not counted: layers read in place

    def put(self, key: str, data: bytes) -> None:
        self._counted(lambda: self._inner.put(key, data), len(data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._counted(
            lambda: self._inner.put_if_absent(key, data), len(data))

    def _counted(self, write: Callable[[], _T], size: int) -> _T:
        try:
            result = write()
        except Exception:
            self._metrics.upload_errors.inc()
            raise
        self._metrics.upload_bytes.inc(size)
        return result
