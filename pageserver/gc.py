"""Garbage collection: drop layers that no read the timeline must still serve can reach.

A timeline must serve reads at every LSN at or above its GC cutoff and at each
retained LSN below it (child branch points and checkpoints). A layer with
LSNs ``[s, e)`` is unreachable for a read at ``p >= s`` when image layers at
LSNs in ``[e - 1, p]`` cover its whole key range: the read finds those images
first. Images are only ever justified by strictly newer images, so a chain of
removals always ends at an image that stays.

``explain`` says why each layer that stays is kept: it holds the newest data, history
inside the window (reads at or above the cutoff), or history only a checkpoint or a child
branch point below the cutoff still reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pageserver.layer import Layer
from pageserver.timeline import Timeline, now_us


@dataclass
class GcResult:
    cutoff: int
    layers_removed: int = 0
    bytes_removed: int = 0


@dataclass
class KeptBytes:
    """Bytes of the layers GC kept, by what needs them (each layer counted once, under
    the first reason that holds: current, then window, then checkpoints, then branch
    points), and the checkpoints and child branches that keep any."""

    current: int = 0  # read at the newest LSN
    window: int = 0  # read only inside the history window (LSNs at or above the cutoff)
    checkpoints: int = 0  # read only at checkpoints below the cutoff
    branch_points: int = 0  # read only at child branch points below the cutoff
    pinned_by: list[str] = field(default_factory=list)


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


def explain(timeline: Timeline, points: Mapping[int, Sequence[str]]) -> KeptBytes:
    """Why each of the timeline's layers is kept, at its current GC cutoff; ``points``
    names what pins each retained LSN (``Tenant.retained_points``)."""
    with timeline.lock:
        layers = list(timeline.layers)
        head, cutoff = timeline.disk_consistent_lsn, timeline.gc_cutoff
    images = [layer for layer in layers if layer.is_image]
    below = sorted(p for p in points if p < cutoff)
    kept = KeptBytes()
    for layer in layers:
        size = layer.desc.size
        if _reachable(layer, images, max(head, layer.lsn_start)):
            kept.current += size
        elif _reachable(layer, images, max(cutoff, layer.lsn_start)):
            kept.window += size
        else:
            pinning = next((points[p] for p in below
                            if p >= layer.lsn_start and _reachable(layer, images, p)), ())
            if any(label.startswith("checkpoint") for label in pinning):
                kept.checkpoints += size
            else:
                kept.branch_points += size
            kept.pinned_by.extend(label for label in pinning if label not in kept.pinned_by)
    return kept


def history_bytes(timeline: Timeline) -> int:
    """Bytes of the timeline's layers that only reads at older LSNs reach: what its
    history costs beyond its newest state (``KeptBytes.current``)."""
    with timeline.lock:
        layers = list(timeline.layers)
        head = timeline.disk_consistent_lsn
    images = [layer for layer in layers if layer.is_image]
    return sum(layer.desc.size for layer in layers
               if not _reachable(layer, images, max(head, layer.lsn_start)))


@dataclass(frozen=True)
class PinnedLayer:
    """A layer no read at or above the GC cutoff reaches, and the retained LSNs below the
    cutoff whose reads do (none: the next GC at this cutoff removes it)."""

    size: int
    readers: frozenset[int]


def pinned_layers(timeline: Timeline, points: Sequence[int]) -> list[PinnedLayer]:
    """The timeline's layers kept only for reads below its current GC cutoff, each with the
    ``points`` (retained LSNs) that read it: what a checkpoint or branch point costs, and
    what GC would remove once one is gone (the layers it alone reads)."""
    with timeline.lock:
        layers = list(timeline.layers)
        cutoff = timeline.gc_cutoff
    images = [layer for layer in layers if layer.is_image]
    below = sorted(p for p in points if p < cutoff)
    return [PinnedLayer(layer.desc.size,
                        frozenset(p for p in below
                                  if p >= layer.lsn_start and _reachable(layer, images, p)))
            for layer in layers
            if not _reachable(layer, images, max(cutoff, layer.lsn_start))]


def _unreachable(layer: Layer, images: list[Layer], retained: list[int], cutoff: int) -> bool:
    """Whether no read at a retained LSN or at any LSN >= ``cutoff`` can reach ``layer``."""
    # Of all reads at LSNs >= cutoff, the one at max(cutoff, lsn_start) is the hardest to serve.
    points = [p for p in retained if p >= layer.lsn_start] + [max(cutoff, layer.lsn_start)]
    return not any(_reachable(layer, images, point) for point in points)


def _reachable(layer: Layer, images: list[Layer], point: int) -> bool:
    """Whether a read at ``point`` (>= the layer's start) can reach ``layer``: no newer
    images at or below ``point`` cover its key range."""
    newest = layer.lsn_end - 1
    justifying = [
        image for image in images
        if image is not layer and newest <= image.lsn_start <= point
        and (not layer.is_image or image.lsn_start > layer.lsn_start)
    ]
    return not _covers(justifying, layer.desc.key_start, layer.desc.key_end)


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
