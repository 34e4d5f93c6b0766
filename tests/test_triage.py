"""New versus routine, magnitude against the principal's own history, and suppressions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import build_lake, console_login, event, iam_user

from trailsight.errors import UsageError
from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.report.detections import DetectionConfig, DetectionResult, run_detections
from trailsight.report.triage import load_suppressions
from trailsight.storage.store import Storage

DAY = date(2024, 3, 10)
IAM = "iam.amazonaws.com"
TRUST = {"roleName": "app", "policyDocument": "{}"}


def at(days_before: int, hour: int = 9, minute: int = 0) -> datetime:
    moment = datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=UTC) - timedelta(days=days_before)
    return moment


def _events() -> list[dict[str, Any]]:
    e = []
    # routine: the pipeline changes a trust policy every few days; new: a person does it for the first time
    for before in (0, 3, 6):
        e.append(event(at(before), "UpdateAssumeRolePolicy", IAM, iam_user("pipeline"), requestParameters=TRUST))
    e.append(event(at(0), "UpdateAssumeRolePolicy", IAM, iam_user("mallory"), requestParameters=TRUST))
    # older than the week: counts as new again
    e.append(event(at(9), "UpdateAssumeRolePolicy", IAM, iam_user("returning"), requestParameters=TRUST))
    e.append(event(at(0), "UpdateAssumeRolePolicy", IAM, iam_user("returning"), requestParameters=TRUST))
    # magnitude: one failed sign-in a day is usual for "clumsy"; 300 in an hour is not
    for before in range(1, 8):
        e.append(console_login(at(before), iam_user("clumsy"), success=False))
    e += [console_login(at(0, 14, i % 60), iam_user("clumsy"), success=False) for i in range(300)]
    e.append(console_login(at(0), iam_user("once"), success=False))
    return e


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    return Storage(build_lake(tmp_path_factory.mktemp("triage"), _events()))


def detect(lake: Storage, **config: Any) -> DetectionResult:
    con = DuckDBEngine(lake)
    try:
        return run_detections(con, DAY, DetectionConfig(**config))
    finally:
        con.close()


@pytest.fixture(scope="module")
def result(lake: Storage) -> DetectionResult:
    return detect(lake)


def finding(result: DetectionResult, control: str, user: str) -> Any:
    (found,) = [f for f in result.findings if f.control == control and f.principal and f.principal.endswith(user)]
    return found


def test_finding_is_new_only_when_it_did_not_fire_for_the_principal_in_the_week_before(
        result: DetectionResult) -> None:
    routine = finding(result, "iam-role-trust-policy-updated", "/pipeline")
    assert routine.new is False and routine.base_severity == "medium" and routine.severity == "low"
    assert finding(result, "iam-role-trust-policy-updated", "/mallory").new is True
    assert finding(result, "iam-role-trust-policy-updated", "/returning").new is True


def test_severity_rises_with_magnitude_against_the_principals_own_history(result: DetectionResult) -> None:
    burst = finding(result, "cis-4.6", "/clumsy")
    assert burst.count == 300 and burst.new is False
    assert burst.magnitude["usual_per_day"] == 1.0 and burst.magnitude["ratio"] == 300.0
    assert burst.base_severity == "medium" and burst.severity == "critical"
    single = finding(result, "cis-4.6", "/once")
    assert single.severity == "medium" and single.new is True


def test_report_counts_new_findings_by_severity(result: DetectionResult) -> None:
    data = result.as_dict()
    assert data["new_by_severity"]["critical"] == sum(1 for f in data["findings"]
                                                      if f["new"] and f["severity"] == "critical")
    assert all("new" in row for row in data["table"])


def test_within_a_severity_new_findings_come_first(result: DetectionResult) -> None:
    medium = [f for f in result.findings if f.severity == "medium"]
    assert [f.new for f in medium] == sorted((f.new for f in medium), reverse=True)


def test_suppression_hides_matching_findings_with_reason_and_ignores_expired_entries(
        lake: Storage, tmp_path: Path) -> None:
    rules = tmp_path / "suppress.yaml"
    rules.write_text(
        "- {detection: iam-role-trust-policy-*, principal: '*:user/pipeline', account: '*',"
        " reason: deploy pipeline, expires: 2024-12-31}\n"
        "- {detection: cis-4.6, principal: '*', reason: old, expires: 2024-01-01}\n")
    result = detect(lake, suppression_file=str(rules))
    assert [(s["control"], s["reason"]) for s in result.suppressed] == [("iam-role-trust-policy-updated",
                                                                           "deploy pipeline")]
    assert not [f for f in result.findings if f.principal and f.principal.endswith("/pipeline")
                and f.control == "iam-role-trust-policy-updated"]
    assert any(f.control == "cis-4.6" for f in result.findings)
    assert any("expired on 2024-01-01" in note for note in result.notes)


@pytest.mark.parametrize(("text", "message"), [
    ("- {detection: x, principal: '*', reason: r}\n", "missing expires"),
    ("- {detection: x, principal: '*', reason: r, expires: soon}\n", "YYYY-MM-DD"),
    ("detection: x\n", "expected a list"),
    ("- [unclosed\n", "not valid YAML"),
])
def test_bad_suppression_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_suppressions(path)


def _finding(control: str, severity: str, new: bool, ratio: float) -> dict[str, Any]:
    return {"control": control, "title": control, "severity": severity, "account": "111122223333",
            "principal": "arn:aws:iam::111122223333:user/x", "count": 3, "why": "because", "events": [],
            "new": new, "magnitude": {"ratio": ratio, "usual_per_day": 1.0}, "cis": None, "technique": "T1098",
            "first_seen": None, "last_seen": None}


def test_alerts_lead_with_new_findings_then_severity_and_magnitude() -> None:
    from trailsight.report.alerts import alerts_from_findings

    findings = [_finding("routine-critical", "critical", False, 1), _finding("new-high", "high", True, 1),
                _finding("new-critical", "critical", True, 1), _finding("routine-high-big", "high", False, 50)]
    alerts = alerts_from_findings(DAY, findings)
    assert [a.attributes["control"] for a in alerts] == ["new-critical", "new-high", "routine-critical",
                                                         "routine-high-big"]
    assert alerts[0].subject.startswith("[trailsight] NEW CRITICAL") and alerts[0].attributes["new"] == "true"
    assert "50 times the principal's usual" in alerts[3].message


def test_html_page_leads_with_new_and_high_magnitude_findings() -> None:
    from trailsight.report.html import findings_section

    findings = [_finding("routine-high", "high", False, 1), _finding("new-high", "high", True, 1),
                _finding("routine-medium-big", "medium", False, 40), _finding("new-low", "low", True, 1)]
    page = findings_section({"by_severity": {"critical": 0, "high": 2, "medium": 1, "low": 1},
                             "new_by_severity": {"critical": 0, "high": 1, "medium": 0, "low": 1},
                             "notes": [], "findings": findings, "suppressed": []})
    attention, rest = page.split("Needs attention: 2 new or far above usual")[1].split('<h3><span class="badge"', 1)
    assert "new-high" in attention and "routine-medium-big" in attention and "40x the usual" in attention
    assert "routine-high" not in attention and "new-low" not in attention and "routine-high" in rest


def test_report_command_applies_the_suppression_file(lake: Storage, tmp_path: Path) -> None:
    import orjson
    from typer.testing import CliRunner

    from trailsight.cli.main import app

    rules = tmp_path / "suppress.yaml"
    rules.write_text("- {detection: cis-4.6, principal: '*:user/clumsy', reason: training, expires: 2099-01-01}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", "--lake", str(lake.root), "--date", str(DAY), "--out", str(out),
                                      "--reports", "security", "--suppress", str(rules)])
    assert result.exit_code == 0, result.output
    security = orjson.loads((out / "security.json").read_bytes())
    assert [s["reason"] for s in security["suppressed"]] == ["training"]
    assert all("new" in f for f in security["findings"]) and "new_by_severity" in security
