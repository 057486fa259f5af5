"""The command lines in docs/OPERATIONS.md name commands and options the CLI has.

OPERATIONS shows reference lines with alternatives (``--ttl 4h | --no-ttl``) and optional
parts (``[--yes]``), so they are not run; each ``strata`` line is resolved against the
CLI instead, so that a renamed command or option fails here rather than in a reader's
shell. (README's Quick start is run for real: tests/compute/test_readme.py.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from strata.cli.lazy import LazyCommand
from strata.cli.main import cli

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"


def _command_lines() -> list[str]:
    """Every ``strata ...`` line of the doc's sh blocks, continuation lines joined."""
    blocks = re.findall(r"^```sh\n(.*?)^```", OPERATIONS.read_text(), re.M | re.S)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "strata":
                lines.append(line.strip())
    return lines


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The command a line names (through the groups) and the words after it."""
    command: click.Command = cli
    rest = words[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        with click.Context(command) as context:
            sub = command.get_command(context, rest[0])
        if sub is None:
            break
        command, rest = (sub.load() if isinstance(sub, LazyCommand) else sub), rest[1:]
    return command, rest


def _passes_options_on(command: click.Command) -> bool:
    """Whether the command hands unknown words to a program it runs (``strata psql``)."""
    return any(isinstance(param, click.Argument) and param.type is click.UNPROCESSED
               for param in command.params)


def _options(command: click.Command) -> set[str]:
    names = set()
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names | {"--help", "-h"}


def test_operations_shows_command_lines() -> None:
    assert len(_command_lines()) >= 10


@pytest.mark.parametrize("line", _command_lines())
def test_each_command_line_names_what_the_cli_has(line: str) -> None:
    words = [word.strip("[]") for word in shlex.split(line, comments=True)]
    command, rest = _resolve(words)
    assert not isinstance(command, click.Group), f"{line!r}: no such command"
    named = {word.split("=", 1)[0] for word in rest if re.match(r"--?[A-Za-z]", word)}
    unknown = set() if _passes_options_on(command) else named - _options(command)
    assert not unknown, f"{line!r}: `strata {command.name}` has no {sorted(unknown)}"
