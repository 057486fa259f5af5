"""Where a client's startup message points: the branch, from the ``options`` parameter.

A branch is a whole PostgreSQL cluster, so the user and the database a client names go to
the server unchanged; the branch travels in ``options``, which libpq passes through from a
URI (``?options=-c%20strata.branch%3DTENANT%2FBRANCH``)::

    options='-c strata.branch=acme/main'    tenant acme, branch main
    options='--strata.branch=main'          branch main of the tenant named like the user

The proxy removes that setting before the startup goes on (it means nothing to the
compute), keeps every other option, and drops the ``_pq_.`` protocol options it does not
implement, which it names in a NegotiateProtocolVersion.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from common.names import READ_ONLY_ROLE, is_valid_name
from strata.proxy.pgwire import PROTOCOL_3, Startup

SETTING: Final = "strata.branch"
HOW: Final = f"options='-c {SETTING}=TENANT/BRANCH'"
PROTOCOL_OPTION_PREFIX: Final = "_pq_."
_SPACE: Final = " \t\n\r\f\v"  # what separates words in options, as in C's isspace()


class RouteError(Exception):
    """A client's startup names no valid tenant or branch; ``sqlstate`` says which class."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


@dataclass(frozen=True)
class Route:
    """Where a client wants to go, and the startup to send there."""

    tenant: str
    branch: str
    startup: Startup  # the client's, without strata.branch and _pq_. options

    @property
    def user(self) -> str:
        return self.startup.params.get("user", "")

    @property
    def owner(self) -> bool:
        """The client logs in as the tenant's owner role."""
        return self.user == self.tenant

    @property
    def read_only(self) -> bool:
        """The client logs in as the read-only role."""
        return self.user == READ_ONLY_ROLE

    @property
    def managed(self) -> bool:
        """The client logs in with a branch credential Strata made (``strata connect``),
        which the proxy checks itself before it logs in to the compute."""
        return self.owner or self.read_only


def split_options(options: str) -> list[str]:
    """The words of an ``options`` value as PostgreSQL splits them (whitespace separates,
    a backslash keeps the next character)."""
    words: list[str] = []
    word: list[str] = []
    escaped = in_word = False
    for char in options:
        if escaped:
            word.append(char)
            escaped = False
        elif char == "\\":
            escaped = in_word = True
        elif char in _SPACE:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        else:
            word.append(char)
            in_word = True
    if escaped:
        raise RouteError("08P01", "the options parameter ends in a backslash")
    if in_word:
        words.append("".join(word))
    return words


def escape_option(word: str) -> str:
    """``word`` as one word of an ``options`` value (the inverse of ``split_options``)."""
    return "".join("\\" + char if char in _SPACE or char == "\\" else char for char in word)


def take_branch(options: str) -> tuple[str | None, str]:
    """The ``strata.branch`` value in ``options`` (None if absent) and the options without
    it. ``-c NAME=VALUE``, ``-cNAME=VALUE`` and ``--NAME=VALUE`` all set it; given twice,
    it is refused rather than guessed."""
    words = split_options(options)
    kept: list[str] = []
    found: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        setting: str | None = None
        consumed = 1
        if word == "-c" and index + 1 < len(words):
            setting, consumed = words[index + 1], 2
        elif word.startswith(("-c", "--")) and word != "-c":
            setting = word[2:]
        name, sep, value = (setting or "").partition("=")
        if setting is not None and sep and name == SETTING:
            found.append(value)
        else:
            kept.extend(words[index:index + consumed])
        index += consumed
    if len(found) > 1:
        raise RouteError("08P01", f"{SETTING} is given {len(found)} times in options")
    return (found[0] if found else None), " ".join(escape_option(word) for word in kept)


def route_of(startup: Startup) -> Route:
    """The tenant and branch a startup names, and the startup to forward."""
    user = startup.params.get("user", "")
    if not user:
        raise RouteError("28000", "no PostgreSQL user name specified in startup packet")
    named, options = take_branch(startup.params.get("options", ""))
    if named is None:
        raise RouteError("08004", f"no branch named: connect with {HOW} (in a URI: "
                                  f"?options=-c%20{SETTING}%3DTENANT%2FBRANCH); "
                                  "`strata connect BRANCH` prints one")
    tenant, sep, branch = named.partition("/")  # a tenant name never holds a slash
    if not sep:
        tenant, branch = user, named
    if not is_valid_name(tenant):
        raise RouteError("28000", f"the tenant must be a tenant name, not {tenant!r} "
                                  f"({HOW}, or the user name when only BRANCH is given)")
    if not is_valid_name(branch):
        raise RouteError("3D000", f"{SETTING} must be TENANT/BRANCH or BRANCH, not {named!r}")
    params = {name: value for name, value in startup.params.items()
              if name != "options" and not name.startswith(PROTOCOL_OPTION_PREFIX)}
    if options:
        params["options"] = options
    return Route(tenant, branch, Startup(params))


def protocol_options(startup: Startup) -> list[str]:
    """The ``_pq_.`` protocol options a client asked for; the proxy implements none."""
    return [name for name in startup.params if name.startswith(PROTOCOL_OPTION_PREFIX)]


def negotiate_protocol_version(unrecognized: list[str]) -> bytes:
    """NegotiateProtocolVersion ('v'): the newest version the proxy speaks (3.0, sent whole
    as PostgreSQL does: libpq 18 refuses a bare minor 0 as a "downgrade to pre-3.0") and
    the protocol options it does not recognize; the client then goes on with 3.0."""
    body = struct.pack("!ii", PROTOCOL_3, len(unrecognized))
    for name in unrecognized:
        body += name.encode() + b"\0"
    return b"v" + struct.pack("!I", len(body) + 4) + body
