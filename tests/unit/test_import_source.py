"""The source of `strata tenant import` as libpq environment variables: every part of a
URI, nothing unknown passed on, and a bad URI refused before anything is created."""

from __future__ import annotations

import pytest

from strata.local.errors import LocalError
from strata.local.tenant_import import source_environ


def test_a_uri_becomes_libpq_environment_variables() -> None:
    assert source_environ("postgresql://ann:p%40ss@db.example:5433/shop?sslmode=require") == {
        "PGUSER": "ann", "PGPASSWORD": "p@ss", "PGHOST": "db.example", "PGPORT": "5433",
        "PGDATABASE": "shop", "PGSSLMODE": "require"}


def test_unknown_parameters_and_non_uris_are_refused() -> None:
    with pytest.raises(LocalError, match="unsupported connection parameter service"):
        source_environ("postgresql://h/db?service=prod")
    with pytest.raises(LocalError, match="not a PostgreSQL URI"):
        source_environ("host=a b c")


def test_the_error_for_a_bad_uri_is_one_line() -> None:
    with pytest.raises(LocalError) as refused:
        source_environ("host=a b c")
    assert "\n" not in refused.value.message
