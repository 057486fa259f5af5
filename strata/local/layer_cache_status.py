"""The page server's layer cache as ``strata status`` shows it, read from its metrics."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

_PREFIX = "strata_layer_cache_"
TIMEOUT_S = 2.0


def layer_cache_stats(metrics_address: str) -> dict[str, int] | None:
    """``hits``, ``misses``, ``evictions``, ``bytes``, ``limit_bytes`` ... of the layer
    cache from the page server's metrics endpoint; None if it cannot be read."""
    try:
        with urllib.request.urlopen(f"http://{metrics_address}/metrics",
                                    timeout=TIMEOUT_S) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError, ValueError):
        return None
    stats: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith(_PREFIX):
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    stats[family.name.removeprefix(_PREFIX)] = int(sample.value)
    return stats or None
