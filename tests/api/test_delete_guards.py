"""DeleteBranch over gRPC: main is refused whatever the flags or the token, and a dry run
reports what would go without deleting it."""

from __future__ import annotations

import grpc
import pytest

from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live

TIMEOUT = 10


def test_main_is_refused_for_every_caller_and_flag(live: Live) -> None:
    manage = live.manage
    manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True), metadata=live.admin,
                        timeout=TIMEOUT)
    manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="dev"), metadata=live.admin,
                        timeout=TIMEOUT)
    for metadata in (live.admin, live.metadata("t", auth.Scope.TENANT)):
        for dry_run in (False, True):
            request = pb.DeleteBranchRequest(tenant="t", name="main", cascade=True, force=True,
                                             dry_run=dry_run)
            with pytest.raises(grpc.RpcError) as err:
                manage.DeleteBranch(request, metadata=metadata, timeout=TIMEOUT)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "delete the tenant instead" in (err.value.details() or "")
    listed = manage.ListBranches(pb.ListBranchesRequest(tenant="t"), metadata=live.admin,
                                 timeout=TIMEOUT)
    assert [b.name for b in listed.branches] == ["dev", "main"]


def test_dry_run_reports_and_keeps_everything(live: Live) -> None:
    manage, admin = live.manage, live.admin
    manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True), metadata=admin,
                        timeout=TIMEOUT)
    for name, parent in (("a", "main"), ("b", "a")):
        manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name=name, parent=parent,
                                                   protected=name == "b"),
                            metadata=admin, timeout=TIMEOUT)
    manage.CreateCheckpoint(pb.CreateCheckpointRequest(tenant="t", branch="b", name="cp"),
                            metadata=admin, timeout=TIMEOUT)
    request = pb.DeleteBranchRequest(tenant="t", name="a", cascade=True, force=True)
    request.dry_run = True
    plan = manage.DeleteBranch(request, metadata=admin, timeout=TIMEOUT)
    assert (list(plan.deleted), list(plan.checkpoints)) == (["b", "a"], ["cp"])
    listed = manage.ListBranches(pb.ListBranchesRequest(tenant="t"), metadata=admin,
                                 timeout=TIMEOUT)
    assert [b.name for b in listed.branches] == ["a", "b", "main"]
    request.dry_run = False
    done = manage.DeleteBranch(request, metadata=admin, timeout=TIMEOUT)
    assert done == plan
    checkpoints = manage.ListCheckpoints(pb.ListCheckpointsRequest(tenant="t"), metadata=admin,
                                         timeout=TIMEOUT)
    assert not checkpoints.checkpoints
