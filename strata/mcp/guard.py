"""What an agent may change through MCP, on top of what its token may do at the page
server: protected branches (``main`` always is) are not written, restored, reset or
deleted unless the token names the branch itself, and a read-only token writes nothing."""

from __future__ import annotations

from proto import strata_pb2 as pb
from strata.mcp.caller import Caller

MAIN_BRANCH = "main"


class Refused(Exception):
    """A call the safety rules refuse; the message says why and what would allow it."""


def protected(info: pb.BranchInfo) -> bool:
    return info.protected or info.name == MAIN_BRANCH


def may_change(caller: Caller, info: pb.BranchInfo) -> bool:
    """Whether the caller may change ``info``'s branch (its data or its history)."""
    return not protected(info) or caller.names(info.name)


def check_change(caller: Caller, info: pb.BranchInfo, verb: str) -> None:
    """Refuse to ``verb`` a protected branch unless the token names it."""
    if not may_change(caller, info):
        raise Refused(
            f"branch {info.name!r} is protected: MCP does not {verb} it with a token for "
            f"every branch; fork it (create_branch) and work on the fork, or use a token "
            f"made for it (`strata token create --scope tenant --branch {info.name}`)")


def check_write(caller: Caller, info: pb.BranchInfo) -> None:
    """Refuse SQL writes the token or the branch do not allow."""
    if caller.read_only:
        raise Refused("the token is read-only: run_sql with write=true needs a token that "
                      "may write")
    check_change(caller, info, "write to")
