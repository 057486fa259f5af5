"""The fault plan grammar, and the page server setting that reads it."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgumentError
from pageserver.main import main, settings_from
from pageserver.remote.faults import OPERATIONS, FaultPlan, parse_fault_plan


def test_a_full_plan_is_read() -> None:
    plan = parse_fault_plan("seed=7, error=0.05,throttle=0.01,timeout=0.02:2s,torn=0.03,"
                            "latency=0.5:0.005,ops=put+put_if_absent")
    assert plan == FaultPlan(seed=7, error=0.05, throttle=0.01, timeout=0.02, timeout_s=2.0,
                             torn=0.03, latency=0.5, latency_s=0.005,
                             ops=frozenset({"put", "put_if_absent"}))


def test_items_left_out_take_their_defaults() -> None:
    assert parse_fault_plan("error=0.1") == FaultPlan(error=0.1, ops=OPERATIONS)
    assert parse_fault_plan("seed=3").error == 0.0


@pytest.mark.parametrize("text", [
    "seed=7,error=0.05,torn=0.02,latency=0.01:0.005",
    "seed=0,throttle=0.5,timeout=0.5:3,ops=delete+get",
])
def test_describe_reads_back_as_the_same_plan(text: str) -> None:
    plan = parse_fault_plan(text)
    assert parse_fault_plan(plan.describe()) == plan


@pytest.mark.parametrize(("text", "message"), [
    ("", "is not name=value"),
    ("error", "is not name=value"),
    ("error=", "is not name=value"),
    ("seed=7,,error=0.1", "is not name=value"),
    ("eror=0.1", "unknown item 'eror'; known: error, latency, ops, seed, throttle"),
    ("error=0.1,error=0.2", "'error' given twice"),
    ("seed=1.5", "seed wants an integer"),
    ("error=often", "error wants a probability, got 'often'"),
    ("error=1.5", r"error must be a probability in \[0, 1\]"),
    ("torn=-0.1", "torn must be a probability"),
    ("error=nan", "error must be a probability"),
    ("error=0.6,torn=0.6", "must not exceed 1"),
    ("latency=0.1", "latency wants PROBABILITY:SECONDS"),
    ("timeout=0.1:soon", "timeout sleep: invalid duration 'soon'"),
    ("latency=0.1:-1", "must not be negative"),
    ("ops=put+fetch", r"ops must name some of .*got \['fetch'\]"),
])
def test_bad_plans_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        parse_fault_plan(text)


def test_the_plan_is_a_page_server_setting() -> None:
    assert settings_from([], {}).fault_plan() is None
    by_flag = settings_from(["--storage-faults", "seed=2,error=0.5"], {})
    assert by_flag.fault_plan() == FaultPlan(seed=2, error=0.5)
    by_env = settings_from([], {"STRATA_PAGESERVER_STORAGE_FAULTS": "torn=0.25"})
    assert by_env.fault_plan() == FaultPlan(torn=0.25)


def test_a_bad_plan_stops_the_page_server_before_it_starts(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--storage-faults", "error=2"])
    assert exit_.value.code == 2
    assert "pageserver: storage faults: error must be a probability" in capsys.readouterr().err
