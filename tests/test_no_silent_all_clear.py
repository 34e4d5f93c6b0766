"""A typo in a lake path, or a day without data, never reads as an all-clear; odd events never fail a report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from report_fixtures import build_lake, day_at, event, iam_user

from trailsight.cli.main import run
from trailsight.report.daily import write_daily_report

DAY = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return build_lake(tmp_path, [event(day_at(DAY, 10), "ListBuckets", "s3.amazonaws.com", iam_user("alice"))])


@pytest.mark.parametrize("command", [
    ["report", "--date", "2024-05-01"],
    ["sql", "SELECT count(*) FROM cloudtrail"],
    ["export", "--out", "{out}"],
])
def test_missing_lake_is_an_error_naming_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  command: list[str]) -> None:
    missing = tmp_path / "lkae"
    args = [part.replace("{out}", str(tmp_path / "out")) for part in command]
    code = run([*args, "--lake", str(missing)] if command[0] != "report" else
               [*args, "--lake", str(missing), "--out", str(tmp_path / "reports")])
    error = capsys.readouterr().err.strip()
    assert code == 1
    assert error.startswith("Error: ") and str(missing) in error and "\n" not in error
    assert not (tmp_path / "out").exists()


def test_report_of_a_day_without_data_fails_saying_no_data(lake: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["report", "--lake", str(lake), "--date", "2024-05-02", "--out", str(tmp_path / "reports")])
    captured = capsys.readouterr()
    assert code != 0
    assert "no data" in captured.err
    assert "0 findings" not in captured.out


def test_report_of_a_day_with_data_succeeds(lake: Path, tmp_path: Path) -> None:
    assert run(["report", "--lake", str(lake), "--date", "2024-05-01", "--out", str(tmp_path / "reports")]) == 0


def test_events_without_source_or_name_do_not_fail_the_report(tmp_path: Path) -> None:
    nameless = event(day_at(DAY, 11), "GetObject", "s3.amazonaws.com", iam_user("bob"), errorCode="AccessDenied")
    del nameless["eventName"]
    sourceless = event(day_at(DAY, 12), "PutObject", "s3.amazonaws.com", iam_user("bob"), errorCode="AccessDenied")
    del sourceless["eventSource"]
    lake = build_lake(tmp_path, [event(day_at(DAY, 10), "ListBuckets", "s3.amazonaws.com", iam_user("alice")),
                                 nameless, sourceless])
    summary = write_daily_report(lake, DAY.date(), tmp_path / "reports")
    assert summary.events == 3
    assert summary.failed == 2
    assert {"top_callers", "failed_calls", "security"} <= set(summary.reports)
