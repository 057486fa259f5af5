"""CallAdmission: per-tenant and server-wide slots for streams and unary calls."""

from __future__ import annotations

import contextlib

import pytest

from common.errors import InvalidArgumentError, TooBusyError
from pageserver.api.limits import CallAdmission, CallLimits
from pageserver.main import settings_from


def test_a_tenant_past_its_stream_limit_is_refused_and_others_are_not() -> None:
    admission = CallAdmission(CallLimits(streams_per_tenant=2, max_streams=10))
    with contextlib.ExitStack() as held:
        held.enter_context(admission.stream("a", "GetPages"))
        held.enter_context(admission.stream("a", "GetPages"))
        with pytest.raises(TooBusyError, match=r"tenant 'a' has 2 GetPages streams open at once"):
            held.enter_context(admission.stream("a", "GetPages"))
        held.enter_context(admission.stream("b", "GetPages"))
        assert admission.open_streams("a", "GetPages") == 2
        assert admission.open_streams("b", "GetPages") == 1
    assert admission.open_streams("a", "GetPages") == 0
    with admission.stream("a", "GetPages"):  # the slots came back
        pass


def test_the_refusal_names_the_setting_to_raise() -> None:
    admission = CallAdmission(CallLimits(streams_per_tenant=1, calls_per_tenant=1))
    with (admission.stream("a", "GetPages"),
          pytest.raises(TooBusyError, match=r"streams_per_tenant = 1"),
          admission.stream("a", "GetPages")):
        pass
    with (admission.call("a"), pytest.raises(TooBusyError, match=r"calls_per_tenant = 1"),
          admission.call("a")):
        pass


def test_the_server_wide_limit_holds_across_tenants() -> None:
    admission = CallAdmission(CallLimits(streams_per_tenant=5, max_streams=3))
    with (admission.stream("a", "GetPages"), admission.stream("b", "GetPages"),
          admission.stream("c", "GetPages"),
          pytest.raises(TooBusyError, match=r"the page server has 3 streams open at once, "
                                            r"its limit \(max_streams = 3\)"),
          admission.stream("d", "GetPages")):
        pass


def test_streams_of_each_method_and_calls_are_counted_apart() -> None:
    admission = CallAdmission(CallLimits(streams_per_tenant=1, calls_per_tenant=1))
    with admission.stream("a", "GetPages"), admission.stream("a", "Ingest"), admission.call("a"):
        pass


def test_a_slot_is_released_when_the_call_fails() -> None:
    admission = CallAdmission(CallLimits(calls_per_tenant=1))
    with pytest.raises(RuntimeError), admission.call("a"):
        raise RuntimeError("the call failed")
    with admission.call("a"):
        pass


def test_the_admin_token_is_not_limited() -> None:
    admission = CallAdmission(CallLimits(streams_per_tenant=1, max_streams=1))
    with contextlib.ExitStack() as held:
        for _ in range(5):
            held.enter_context(admission.stream(None, "GetPages"))
        held.enter_context(admission.stream("a", "GetPages"))


def test_the_pool_has_a_thread_for_every_admitted_call_and_headroom() -> None:
    limits = CallLimits(max_streams=10, max_calls=4, admin_threads=2)
    assert limits.threads == 16
    with pytest.raises(InvalidArgumentError, match="max_calls must be at least 1"):
        CallLimits(max_calls=0)


def test_the_limits_are_page_server_settings() -> None:
    settings = settings_from(["--streams-per-tenant", "8"], {"STRATA_PAGESERVER_MAX_CALLS": "7"})
    assert settings.call_limits() == CallLimits(streams_per_tenant=8, max_calls=7)
    with pytest.raises(InvalidArgumentError, match="streams_per_tenant must be at least 1"):
        settings_from(["--streams-per-tenant", "0"], {}).call_limits()
