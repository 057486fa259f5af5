"""The in-memory state behind a manifest, changed only by copy, change, persist, then swap.

A change edits a copy of the current state; the copy is persisted durably and only then
becomes the current state. A change that raises, or a persist that fails, leaves memory
exactly as it was: nothing is rolled back by hand, and no later persist can publish a
change that was refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

S = TypeVar("S")


class Draft(Generic[S]):
    """A change in progress: the copy to edit, and what goes live with it."""

    def __init__(self, state: S) -> None:
        self.state = state
        self.discarded = False
        self.swap_actions: list[Callable[[], object]] = []

    def on_swap(self, action: Callable[[], object]) -> None:
        """Run ``action`` as the draft becomes current, under the owner's lock: for the
        in-memory changes that belong with the manifest (a timeline to register)."""
        self.swap_actions.append(action)

    def discard(self) -> None:
        """Persist nothing and keep the current state: the change turned out empty."""
        self.discarded = True


class Published(Generic[S]):
    """The newest persisted state of one manifest; see the module docstring."""

    def __init__(self, state: S, *, lock: threading.RLock, copy: Callable[[S], S],
                 persist: Callable[[S], None],
                 swapped: Callable[[S, S], object] | None = None) -> None:
        self._current = state
        self._lock = lock  # the owner's lock, which its readers of related state hold
        self._copy = copy
        self._persist = persist
        self._swapped = swapped  # (old, new): keeps what the owner derives from the state
        self._writer = threading.Lock()  # one change at a time, so none is lost

    @property
    def current(self) -> S:
        """The state last persisted; never changed in place, so readable without the lock."""
        return self._current

    @contextmanager
    def change(self) -> Iterator[Draft[S]]:
        """A copy of the current state to edit in the block; once the block ends it is
        persisted and then made current. Callers must not hold the owner's lock."""
        with self._writer:
            draft = Draft(self._copy(self._current))
            yield draft
            if draft.discarded:
                return
            self._persist(draft.state)
            with self._lock:
                old, self._current = self._current, draft.state
                if self._swapped is not None:
                    self._swapped(old, draft.state)
                for action in draft.swap_actions:
                    action()
