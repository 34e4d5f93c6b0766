"""write_daily_report: the files a scheduled run leaves for people and for other tools."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from report_fixtures import build_lake, report_lake_events

from trailsight.errors import UsageError
from trailsight.report.daily import CSV_COLUMNS, csv_text, select_reports, write_daily_report

DAY = date(2024, 3, 10)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lake(tmp_path_factory.mktemp("write"), report_lake_events(datetime(2024, 3, 10, tzinfo=UTC)))


def test_daily_report_writes_json_csv_insights_markdown_and_html(lake: Path, tmp_path: Path) -> None:
    summary = write_daily_report(lake, DAY, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(summary.files)
    for name in ("summary", "top_callers", "failed_calls", "spikes", "security"):
        data = json.loads((out / f"{name}.json").read_text())
        assert (data["report"], data["day"]) == (name, "2024-03-10")
        assert (out / f"{name}.csv").exists()
    assert {"top_callers.apis.csv", "failed_calls.new_kinds.csv"} <= set(summary.files)
    records = json.loads((out / "insights.json").read_text())["Records"]
    assert [r["insightDetails"]["state"] for r in records] == ["Start", "End"]
    assert summary.events == 48 + 180 + 1 + 3 + 1  # the day: background, spike, StopLogging, denials, sign-in
    # Critical: StopLogging, and the burst of 180 RunInstances by a principal that launched none before (180x).
    assert (summary.spikes, summary.findings["critical"], summary.findings["high"]) == (1, 2, 0)
    assert set(summary.seconds) == {"summary", "top_callers", "failed_calls", "spikes", "security"}
    assert "# CloudTrail daily report 2024-03-10" in (out / "report.md").read_text()
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_csv_files_have_a_header_and_one_row_per_item(lake: Path, tmp_path: Path) -> None:
    write_daily_report(lake, DAY, tmp_path)
    rows = list(csv.DictReader((tmp_path / "spikes.csv").open()))
    assert len(rows) == 1 and rows[0]["eventname"] == "RunInstances" and rows[0]["start"] == "2024-03-10T10:00:00Z"
    hours = list(csv.DictReader((tmp_path / "summary.calls_per_hour.csv").open()))
    assert [int(h["hour"]) for h in hours] == list(range(24))
    (headline,) = csv.DictReader((tmp_path / "summary.csv").open())
    assert int(headline["events"]) == 48 + 180 + 1 + 3 + 1
    callers = list(csv.DictReader((tmp_path / "top_callers.csv").open()))
    assert callers[0]["region_list"] == "us-east-1"


def test_every_csv_has_the_declared_columns(lake: Path, tmp_path: Path) -> None:
    write_daily_report(lake, DAY, tmp_path, source=lake)
    for report, tables in CSV_COLUMNS.items():
        if report == "sigma":
            continue  # written only when Sigma rules are given: tests/test_sigma.py checks its columns
        for index, (table, columns) in enumerate(tables.items()):
            name = f"{report}.csv" if index == 0 else f"{report}.{table}.csv"
            assert next(csv.reader((tmp_path / name).open())) == columns, name


def test_an_empty_table_keeps_its_header(lake: Path, tmp_path: Path) -> None:
    write_daily_report(lake, "2024-04-01", tmp_path, source=lake)
    for name in ("failed_calls.new_kinds.csv", "integrity.csv", "security.csv", "spikes.csv"):
        lines = (tmp_path / name).read_text().splitlines()
        assert len(lines) == 1 and lines[0].count(",") >= 2, name
    assert "null" not in (tmp_path / "spikes.csv").read_text()


def test_spike_rows_without_an_error_code_leave_it_empty(lake: Path, tmp_path: Path) -> None:
    write_daily_report(lake, DAY, tmp_path, reports="spikes")
    (row,) = csv.DictReader((tmp_path / "spikes.csv").open())
    assert row["top_error_code"] == "" and row["errorcode"] == ""


def test_markdown_shows_rates_as_the_page_does(lake: Path, tmp_path: Path) -> None:
    write_daily_report(lake, DAY, tmp_path)
    rates = {row["error_rate"] for row in csv.DictReader((tmp_path / "top_callers.csv").open())}
    markdown = (tmp_path / "report.md").read_text()
    shown = [r for r in rates if float(r) > 0]
    assert shown and all(f"{100 * float(r):.1f}%" in markdown for r in shown)
    assert not any(f"| {r} |" in markdown for r in shown)


def test_lists_in_csv_cells_are_joined(lake: Path) -> None:
    text = csv_text([{"a": ["x", "y"], "b": None, "c": datetime(2024, 1, 1, tzinfo=UTC)}])
    assert text.splitlines() == ["a,b,c", "x; y,,2024-01-01T00:00:00Z"]


def test_a_subset_of_reports_still_has_the_summary(lake: Path, tmp_path: Path) -> None:
    summary = write_daily_report(lake, DAY, tmp_path, reports="spikes")
    assert summary.reports == ["summary", "spikes"]
    assert not (tmp_path / "security.json").exists()
    assert (tmp_path / "insights.json").exists() and (tmp_path / "report.html").exists()


def test_unknown_report_name_is_refused_with_a_suggestion() -> None:
    with pytest.raises(UsageError, match="Did you mean 'spikes'"):
        select_reports("spike")
    assert select_reports(["security", "top_callers"]) == ["summary", "top_callers", "security"]


def test_a_day_missing_from_the_lake_is_reported_not_hidden(lake: Path, tmp_path: Path) -> None:
    summary = write_daily_report(lake, "2024-04-01", tmp_path, reports=["summary"])
    assert summary.events == 0
    assert any("no events dated 2024-04-01" in w for w in summary.warnings)


def test_a_bad_date_is_a_usage_error(lake: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="YYYY-MM-DD"):
        write_daily_report(lake, "10/03/2024", tmp_path)


def test_reports_are_written_to_s3_and_the_page_opens_from_a_presigned_url(lake: Path, s3_bucket: str) -> None:
    import urllib.request

    from trailsight.storage.store import Storage

    target = Storage(f"{s3_bucket}/reports/2024-03-10")
    summary = write_daily_report(lake, DAY, target)
    assert summary.out_dir == target.url
    assert sorted(o.key for o in target.list_files()) == sorted(summary.files)
    url = target.browser_url("report.html", content_type="text/html; charset=utf-8")
    assert url.startswith("http") and "Signature" in url
    with urllib.request.urlopen(url) as response:
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.read().decode().startswith("<!DOCTYPE html>")
