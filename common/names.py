"""The one rule for tenant, branch and checkpoint names.

Names become paths (compute work directories, object keys) and parts of connection
strings, so they are short and plain: 1 to 63 letters, digits, '.', '_' or '-', starting
with a letter or digit. The whole string must match: "evil\\n" is not a name.
"""

from __future__ import annotations

import re
from typing import Final

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def is_valid_name(name: str) -> bool:
    """Whether ``name`` follows the rule for tenant, branch and checkpoint names."""
    return _NAME.fullmatch(name) is not None


def is_reserved_tenant_name(name: str) -> bool:
    """Whether ``name`` cannot name a tenant: a tenant's role in its PostgreSQL clusters is
    named like it, and PostgreSQL keeps ``postgres`` (the superuser) and ``pg_*``."""
    return name == "postgres" or name.startswith("pg_")


READ_ONLY_ROLE: Final = "strata_readonly"
"""The role of read-only logins in every tenant's clusters (``strata connect --read-only``):
it reads every table (``pg_read_all_data``) and owns nothing."""
