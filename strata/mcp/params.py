"""The JSON-schema pieces the tools share: argument types with their descriptions, and
the hints that tell a client which tools only read."""

from typing import Annotated

from mcp_types import ToolAnnotations
from pydantic import Field

Branch = Annotated[str, Field(description="Branch name.", min_length=1, max_length=63)]
Database = Annotated[str, Field(description="Database inside the branch's cluster.")]
PreserveAs = Annotated[str | None, Field(
    description="Keep the branch's current state as a new branch of this name.")]

READS = ToolAnnotations(read_only_hint=True)
ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False)
DESTROYS = ToolAnnotations(read_only_hint=False, destructive_hint=True)
