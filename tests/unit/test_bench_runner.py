"""The benchmark runner keeps nothing from a failed suite and reports it as failed."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import run_suite
from bench.report import write_report


def test_a_failed_suite_reports_no_figures(tmp_path: Path) -> None:
    (tmp_path / "ghost.json").write_text('{"stale": true}')  # from an older run
    status = run_suite("ghost", "bench.no_such_suite", quick=True, results=tmp_path)
    assert status.startswith("failed")
    assert not list(tmp_path.glob(".ghost.running*"))
    report = write_report(tmp_path, {"ghost": status}, "a local directory").read_text()
    assert "| ghost | failed" in report and "no figures reported" in report
    assert "stale" not in report
