"""Commands imported only when run, so ``strata --help`` and each command load only what
they need (command modules pull in grpc, protobuf and rich; agents call ``strata`` in loops).
"""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyCommand(click.Command):
    """Stands for the command ``target`` (``module:attribute``) in its group.

    The group's ``--help`` lists it by ``summary``, which must be the first paragraph of the
    command's own help; parsing and running it imports the real command and hands over.
    """

    def __init__(self, name: str, target: str, summary: str) -> None:
        super().__init__(name, help=summary)
        self.target = target

    def load(self) -> click.Command:
        """The real command, imported now."""
        module, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        """The real command's context: from here on click runs the real command."""
        return self.load().make_context(info_name, args, parent, **extra)
