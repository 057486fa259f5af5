"""The benchmark runner keeps nothing from a failed suite and reports it as failed; the
report can be made again from a run's JSON."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.__main__ import run_suite
from bench.report import main as report_main
from bench.report import write_report


def test_a_failed_suite_reports_no_figures(tmp_path: Path) -> None:
    (tmp_path / "ghost.json").write_text('{"stale": true}')  # from an older run
    status = run_suite("ghost", "bench.no_such_suite", quick=True, results=tmp_path)
    assert status.startswith("failed")
    assert not list(tmp_path.glob(".ghost.running*"))
    report = write_report(tmp_path, {"ghost": status}, "a local directory").read_text()
    assert "| ghost | failed" in report and "no figures reported" in report
    assert "stale" not in report


MERGED_RUN = Path(__file__).resolve().parents[2] / "bench" / "results" / "merged-1090b4c"


def test_the_report_is_made_again_from_a_runs_json(tmp_path: Path) -> None:
    """``python -m bench.report`` rebuilds REPORT.md and every plot, the data path's new
    figures included, from the JSON a full run left (no suite is run)."""
    results = tmp_path / "results"
    shutil.copytree(MERGED_RUN, results)
    for made in ("REPORT.md", "targets.png", "cold_scan.png", "commit_cost.png"):
        (results / made).unlink(missing_ok=True)
    assert report_main(["--results", str(results)]) == 0
    report = (results / "REPORT.md").read_text()
    for image in ("targets.png", "compute_tps.png", "cold_scan.png", "commit.png",
                  "commit_cost.png"):
        assert f"]({image})" in report
        assert (results / image).read_bytes().startswith(b"\x89PNG")
    assert "CPU per commit, mount daemon + page server" in report


def test_the_report_without_a_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    assert report_main(["--results", str(tmp_path)]) == 2
    assert "no usable run.json" in capsys.readouterr().err
