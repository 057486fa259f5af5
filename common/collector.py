"""Short pauses of Python's cyclic garbage collector in long-running processes.

A full collection walks every object the collector tracks. In a page server that is
tens of thousands of objects made at start-up (modules, gRPC, protobuf, the engine's
state): one walk took 50 ms on a 2-core machine, a pause any request caught in it pays
(issue 13's GetPage p99). Objects that live for the whole process need no walking.
"""

from __future__ import annotations

import gc


def freeze_start_up() -> int:
    """Collect once, then move every object alive now to the permanent generation, which
    later collections skip; returns how many objects were frozen. Call once, when the
    process is ready to serve. Garbage cycles among frozen objects are never freed: only
    objects made before serving are frozen, and those live as long as the process."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
