"""The process supervisor with real tiny children (``python -c``) and the file lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import supervisor
from common.processes import process_alive

# Writes a ready file naming its pid, then waits to be signalled.
_SERVE = ("import json, os, sys, time; print('starting', flush=True); "
          "open(sys.argv[1], 'w').write(json.dumps({'pid': os.getpid()})); time.sleep(60)")
_FAIL = "import sys; print('cannot bind: address in use', flush=True); sys.exit(3)"
_IGNORE_TERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "open(sys.argv[1], 'w').write('ignoring'); time.sleep(60)")
_MARKER = b"supervisor-test-child"


@pytest.fixture
def children() -> Iterator[list[supervisor.Child]]:
    """Children a test started; killed at the end whatever happened."""
    started: list[supervisor.Child] = []
    yield started
    for child in started:
        if child.process is not None and child.process.poll() is None:
            child.process.kill()
            child.process.wait()


def _spawn(tmp_path: Path, children: list[supervisor.Child], code: str,
           *args: str) -> supervisor.Child:
    # The marker rides along as an unused argument, so process_alive can recognise it.
    child = supervisor.spawn([sys.executable, "-c", code, *args, _MARKER.decode()],
                             marker=_MARKER, log_file=tmp_path / "logs" / "child.log",
                             cwd=tmp_path, pid_file=tmp_path / "run" / "child.pid",
                             label="test")
    children.append(child)
    return child


def test_ready_via_a_file_naming_the_pid(tmp_path: Path,
                                         children: list[supervisor.Child]) -> None:
    ready = tmp_path / "ready.json"
    child = _spawn(tmp_path, children, _SERVE, str(ready))
    supervisor.wait_ready(child, lambda: supervisor.names_pid(ready, child.pid), 10)
    assert supervisor.read_pid(tmp_path / "run" / "child.pid") == child.pid
    assert supervisor.ready_info(ready) == {"pid": child.pid}
    assert child.alive() and child.returncode is None
    header, *rest = (tmp_path / "logs" / "child.log").read_text().splitlines()
    assert header.startswith("--- ") and " test: " in header and "-c" in header
    assert "starting" in rest


def test_the_child_is_detached_with_this_checkout_importable(
        tmp_path: Path, children: list[supervisor.Child]) -> None:
    code = ("import os, sys, common; print(os.getsid(0) == os.getpid(), "
            "sys.stdin.read() == '', common.__file__, flush=True)")
    child = _spawn(tmp_path, children, code)
    assert supervisor.wait_exit(child, 10)
    last = child.log_tail(1)[0].split()
    assert last[:2] == ["True", "True"]
    assert Path(last[2]).is_relative_to(supervisor.CODE_ROOT)


def test_an_early_exit_is_reported_with_its_status_and_log_tail(
        tmp_path: Path, children: list[supervisor.Child]) -> None:
    child = _spawn(tmp_path, children, _FAIL)
    with pytest.raises(supervisor.ExitedEarly) as caught:
        supervisor.wait_ready(child, lambda: False, 10, what="the thing")
    assert caught.value.returncode == 3
    assert caught.value.message == (f"the thing exited with status 3 while starting; "
                                    f"see {tmp_path / 'logs' / 'child.log'}")
    assert caught.value.log_tail[-1] == "cannot bind: address in use"


def test_not_ready_in_time(tmp_path: Path, children: list[supervisor.Child]) -> None:
    child = _spawn(tmp_path, children, _SERVE, str(tmp_path / "ready.json"))
    with pytest.raises(supervisor.NotReady) as caught:
        supervisor.wait_ready(child, lambda: False, 0.3)
    assert caught.value.timeout_s == 0.3
    assert f"(pid {child.pid}) is not ready after 0.3 s" in caught.value.message


def test_graceful_stop(tmp_path: Path, children: list[supervisor.Child]) -> None:
    ready = tmp_path / "ready.json"
    child = _spawn(tmp_path, children, _SERVE, str(ready))
    supervisor.wait_ready(child, lambda: supervisor.names_pid(ready, child.pid), 10)
    assert supervisor.stop(child, 10) is supervisor.Stopped.EXITED
    assert child.returncode == -signal.SIGTERM
    assert supervisor.stop(child, 10) is supervisor.Stopped.NOT_RUNNING


def test_a_process_found_by_pid_is_stopped_too(tmp_path: Path,
                                               children: list[supervisor.Child]) -> None:
    ready = tmp_path / "ready.json"
    spawned = _spawn(tmp_path, children, _SERVE, str(ready))
    supervisor.wait_ready(spawned, lambda: supervisor.names_pid(ready, spawned.pid), 10)
    found = supervisor.Child(spawned.pid, _MARKER, spawned.log_file)  # no Popen: by marker
    assert found.alive()
    assert supervisor.stop(found, 10) is supervisor.Stopped.EXITED
    assert spawned.process is not None and spawned.process.wait(5) == -signal.SIGTERM


def test_stop_escalates_to_sigkill(tmp_path: Path, children: list[supervisor.Child]) -> None:
    ready = tmp_path / "ignoring"
    child = _spawn(tmp_path, children, _IGNORE_TERM, str(ready))
    supervisor.wait_ready(child, ready.exists, 10)
    began = time.monotonic()
    assert supervisor.stop(child, 0.5) is supervisor.Stopped.KILLED
    assert time.monotonic() - began >= 0.5
    assert child.returncode == -signal.SIGKILL


def test_a_reused_or_stale_pid_is_never_signalled(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # A pid file naming a process that is not ours (its command line lacks the marker).
        reused = supervisor.Child(other.pid, _MARKER, tmp_path / "child.log")
        assert not reused.alive()
        assert supervisor.stop(reused, 0.1) is supervisor.Stopped.NOT_RUNNING
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
    stale = supervisor.Child(other.pid, b"", tmp_path / "child.log")  # reaped: gone
    assert supervisor.stop(stale, 0.1) is supervisor.Stopped.NOT_RUNNING


def test_read_pid_of_a_missing_or_garbled_file(tmp_path: Path) -> None:
    assert supervisor.read_pid(tmp_path / "absent.pid") is None
    (tmp_path / "garbled.pid").write_text("not a pid\n")
    assert supervisor.read_pid(tmp_path / "garbled.pid") is None
    (tmp_path / "torn.json").write_text('{"pid": 1')
    assert supervisor.ready_info(tmp_path / "torn.json") is None
    assert not supervisor.names_pid(tmp_path / "torn.json", 1)


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert supervisor.log_tail(log) == []
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    assert supervisor.log_tail(log, 3) == ["line 97", "line 98", "line 99"]


def test_file_lock_excludes_other_processes(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "x.lock"  # neither the file nor its directory exists yet
    holder = ("import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
              "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free', flush=True)")
    with supervisor.file_lock(lock):
        assert lock.exists()
        tried = subprocess.run([sys.executable, "-c", holder, str(lock)],
                               capture_output=True, text=True, check=False)
        assert tried.returncode != 0 and "BlockingIOError" in tried.stderr
    tried = subprocess.run([sys.executable, "-c", holder, str(lock)],
                           capture_output=True, text=True, check=False)
    assert tried.stdout == "free\n"


def test_file_lock_waits_for_the_holder(tmp_path: Path) -> None:
    lock, releasing = tmp_path / "x.lock", tmp_path / "releasing"
    hold = ("import sys, time; from pathlib import Path; from common import supervisor\n"
            "with supervisor.file_lock(Path(sys.argv[1])):\n"
            "    print('held', flush=True); time.sleep(0.5); Path(sys.argv[2]).touch()")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(lock), str(releasing)],
                              stdout=subprocess.PIPE, text=True, cwd=supervisor.CODE_ROOT)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with supervisor.file_lock(lock):
            # the holder's last act under the lock is done: we got it after it let go
            assert releasing.exists()
            assert holder.wait(30) == 0
    finally:
        holder.kill()
        holder.wait()


def test_a_process_exiting_while_its_proc_files_are_read_is_not_alive(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading /proc/PID/cmdline of a process that is exiting fails with ESRCH; that is
    an answer (not alive), not an error for whoever asked (a CLI stopping a compute)."""
    real_read_bytes = Path.read_bytes

    def exiting(path: Path) -> bytes:
        if path.name == "cmdline":
            raise ProcessLookupError(3, "No such process")
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", exiting)
    assert not process_alive(os.getpid(), b"")


@pytest.mark.skipif(os.geteuid() != 0, reason="running a child as another user needs root")
def test_a_child_runs_as_the_user_given_with_its_own_pid(
        tmp_path: Path, children: list[supervisor.Child]) -> None:
    """The identity changes in the child's own process (no helper process in between):
    the pid recorded is the program's, which then runs with that uid, gid and no other
    groups."""
    os.chmod(tmp_path, 0o755)
    child = supervisor.spawn(["/bin/sh", "-c", 'echo "$$ $(id -u) $(id -g) $(id -G)"'],
                             marker=b"sh", log_file=tmp_path / "child.log", cwd=tmp_path,
                             user=(65534, 65534))
    children.append(child)
    assert supervisor.wait_exit(child, 10)
    assert child.log_tail(1)[0].split() == [str(child.pid), "65534", "65534", "65534"]
