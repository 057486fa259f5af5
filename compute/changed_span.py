"""The bytes a rewrite of a page really changes, so only those are shipped.

PostgreSQL rewrites the last, partly filled WAL page from its start on every flush: a
commit of ~100 bytes of WAL arrives as an 8 KB write whose first part and zero tail
are what the page already held. The page server applies a write over the newest
version of the page it holds, which is the page the view holds (one writer, writes
shipped in order), so a write cut down to the span that differs gives it the same
page (rfcs/0031).
"""

from __future__ import annotations

import numpy as np


def changed_span(old: bytes, new: bytes | memoryview) -> tuple[int, int]:
    """The smallest ``[start, end)`` outside of which ``old`` and ``new`` (of one length)
    hold the same bytes; ``(n, n)`` (empty) if they are equal."""
    if len(old) != len(new):
        raise ValueError(f"spans of {len(old)} and {len(new)} bytes cannot be compared")
    differs = np.flatnonzero(np.frombuffer(old, np.uint8) != np.frombuffer(new, np.uint8))
    if not len(differs):
        return len(old), len(old)
    return int(differs[0]), int(differs[-1]) + 1
