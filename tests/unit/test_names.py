"""One rule for tenant and branch names, enforced the same way everywhere names enter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import InvalidArgumentError
from common.names import is_valid_name
from pageserver.api.auth import Scope, TokenAuthority
from pageserver.api.signing_keys import KeyRing
from pageserver.api.token_registry import TokenRegistry
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.remote import LocalDirectoryStorage
from strata.local import computes
from strata.local.errors import InvalidNameError
from strata.local.home import Home
from strata.proxy.pgwire import Startup
from strata.proxy.startup import RouteError, escape_option, route_of
from tests.tokens import every_tenant

GOOD = ["a", "main", "Tenant-1", "a.b_c-d", "0" * 63]
BAD = ["evil\n", "", "-lead", ".hidden", "_under", "a/b", "../up", "a b", "tab\t",
       "x" * 64, "caf\u00e9", "nul\0"]


@pytest.mark.parametrize("name", GOOD)
def test_good_names_are_valid(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize("name", BAD)
def test_bad_names_are_invalid(name: str) -> None:
    assert not is_valid_name(name)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(EngineConfig(state_dir=tmp_path / "state", background_period_s=0),
                    LocalDirectoryStorage(tmp_path / "remote"))
    yield engine
    engine.close(flush=False)


@pytest.mark.parametrize("name", BAD)
def test_the_engine_refuses_bad_tenant_and_branch_names(engine: Engine, name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid tenant name"):
        engine.create_tenant(name)
    tenant = engine.create_tenant("acme")
    with pytest.raises(InvalidArgumentError, match="invalid branch name"):
        tenant.create_branch(name)


@pytest.mark.parametrize("name", BAD)
def test_tokens_refuse_bad_tenant_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid tenant name"):
        TokenAuthority(KeyRing(b"k" * 32), TokenRegistry(None), every_tenant).issue(
            name, Scope.TENANT, 60)


@pytest.mark.parametrize("name", BAD)
def test_the_proxy_refuses_bad_tenant_and_branch_names(name: str) -> None:
    """As the user (the tenant when options name only the branch), as the tenant and as
    the branch of ``strata.branch`` (escaped as libpq users must escape whitespace)."""
    with pytest.raises(RouteError) as as_user:
        route_of(Startup({"user": name, "options": "-c strata.branch=main"}))
    assert as_user.value.sqlstate == "28000"
    with pytest.raises(RouteError) as as_tenant:
        route_of(Startup({"user": "acme",
                          "options": "--strata.branch=" + escape_option(f"{name}/main")}))
    # a slash ends the tenant: "a/b/main" names tenant "a" and the invalid branch "b/main"
    tenant_part = name.partition("/")[0]
    assert as_tenant.value.sqlstate == ("3D000" if is_valid_name(tenant_part) else "28000")
    with pytest.raises(RouteError) as as_branch:
        route_of(Startup({"user": "acme",
                          "options": "-c strata.branch=" + escape_option(f"acme/{name}")}))
    assert as_branch.value.sqlstate == "3D000"


@pytest.mark.parametrize("name", BAD)
def test_compute_workdirs_refuse_bad_names(tmp_path: Path, name: str) -> None:
    home = Home(tmp_path)
    with pytest.raises(InvalidNameError, match="invalid tenant name"):
        computes.workdir(home, name, "main")
    with pytest.raises(InvalidNameError, match="invalid branch name"):
        computes.workdir(home, "acme", name)


def test_good_names_pass_everywhere(engine: Engine, tmp_path: Path) -> None:
    for name in GOOD:
        engine.create_tenant(name).create_branch(f"{name[:60]}-b")
        TokenAuthority(KeyRing(b"k" * 32), TokenRegistry(None), engine.incarnation).issue(
            name, Scope.TENANT, 60)
        options = f"-c strata.branch={name}/{name}"
        assert route_of(Startup({"user": "r", "options": options})).branch == name
        assert computes.workdir(Home(tmp_path), name, name).name == name
