"""Sigma rules (SigmaHQ format) converted through pySigma and run over the lake; bad rules are listed, not fatal."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from report_fixtures import build_lake, console_login, event, iam_user, root
from typer.testing import CliRunner

from trailsight.cli.main import app
from trailsight.query.athena import render
from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.report.daily import CSV_COLUMNS
from trailsight.report.sigma import convert_rules, rule_query, run_sigma_rules, sql_field

DAY = date(2024, 3, 10)
RULES = Path(__file__).parent / "fixtures" / "sigma"


def at(hour: int) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, tzinfo=UTC)


def _events() -> list[dict[str, Any]]:
    share = {"snapshotId": "snap-1", "attributeType": "CREATE_VOLUME_PERMISSION",
             "createVolumePermission": {"add": {"items": [{"group": "all"}]}}}
    private = {**share, "createVolumePermission": {"add": {"items": [{"userId": "111122223333"}]}}}
    return [
        event(at(1), "StopLogging", "cloudtrail.amazonaws.com", iam_user("mallory"), requestParameters={"name": "t"}),
        event(at(1), "DescribeTrails", "cloudtrail.amazonaws.com", iam_user("alice"), read_only=True),
        event(at(2), "ModifySnapshotAttribute", "ec2.amazonaws.com", iam_user("mallory"), requestParameters=share),
        event(at(2), "ModifySnapshotAttribute", "ec2.amazonaws.com", iam_user("bob"), requestParameters=private),
        event(at(2), "ModifySnapshotAttribute", "ec2.amazonaws.com", iam_user("eve"), requestParameters=share,
              error="UnauthorizedOperation"),
        console_login(at(3), root(), userAgent="Mozilla/5.0 (X11; Linux x86_64)"),
        console_login(at(3), root(), userAgent="aws-internal/3"),
    ]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lake(tmp_path_factory.mktemp("sigma"), _events())


def by_path(rules: list[Any]) -> dict[str, Any]:
    return {r.path: r for r in rules}


def test_rules_that_cannot_be_converted_are_listed_with_their_reason() -> None:
    rules = by_path(convert_rules(RULES))
    assert "not a Sigma rule" in rules["broken.yml"].error
    assert "has no column" in rules["unknown_field.yml"].error
    assert "not supported" in rules["fieldref_rule.yml"].error
    assert "only product aws, service cloudtrail" in rules["windows_rule.yml"].error
    assert all(rules[name].sql for name in ("cloudtrail_stop_logging.yml", "public_snapshot.yml", "root_console.yml"))


def test_sigma_field_names_map_to_columns_struct_members_and_json() -> None:
    assert sql_field("eventName") == "eventname"
    assert sql_field("userIdentity.sessionContext.sessionIssuer.userName") == (
        "useridentity.sessioncontext.sessionissuer.username")
    assert sql_field("requestParameters.bucketName") == "json_extract_scalar(requestparameters, '$.bucketName')"


def test_converted_rules_match_their_events_on_duckdb(lake: Path) -> None:
    con = DuckDBEngine(lake)
    try:
        rules = by_path(run_sigma_rules(con, convert_rules(RULES), DAY))
    finally:
        con.close()
    stop = rules["cloudtrail_stop_logging.yml"]
    assert stop.matches == 1 and stop.events[0]["eventname"] == "StopLogging"
    snapshot = rules["public_snapshot.yml"]
    assert snapshot.matches == 1 and snapshot.events[0]["principal"].endswith("user/mallory")
    console = rules["root_console.yml"]  # case-insensitive: consolelogin, MOZILLA/
    assert console.matches == 1


def test_converted_rules_render_for_athena_with_the_day_bound() -> None:
    for rule in convert_rules(RULES):
        if rule.sql is None:
            continue
        rendered = render(rule_query(rule.sql))
        assert rendered.parameter_names == ("day",)
        sqlglot.parse_one(rendered.sql, read="athena")


def test_detect_command_lists_skipped_rules_and_runs_the_rest(lake: Path, tmp_path: Path) -> None:
    report = tmp_path / "sigma.json"
    result = CliRunner().invoke(app, ["detect", "--lake", str(lake), "--date", str(DAY), "--sigma", str(RULES),
                                      "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "3 of 7 rule(s) ran, 3 matched" in result.output
    saved = {r["path"]: r for r in json.loads(report.read_text())}
    assert saved["unknown_field.yml"]["error"] and saved["cloudtrail_stop_logging.yml"]["matches"] == 1


def test_detect_command_on_a_missing_folder_is_a_one_line_error(lake: Path) -> None:
    from trailsight.cli.main import run

    assert run(["detect", "--lake", str(lake), "--date", str(DAY), "--sigma", "/nonexistent/rules"]) == 1


def test_daily_report_runs_sigma_rules_into_sigma_json(lake: Path, tmp_path: Path) -> None:
    from trailsight.report.daily import write_daily_report

    summary = write_daily_report(lake, DAY, tmp_path / "out", reports="security", sigma_rules=RULES)
    saved = {r["path"]: r for r in json.loads((tmp_path / "out" / "sigma.json").read_text())["rules"]}
    assert saved["public_snapshot.yml"]["matches"] == 1
    assert any("unknown_field.yml skipped" in w for w in summary.warnings)
    assert "sigma.csv" in summary.files
    header = (tmp_path / "out" / "sigma.csv").read_text().splitlines()[0].split(",")
    assert header == CSV_COLUMNS["sigma"]["table"]
