"""Garbage collection: drop layers that no read the timeline must still serve can reach.

A timeline must serve reads at every LSN at or above its GC cutoff and at each
retained LSN below it (child branch points and checkpoints). A layer with
LSNs ``[s, e)`` is unreachable for a read at ``p >= s`` when image layers at
LSNs in ``[e - 1, p]`` cover its whole key range: the read finds those images
first. Images are only ever justified by strictly newer images, so a chain of
removals always ends at an image that stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pageserver.layer import Layer
from pageserver.timeline import Timeline, now_us


@dataclass
class GcResult:
    cutoff: int
    layers_removed: int = 0
    bytes_removed: int = 0


def pitr_cutoff(timeline: Timeline, pitr_window_s: float, at_us: int | None = None) -> int:
    """The newest LSN at least ``pitr_window_s`` old, capped at what is in layers."""
    horizon = (at_us if at_us is not None else now_us()) - int(pitr_window_s * 1_000_000)
    history = timeline.batch_history()
    old = np.flatnonzero(history[:, 2] <= np.uint64(max(horizon, 0)))
    cutoff = int(history[old[-1], 0]) if old.size else 0
    return min(cutoff, timeline.disk_consistent_lsn)


def collect(timeline: Timeline, cutoff: int) -> GcResult:
    """Raise the timeline's GC cutoff to ``cutoff`` and delete the layers nothing needs.

    The cutoff is published before the retained LSNs are read: a branch or checkpoint
    made meanwhile is either among them (pinned while it is made) or refused.
    """
    cutoff = max(min(cutoff, timeline.disk_consistent_lsn), timeline.gc_cutoff)
    timeline.raise_gc_cutoff(cutoff)
    retained = sorted(p for p in timeline.retain_lsns() if p < cutoff)
    with timeline.lock:
        layers = list(timeline.layers)
    images = [layer for layer in layers if layer.is_image]
    removable = [layer for layer in layers if _unreachable(layer, images, retained, cutoff)]
    if removable:
        timeline.replace_layers([], removable)
    return GcResult(cutoff, len(removable), sum(layer.desc.size for layer in removable))


def _unreachable(layer: Layer, images: list[Layer], retained: list[int], cutoff: int) -> bool:
    """Whether no read at a retained LSN or at any LSN >= ``cutoff`` can reach ``layer``."""
    newest = layer.lsn_end - 1
    # Of all reads at LSNs >= cutoff, the one at max(cutoff, lsn_start) is the hardest to serve.
    points = [p for p in retained if p >= layer.lsn_start] + [max(cutoff, layer.lsn_start)]
    for point in points:
        justifying = [
            image for image in images
            if image is not layer and newest <= image.lsn_start <= point
            and (not layer.is_image or image.lsn_start > layer.lsn_start)
        ]
        if not _covers(justifying, layer.desc.key_start, layer.desc.key_end):
            return False
    return True


def _covers(images: list[Layer], start: bytes, end: bytes) -> bool:
    """Whether the union of the images' key ranges contains ``[start, end)``."""
    reach = start
    for image in sorted(images, key=lambda layer: layer.desc.key_start):
        if image.desc.key_start > reach:
            break
        reach = max(reach, image.desc.key_end)
        if reach >= end:
            return True
    return reach >= end
