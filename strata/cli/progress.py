"""A spinner with elapsed time on stderr for calls that take seconds (initdb, compaction).

rich is imported only when the spinner is shown: JSON output and pipes do not load it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def working(description: str, enabled: bool) -> Iterator[None]:
    """Show ``description`` with a spinner while the block runs, if ``enabled``.

    Callers enable it only for human output on a terminal, so JSON and pipes stay clean.
    """
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        progress.add_task(description, total=None)
        yield
