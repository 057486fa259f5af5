"""The CLI's pure parts: unit conversions, saved options, lineage and error mapping."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import click
import grpc
import pytest
from psycopg.conninfo import conninfo_to_dict

from common.client import ClientError, ServerUnreachable
from common.durations import parse_duration_s
from proto import strata_pb2 as pb
from strata.cli.client_errors import from_client_error
from strata.cli.commands.connect import ProxyTarget
from strata.cli.errors import ExitCode
from strata.cli.params import TIMESTAMP
from strata.cli.render import lineage
from strata.cli.units import format_wal_lsn, human_size, iso_time, parse_time_us, parse_wal_lsn
from strata.local.home import Home, UpOptions


def test_wal_lsn_round_trips_in_postgres_form() -> None:
    assert parse_wal_lsn("0/16B3748") == 0x16B3748
    assert parse_wal_lsn("1/0") == 1 << 32
    assert format_wal_lsn(parse_wal_lsn("AB/CDEF0123")) == "AB/CDEF0123"
    for bad in ("16B3748", "0/", "x/1", "1/123456789", "-1/0"):
        with pytest.raises(ValueError, match="X/Y"):
            parse_wal_lsn(bad)


def test_times_with_and_without_zone() -> None:
    assert parse_time_us("1970-01-01T00:00:01Z") == 1_000_000
    assert parse_time_us("1970-01-01T02:00:01.5+02:00") == 1_500_000
    naive = "2024-05-01T12:30:00"
    assert parse_time_us(naive) == int(datetime.fromisoformat(naive).timestamp() * 1e6)
    assert iso_time(1_500_000) == "1970-01-01T00:00:01.500000+00:00"
    assert iso_time(0) is None
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time_us("yesterday")


def test_times_ago_count_back_from_now() -> None:
    now = 1_700_000_000_000_000
    minute = 60_000_000
    typed = {"now": 0, "-10m": 10 * minute, "- 10m": 10 * minute, "-10 minutes": 10 * minute,
             "10m ago": 10 * minute, "10 minutes ago": 10 * minute, " 2h ago ": 120 * minute,
             "1.5 hours ago": 90 * minute, "30 SECONDS AGO": minute // 2, "-0s": 0,
             "1 min ago": minute, "2 days ago": 2 * 1440 * minute, "-1w": 7 * 1440 * minute}
    for text, back in typed.items():
        assert parse_time_us(text, now_us=now) == now - back, text
    assert abs(parse_time_us("-10m") - (time.time() - 600) * 1e6) < 5e6  # the machine's clock


@pytest.mark.parametrize(("text", "why"), [
    ("yesterday", "use ISO 8601 .*, now, or a time ago: -10m, '10 minutes ago'"),
    ("10m", "use ISO 8601"),
    ("-10m ago", "use ISO 8601"),
    ("ago", "use ISO 8601"),
    ("10 fortnights ago", "unknown unit 'fortnights'; use s, m, h, d or w"),
    ("-5mo", "unknown unit 'mo'"),
    ("+10m", "it is in the future, which has no state yet; use a time ago"),
    ("in 2 hours", "it is in the future"),
    ("1960-01-01", "it is before 1970"),
    ("-60000 weeks", "it is before 1970"),
])
def test_bad_times_say_what_to_type(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"^invalid time {re.escape(repr(text))}: {why}"):
        parse_time_us(text)


def test_a_checkpoint_where_a_time_goes_names_the_checkpoint_option() -> None:
    option = click.Option(["--to-time"], type=TIMESTAMP)
    with pytest.raises(click.BadParameter, match="use --to-checkpoint before-migration"):
        TIMESTAMP.convert("@before-migration", option, None)
    assert TIMESTAMP.convert("1970-01-01T00:00:02Z", option, None) == 2_000_000


def test_durations_and_sizes() -> None:
    assert [parse_duration_s(t) for t in ("90", "90s", "5m", "2h", "1d", "1w", "0.5s")] == [
        90, 90, 300, 7200, 86400, 604800, 1]
    assert [human_size(n) for n in (0, 999, 1000, 38_200_000, 5 * 10**12)] == [
        "0 B", "999 B", "1.0 kB", "38.2 MB", "5.0 TB"]


def test_up_options_are_saved_and_read_back(tmp_path: Path) -> None:
    home = Home(tmp_path)
    assert UpOptions.load(home) == UpOptions()
    options = UpOptions(storage="s3", s3_endpoint="http://127.0.0.1:9000", s3_bucket="b",
                        s3_prefix="/p/q/", port=7000, metrics_port=0)
    options.save(home)
    assert UpOptions.load(home) == options
    assert options.storage_url(home) == "s3://b/p/q?endpoint=http%3A%2F%2F127.0.0.1%3A9000"
    assert UpOptions().storage_url(home) == str(tmp_path / "objects")
    home.config_file.write_text('{"port": "7000", "pitr_window": "2h", "unknown": 1}')
    assert UpOptions.load(home) == UpOptions(pitr_window="2h")  # wrong types are ignored


def _branch(name: str, parent: str = "", children: tuple[str, ...] = ()) -> pb.BranchInfo:
    return pb.BranchInfo(name=name, parent=parent, children=list(children), branch_lsn=len(name))


def test_lineage_nests_children_under_parents() -> None:
    branches = [_branch("main", children=("b", "a")), _branch("a", "main", ("a1",)),
                _branch("b", "main"), _branch("a1", "a"), _branch("orphan", "gone")]
    names = [(node["name"], [child["name"] for child in node["children"]])
             for node in lineage(branches)]
    assert names == [("main", ["a", "b"]), ("orphan", [])]
    assert lineage(branches)[0]["children"][0]["children"][0]["name"] == "a1"


def test_client_errors_map_to_exit_codes() -> None:
    def code(status: grpc.StatusCode) -> ExitCode:
        return from_client_error(ClientError(status, "m", "X"), have_token=True).code

    assert code(grpc.StatusCode.NOT_FOUND) is ExitCode.NOT_FOUND
    assert code(grpc.StatusCode.PERMISSION_DENIED) is ExitCode.AUTH
    assert code(grpc.StatusCode.OUT_OF_RANGE) is ExitCode.GENERAL
    unreachable = from_client_error(ServerUnreachable("127.0.0.1:1", "refused", "X"),
                                    have_token=True)
    assert unreachable.code is ExitCode.UNREACHABLE and "`strata up`" in unreachable.message
    no_token = from_client_error(ClientError(grpc.StatusCode.UNAUTHENTICATED, "missing", "X"),
                                 have_token=False)
    assert "STRATA_TOKEN" in no_token.message


def test_the_connect_uri_is_what_libpq_reads_and_the_environment_the_same() -> None:
    """Every part percent-encoded where it must be: libpq's own parser gets the values
    back; the environment for psql and pg_dump says the same without a URI."""
    target = ProxyTarget("127.0.0.1", 6432, "acme", "main", False, "p@ss/w:rd", "my db",
                         "verify-full", "/home/x/.strata/tls/ca.crt")
    parsed = conninfo_to_dict(target.uri)
    assert parsed == {"host": "127.0.0.1", "port": "6432", "user": "acme",
                      "password": "p@ss/w:rd", "dbname": "my db",
                      "options": "-c strata.branch=acme/main", "sslmode": "verify-full",
                      "sslrootcert": "/home/x/.strata/tls/ca.crt"}
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
             "dbname": "PGDATABASE", "options": "PGOPTIONS", "sslmode": "PGSSLMODE",
             "sslrootcert": "PGSSLROOTCERT"}
    assert target.environ() == {names[key]: value for key, value in parsed.items()}
    plain = ProxyTarget("127.0.0.1", 6432, "acme", "main", True, "pw", "postgres", "disable",
                        "/ca.crt")
    assert "sslrootcert" not in conninfo_to_dict(plain.uri)  # no TLS: no CA to name
    assert conninfo_to_dict(plain.uri)["user"] == "strata_readonly"
