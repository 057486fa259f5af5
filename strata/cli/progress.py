"""A spinner with elapsed time on stderr for calls that take seconds (initdb, compaction)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextmanager
def working(description: str, enabled: bool) -> Iterator[None]:
    """Show ``description`` with a spinner while the block runs, if ``enabled``.

    Callers enable it only for human output on a terminal, so JSON and pipes stay clean.
    """
    if not enabled:
        yield
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        progress.add_task(description, total=None)
        yield
