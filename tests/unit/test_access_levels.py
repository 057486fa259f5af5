"""Every RPC of the contract declares who may call it, and the token check follows it."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import MethodDescriptor

from pageserver.api.auth import (
    ADMIN_ONLY_METHODS,
    COMPUTE_METHODS,
    TENANT_METHODS,
    TENANTLESS_METHODS,
)
from proto import strata_pb2 as pb

METHODS = [method for service in pb.DESCRIPTOR.services_by_name.values()
           for method in service.methods]


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@pytest.mark.parametrize("method", METHODS, ids=_path)
def test_every_rpc_declares_its_access(method: MethodDescriptor) -> None:
    declared = dict(method.GetOptions().ListFields())
    assert declared.get(pb.access, pb.ACCESS_UNSPECIFIED) != pb.ACCESS_UNSPECIFIED, (
        f"{_path(method)} declares no access level: add option (access) = ACCESS_...;")


@pytest.mark.parametrize("method", METHODS, ids=_path)
def test_each_rpc_is_in_the_set_its_level_names(method: MethodDescriptor) -> None:
    level = dict(method.GetOptions().ListFields())[pb.access]
    path = _path(method)
    assert (path in COMPUTE_METHODS) == (level == pb.ACCESS_COMPUTE)
    assert (path in TENANTLESS_METHODS) == (level == pb.ACCESS_TENANTLESS)
    assert (path in ADMIN_ONLY_METHODS) == (level == pb.ACCESS_ADMIN_ONLY)
    assert (path in TENANT_METHODS) == (level != pb.ACCESS_ADMIN_ONLY)
