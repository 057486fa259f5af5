"""StrataClient without a server: branch points and the names its errors carry."""

from __future__ import annotations

import pytest

from common.client import NEWEST, HistoryPoint
from proto import strata_pb2 as pb


@pytest.mark.parametrize(("point", "field", "value"), [
    (HistoryPoint(lsn=7), "lsn", 7),
    (HistoryPoint(wal_lsn=0x1000), "wal_lsn", 0x1000),
    (HistoryPoint(time_us=5), "time_us", 5),
    (HistoryPoint(checkpoint="before"), "checkpoint", "before"),
])
def test_a_point_sets_its_field_in_both_requests(point: HistoryPoint, field: str,
                                                 value: int | str) -> None:
    assert point.ways_given == 1
    create, restore = pb.CreateBranchRequest(), pb.RestoreBranchRequest()
    assert point.set_in(create) and point.set_in(restore)
    assert create.WhichOneof("at") == field and getattr(create, field) == value
    assert restore.WhichOneof("to") == field and getattr(restore, field) == value


def test_the_newest_point_sets_nothing() -> None:
    request = pb.CreateBranchRequest()
    assert NEWEST.ways_given == 0
    assert not NEWEST.set_in(request)
    assert request.WhichOneof("at") is None


def test_ways_given_counts_every_way() -> None:
    assert HistoryPoint(lsn=1, checkpoint="c").ways_given == 2


def test_every_request_is_named_after_its_rpc() -> None:
    """ClientError names the method from the request's type: this naming must hold."""
    for service in pb.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            assert method.input_type.name == f"{method.name}Request", method.full_name
