"""The compute tier: a real page server process, a real tenant (initdb) and PostgreSQL 15
on the FUSE shim. Needs root, /dev/fuse and fusermount3 (./dev installs fuse3).

Each module gets its own page server and tenant ``pg``, whose ``main`` holds pgbench's
tables (scale 1); tests fork branches of it, so they do not see each other's writes.
Computes reach it over its framed data plane on a unix socket, as ``strata up`` runs
them (rfcs/0020); tests/api/test_data_plane.py holds both transports to one behaviour.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.client import StrataClient
from compute.node import ComputeNode, ComputeSpec
from pageserver.remote import S3Storage
from strata.local.home import Home
from tests.compute.load import pg_tool
from tests.servers import PageServerProcess, free_port

TENANT = "pg"


def _compute_unavailable() -> str | None:
    if os.environ.get("STRATA_COMPUTE_TESTS") == "0":
        return "STRATA_COMPUTE_TESTS=0 turns the compute tier off"
    if os.geteuid() != 0:
        return "the compute tests run PostgreSQL as 'postgres' and mount FUSE: they need root"
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        return "FUSE is not available (/dev/fuse, fusermount3 from the fuse3 package)"
    if not os.path.exists("/usr/lib/postgresql/15/bin/postgres"):
        return "PostgreSQL 15 is not installed"
    return None


@pytest.fixture(scope="module")
def compute_host() -> None:
    """Skip unless this machine can run computes (root, FUSE, PostgreSQL 15)."""
    reason = _compute_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster(compute_host: None) -> Iterator[tuple[PageServerProcess, StrataClient]]:
    """A page server with tenant ``pg`` created by initdb; shared by a module's tests."""
    home = Path(tempfile.mkdtemp(prefix="strata-compute-"))
    os.chmod(home, 0o755)
    server = PageServerProcess(home, data_plane=True)
    server.start()
    client = StrataClient(f"127.0.0.1:{server.port}", server.admin()[0][1].split()[1],
                          timeout_s=120)
    try:
        client.create_tenant(TENANT)
        _pgbench_tables(server, home)
        yield server, client
    finally:
        client.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def _pgbench_tables(server: PageServerProcess, home: Path) -> None:
    node = ComputeNode(_spec(server, home / "init", "main"))
    try:
        node.start()
        pg_tool("pgbench", node.spec, "-i", "-s", "1", "-q", "postgres")
        node.stop()
    finally:
        node.kill()


def _spec(server: PageServerProcess, workdir: Path, branch: str,
          **settings: object) -> ComputeSpec:
    return ComputeSpec(f"127.0.0.1:{server.port}",
                       server.home / "state" / "auth" / "admin.token", TENANT, branch,
                       workdir, free_port(),
                       data_plane=f"unix:{server.data_socket}" if server.data_socket else "",
                       **settings)  # type: ignore[arg-type]


@pytest.fixture
def make_compute(cluster: tuple[PageServerProcess, StrataClient]
                 ) -> Iterator[Callable[..., ComputeNode]]:
    """Builds ComputeNodes on branches of the tenant; kills whatever is left at the end."""
    server, _ = cluster
    nodes: list[ComputeNode] = []
    tmp_path = Path(tempfile.mkdtemp(prefix="strata-nodes-"))  # pytest's tmp is 0700
    os.chmod(tmp_path, 0o755)

    def make(branch: str = "main", **settings: object) -> ComputeNode:
        node = ComputeNode(_spec(server, tmp_path / f"compute-{branch}-{len(nodes)}", branch,
                                 **settings))
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.kill()
    shutil.rmtree(tmp_path, ignore_errors=True)


def admin_client(server: PageServerProcess) -> StrataClient:
    """An admin client of ``server`` with a long deadline (calls wait out moves)."""
    return StrataClient(f"127.0.0.1:{server.port}", server.admin()[0][1].split()[1],
                        timeout_s=120)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where page servers of one test keep their objects: a directory, or a bucket of
    the session's moto server; one test's page servers share it."""
    if request.param == "local":
        return str(tmp_path / "objects")
    make: Callable[[str, str], S3Storage] = request.getfixturevalue("make_s3_storage")
    endpoint: str = request.getfixturevalue("moto_endpoint")
    bucket = f"strata-{request.node.originalname[:20].replace('_', '-')}-{uuid.uuid4().hex[:12]}"
    make(bucket, "").ensure_bucket()
    return f"s3://{bucket}/strata?endpoint={endpoint}"


REPORT_LINES = 25  # of each log's end in a failure report: CI output gets truncated
REPORT_COMPUTES = 3  # the computes last written to, whose logs a failure report shows
REPORT_ERRORS = 10  # error lines of each log, from anywhere in it, shown before its end
_ERROR_MARKERS = (" ERROR ", "ERROR:", "FATAL", "PANIC", "Traceback", "Error: ")


def log_report(log: Path) -> str:
    """What a failure report shows of ``log``: its last error lines, then its end."""
    lines = log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if any(marker in line for marker in _ERROR_MARKERS)]
    shown = []
    if errors:
        shown += ["errors:", *errors[-REPORT_ERRORS:], "end:"]
    return "\n".join(shown + lines[-REPORT_LINES:])


def report_logs(home: Path) -> tuple[list[Path], list[Path]]:
    """The logs of a Strata home a failure report shows, those likeliest to say why a
    test failed first: the computes' (mount daemon, PostgreSQL) last written to, then
    the daemons'; and the workdirs of the other computes, only named."""
    workdirs = sorted({log.parent for log in Home(home).computes_dir.glob("*/*/*.log")},
                      key=_last_written, reverse=True)
    shown = [log for workdir in workdirs[:REPORT_COMPUTES]
             for log in sorted(workdir.glob("*.log"))]
    return shown + sorted((home / "logs").glob("*.log")), workdirs[REPORT_COMPUTES:]


def _last_written(directory: Path) -> float:
    return max(log.stat().st_mtime for log in directory.glob("*.log"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used a Strata home gets its logs' errors and ends in its
    report, its computes' (mount daemon, PostgreSQL) first: in CI they are the only
    witness of why a proxy, a page server or a compute went away."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    run = getattr(item, "funcargs", {}).get("proxy")
    if not report.failed or run is None:
        return
    logs, others = report_logs(run.log.parent.parent)
    for log in logs:
        report.sections.append((f"{log}", log_report(log)))
    if others:
        report.sections.append(("logs of the other computes",
                                " ".join(str(workdir) for workdir in others)))
