"""The page server's Prometheus figures the console charts, read from its metrics endpoint:
counters as totals (the page turns them into rates), gauges as they are, and the sums and
counts of call latencies per method."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import defaultdict
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from strata.console.access import ApiError

TIMEOUT_S: Final = 2.0
TOTALS: Final = ("strata_ingest_bytes_total", "strata_ingest_batches_total",
                 "strata_pages_served_total", "strata_upload_bytes_total",
                 "strata_upload_errors_total", "strata_log_chunks_created_total",
                 "strata_log_chunk_failures_total", "strata_layer_cache_hits_total",
                 "strata_layer_cache_misses_total")
GAUGES: Final = ("strata_log_chunks", "strata_log_pending_bytes",
                 "strata_log_local_lag_seconds", "strata_layer_cache_bytes")
BY_LEVEL: Final = ("strata_layers", "strata_layer_bytes")


def read(address: str) -> dict[str, Any]:
    """The figures of the page server whose metrics listen on ``address``."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics",
                                    timeout=TIMEOUT_S) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise ApiError(503, f"cannot read the page server's metrics at {address}: "
                            f"{exc}") from None
    return parse(text)


def parse(text: str) -> dict[str, Any]:
    """``totals`` and ``gauges`` by name, ``layers`` and ``layer_bytes`` by level, and
    ``rpc_seconds`` per method as ``{"sum", "count"}``."""
    totals: dict[str, float] = {}
    gauges: dict[str, float] = {}
    levels: dict[str, dict[str, float]] = {"strata_layers": {}, "strata_layer_bytes": {}}
    rpc: dict[str, dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in TOTALS:
                totals[sample.name] = sample.value
            elif sample.name in GAUGES:
                gauges[sample.name] = sample.value
            elif sample.name in BY_LEVEL:
                levels[sample.name][sample.labels.get("level", "")] = sample.value
            elif sample.name in ("strata_rpc_seconds_sum", "strata_rpc_seconds_count"):
                kind = sample.name.rpartition("_")[2]
                rpc[sample.labels.get("method", "")][kind] = sample.value
    return {"totals": totals, "gauges": gauges, "layers": levels["strata_layers"],
            "layer_bytes": levels["strata_layer_bytes"], "rpc_seconds": dict(rpc)}
