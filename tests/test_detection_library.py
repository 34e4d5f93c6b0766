"""The detection library: every detection fires on its positive events and stays quiet on its near-misses.

The cases live in tests/fixtures/detection_cases.yaml, each in its own account, all in one lake, so one report run
answers every case; a detection without both kinds of case fails the suite.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from report_fixtures import assumed_role, build_lake, event, iam_user, root

from trailsight.errors import UsageError
from trailsight.query.athena import render
from trailsight.query.detection_library import load_library, parse_detection
from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.query.sqlfiles import load_sql
from trailsight.report.detections import Finding, run_detections
from trailsight.storage.store import Storage

DAY = date(2024, 3, 10)
CASES = yaml.safe_load((Path(__file__).parent / "fixtures" / "detection_cases.yaml").read_text())
CASE_KEYS = {"identity", "repeat", "error", "login", "eventSource", "eventName"}


def case_accounts() -> dict[tuple[str, str, int], str]:
    """Each (detection, positive|negative, index) case gets an account of its own."""
    keys = [(d, kind, i) for d in sorted(CASES) for kind in ("positive", "negative")
            for i in range(len(CASES[d].get(kind, [])))]
    return {key: str(300000000000 + n) for n, key in enumerate(keys)}


ACCOUNTS = case_accounts()


def fill(value: Any, n: int, account: str) -> Any:
    if isinstance(value, str):
        return value.replace("{n}", str(n)).replace("{half}", str(n // 2)).replace("{account}", account)
    if isinstance(value, dict):
        return {k: fill(v, n, account) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, n, account) for v in value]
    return value


def identity(kind: str, account: str) -> dict[str, Any]:
    if kind == "root":
        return root(account)
    if kind == "root-invoked":
        return root(account, invoked_by="signin.amazonaws.com")
    if kind == "root-autoscaling":
        return root(account, invoked_by="autoscaling.amazonaws.com")
    if kind == "instance":
        return assumed_role("web-instance-role", "i-0123456789abcdef0", account)
    if kind == "service-linked":
        identity = assumed_role("AWSServiceRoleForConfig", "config-session", account)
        identity["sessionContext"]["sessionIssuer"]["arn"] = (
            f"arn:aws:iam::{account}:role/aws-service-role/config.amazonaws.com/AWSServiceRoleForConfig")
        return identity
    return iam_user(f"user-{account}", account)


def login(when: datetime, kind: str, who: dict[str, Any], account: str, **fields: Any) -> dict[str, Any]:
    record = event(when, "ConsoleLogin", "signin.amazonaws.com", who, account=account, eventType="AwsConsoleSignIn",
                   additionalEventData={"MFAUsed": "No"},
                   responseElements={"ConsoleLogin": "Success" if kind == "success" else "Failure"}, **fields)
    if kind == "failure":
        record["errorMessage"] = "Failed authentication"
    return record


def case_events(case: dict[str, Any], account: str) -> list[dict[str, Any]]:
    events = []
    for n in range(case.get("repeat", 1)):
        fields = fill({k: v for k, v in case.items() if k not in CASE_KEYS}, n, account)
        when = datetime(DAY.year, DAY.month, DAY.day, 9, tzinfo=UTC) + timedelta(minutes=n)
        who = identity(case.get("identity", "user"), account)
        if case.get("identity") == "instance-pair":  # two instances of one role, each on its own address
            who = assumed_role("web-instance-role", f"i-0123456789abcdef{n % 2}", account)
        if "login" in case:
            events.append(login(when, case["login"], who, account, **fields))
            continue
        events.append(event(when, case["eventName"], case["eventSource"], who, account=account,
                            error=case.get("error"), **fields))
    return events


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[Finding]:
    events = [e for (detection, kind, i), account in ACCOUNTS.items()
              for e in case_events(CASES[detection][kind][i], account)]
    lake = Storage(build_lake(tmp_path_factory.mktemp("library"), events))
    con = DuckDBEngine(lake)
    try:
        return run_detections(con, DAY).findings
    finally:
        con.close()


def fired_accounts(findings: list[Finding], detection: str) -> set[str]:
    return {f.account for f in findings if f.control == detection}


def test_every_detection_has_positive_and_negative_cases() -> None:
    ids = {d.id for d in load_library()}
    assert ids == set(CASES)
    for detection in ids:
        assert CASES[detection].get("positive") and CASES[detection].get("negative"), detection


def test_library_covers_the_techniques_a_red_team_uses() -> None:
    library = load_library()
    assert len(library) >= 30
    assert len({d.technique for d in library}) >= 20
    assert {d.tactic for d in library} >= {"persistence", "credential-access", "defense-evasion", "exfiltration",
                                            "execution", "lateral-movement", "impact", "privilege-escalation"}


@pytest.mark.parametrize("detection", sorted(CASES))
def test_detection_fires_on_positive_events_and_not_on_near_misses(findings: list[Finding], detection: str) -> None:
    fired = fired_accounts(findings, detection)
    positives = {ACCOUNTS[(detection, "positive", i)] for i in range(len(CASES[detection]["positive"]))}
    negatives = {ACCOUNTS[(detection, "negative", i)] for i in range(len(CASES[detection]["negative"]))}
    assert positives <= fired, f"{detection} missed positive cases {sorted(positives - fired)}"
    assert not fired & negatives, f"{detection} fired on negative cases {sorted(fired & negatives)}"


def test_library_findings_carry_technique_events_and_reason(findings: list[Finding]) -> None:
    library = {d.id: d for d in load_library()}
    for finding in (f for f in findings if f.control in library):
        assert finding.technique == library[finding.control].technique
        assert finding.events and finding.count >= len(finding.events)
        assert "Rule: library detection" in finding.why


def test_threshold_detection_reports_what_it_counted(findings: list[Finding]) -> None:
    by_id = {f.account: f for f in findings if f.control == "secrets-bulk-read"}
    one_by_one = by_id[ACCOUNTS[("secrets-bulk-read", "positive", 0)]]
    assert one_by_one.details["distinct_count"] == 12 and "prod/db-0" in one_by_one.details["distinct"]
    batched = by_id[ACCOUNTS[("secrets-bulk-read", "positive", 1)]]
    assert batched.details["distinct_count"] == 12 and "prod/1-6" in batched.details["distinct"]


def test_library_sql_renders_for_athena_without_parameters_inside_the_derived_table() -> None:
    rendered = render(load_sql("detection_events_day").sql)
    assert rendered.parameter_names == ("day",)
    assert "WHERE event_date = ? ORDER BY" in rendered.sql and "detection_events AS (" in rendered.sql


@pytest.mark.parametrize(("change", "message"), [
    ({"severity": "urgent"}, "severity must be one of"),
    ({"technique": "lateral"}, "ATT&CK id"),
    ({"match": "eventname = ?"}, "must not bind parameters"),
    ({"id": "other"}, "id must be the file name"),
    ({"threshold": {"min_calls": 3}}, "unknown threshold keys"),
])
def test_malformed_detection_file_is_a_clear_error(change: dict[str, Any], message: str) -> None:
    good = {"id": "x-y", "title": "t", "technique": "T1098", "tactic": "persistence", "severity": "high",
            "rationale": "r", "references": ["https://attack.mitre.org/techniques/T1098/"], "match": "true"}
    parse_detection("x-y", good)
    with pytest.raises(UsageError, match=message):
        parse_detection("x-y", {**good, **change})


def test_corpus_events_written_by_others_fire_only_what_they_show(corpus: Path, tmp_path: Path) -> None:
    """Published samples: zalando's Lambda code update and AWS's CreateUser example fire; the Auto Scaling
    events made for root (invokedBy, from the service's address) and CloudFormation creating roles do not."""
    from trailsight.lake.ingest import ingest
    from trailsight.lake.layout import lake_partitions

    for source in ("awsdocs-examples", "zalando-fullstop-test-resources"):
        ingest(corpus / source, tmp_path / "lake", workers=1)
    lake = Storage(tmp_path / "lake")
    fired: set[str] = set()
    for day in sorted({d for _, d, _ in lake_partitions(lake, "cloudtrail")}):
        con = DuckDBEngine(lake)
        try:
            fired |= {f.control for f in run_detections(con, day).findings}
        finally:
            con.close()
    library = {d.id for d in load_library()}
    assert fired & library == {"lambda-code-overwritten", "iam-user-created"}, fired
