"""Short pauses of Python's cyclic garbage collector in long-running processes.

A full collection walks every object the collector tracks. In a page server that is
tens of thousands of objects made at start-up (modules, gRPC, protobuf, the engine's
state): one walk took 50 ms on a 2-core machine, a pause any request caught in it pays
(issue 13's GetPage p99). Objects that live for the whole process need no walking.
"""

from __future__ import annotations

import gc


def freeze_start_up() -> int:
    """Move every object alive now to the permanent generation, which later collections
    skip; returns how many objects are frozen. Call once, when the process is ready to
    serve. No collection first: that would put the very pause in the start-up (a compute
    woken by a client waits for its mount daemon), and start-up leaves little garbage;
    cycles among frozen objects are never freed."""
    gc.freeze()
    return gc.get_freeze_count()
