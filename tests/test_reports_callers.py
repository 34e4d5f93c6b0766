"""Summary, top callers and failed calls, proven on a small lake whose answers are counted by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from report_fixtures import (
    ACCOUNT,
    assumed_role,
    build_lake,
    console_login,
    event,
    iam_user,
    root,
    service,
)

from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.report.daily import failed_calls_report, summary_report, top_callers_report

DAY = date(2024, 3, 10)
OTHER_ACCOUNT = "999988887777"


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def _events() -> list[dict]:
    alice = iam_user("alice")
    deploy_1 = assumed_role("deploy", "build-1")
    deploy_2 = assumed_role("deploy", "build-2")
    saml = {"type": "SAMLUser", "principalId": "provider:erin@example.com", "userName": "erin@example.com"}
    web = {"type": "WebIdentityUser", "principalId": "oidc:sub", "userName": "system:serviceaccount:app:api"}
    idc = {"type": "IdentityCenterUser", "accountId": ACCOUNT,
           "onBehalfOf": {"userId": "user-42", "identityStoreArn": "arn:aws:identitystore::1:identitystore/d-1"}}
    other = {"type": "AWSAccount", "principalId": "AROAX:vendor", "accountId": OTHER_ACCOUNT}
    events = [
        # alice: 3 calls, 2 regions, 2 source IPs, one AccessDenied
        event(at(9), "DescribeInstances", "ec2.amazonaws.com", alice, read_only=True, sourceIPAddress="198.51.100.1"),
        event(at(9, 5), "RunInstances", "ec2.amazonaws.com", alice, region="eu-west-1",
              sourceIPAddress="198.51.100.2"),
        event(at(10), "GetObject", "s3.amazonaws.com", alice, read_only=True, error="AccessDenied",
              sourceIPAddress="198.51.100.1"),
        # the deploy role through two sessions: 4 calls, one throttled, one not found
        event(at(11), "CreateStack", "cloudformation.amazonaws.com", deploy_1),
        event(at(11, 1), "DescribeStacks", "cloudformation.amazonaws.com", deploy_1, read_only=True,
              error="Throttling"),
        event(at(12), "GetParameter", "ssm.amazonaws.com", deploy_2, read_only=True, error="ParameterNotFound"),
        event(at(12, 1), "CreateStack", "cloudformation.amazonaws.com", deploy_2),
        # root, an AWS service, federated identities and another account
        event(at(13), "GetAccountSummary", "iam.amazonaws.com", root(), read_only=True),
        event(at(14), "AssumeRole", "sts.amazonaws.com", service("ec2.amazonaws.com"), read_only=True,
              sourceIPAddress="ec2.amazonaws.com"),
        event(at(14, 1), "AssumeRole", "sts.amazonaws.com", service("ec2.amazonaws.com"), read_only=True,
              sourceIPAddress="ec2.amazonaws.com"),
        event(at(15), "ListBuckets", "s3.amazonaws.com", saml, read_only=True),
        event(at(15), "GetObject", "s3.amazonaws.com", web, read_only=True),
        event(at(16), "ListAccounts", "sso.amazonaws.com", idc, read_only=True),
        event(at(17), "GetObject", "s3.amazonaws.com", other, read_only=True, error="AccessDenied"),
        # a failed console sign-in carries a message and no error code
        console_login(at(18), iam_user("mallory"), success=False),
        # the day before: alice was already denied on GetObject, never on RunInstances
        event(at(9, day=DAY - timedelta(days=1)), "GetObject", "s3.amazonaws.com", alice, read_only=True,
              error="AccessDenied"),
        event(at(9, day=DAY - timedelta(days=1)), "DescribeStacks", "cloudformation.amazonaws.com", deploy_1,
              read_only=True, error="Throttling"),
    ]
    return events


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lake(tmp_path_factory.mktemp("callers"), _events())


def test_summary_counts_the_day_and_fills_every_hour(lake: Path) -> None:
    report = summary_report(lake, DAY)
    headline = report["headline"]
    assert headline["events"] == 15
    assert headline["failed"] == 5
    assert headline["root_events"] == 1
    assert headline["principals"] == 9
    assert headline["regions"] == 2
    assert [h["hour"] for h in report["calls_per_hour"]] == list(range(24))
    assert report["calls_per_hour"][9]["calls"] == 2
    assert report["calls_per_hour"][0] == {"hour": 0, "calls": 0, "reads": 0, "writes": 0, "failed": 0}
    assert sum(h["calls"] for h in report["calls_per_hour"]) == 15


def test_each_identity_type_has_a_sensible_principal(lake: Path) -> None:
    rows = {r["principal"]: r for r in top_callers_report(lake, DAY)["principals"]}
    assert rows[f"arn:aws:iam::{ACCOUNT}:user/alice"]["principal_type"] == "IAMUser"
    assert rows[f"arn:aws:iam::{ACCOUNT}:role/deploy"]["principal_type"] == "AssumedRole"
    assert rows[f"arn:aws:iam::{ACCOUNT}:root"]["principal_type"] == "Root"
    assert rows["ec2.amazonaws.com"]["principal_type"] == "AWSService"
    assert rows["samluser:erin@example.com"]["calls"] == 1
    assert rows["webidentityuser:system:serviceaccount:app:api"]["calls"] == 1
    assert rows["identitycenter:user-42"]["principal_type"] == "IdentityCenterUser"
    assert rows[f"account:{OTHER_ACCOUNT}"]["principal_type"] == "AWSAccount"


def test_assumed_role_sessions_are_counted_as_the_role_with_session_names(lake: Path) -> None:
    rows = {r["principal"]: r for r in top_callers_report(lake, DAY)["principals"]}
    deploy = rows[f"arn:aws:iam::{ACCOUNT}:role/deploy"]
    assert deploy["calls"] == 4
    assert deploy["sessions"] == 2
    assert deploy["session_names"] == ["build-1", "build-2"]
    assert deploy["errors"] == 2
    assert deploy["error_rate"] == 0.5


def test_top_callers_give_apis_errors_regions_ips_and_times_per_principal(lake: Path) -> None:
    report = top_callers_report(lake, DAY)
    alice = next(r for r in report["principals"] if r["principal"].endswith("user/alice"))
    assert (alice["calls"], alice["apis"], alice["errors"], alice["reads"], alice["writes"]) == (3, 3, 1, 2, 1)
    assert alice["region_list"] == ["eu-west-1", "us-east-1"]
    assert alice["source_ip_list"] == ["198.51.100.1", "198.51.100.2"]
    assert alice["first_seen"] == at(9) and alice["last_seen"] == at(10)
    assert report["principals"][0]["principal"].endswith("role/deploy")
    top_api = report["apis"][0]
    assert (top_api["eventsource"], top_api["eventname"], top_api["calls"]) == ("s3.amazonaws.com", "GetObject", 3)
    assert report["source_ips"][0]["source_ip"] == "198.51.100.7"
    split = {r["principal_type"]: r for r in report["read_write"]}
    assert (split["IAMUser"]["reads"], split["IAMUser"]["writes"]) == (2, 2)


def test_limit_caps_the_principals(lake: Path) -> None:
    assert len(top_callers_report(lake, DAY, limit=2)["principals"]) == 2


def test_failures_separate_access_denied_from_throttling_and_not_found(lake: Path) -> None:
    report = failed_calls_report(lake, DAY)
    assert report["failures"] == 5
    assert report["families"] == {"access_denied": 2, "authentication": 1, "throttling": 1, "not_found": 1}
    assert report["groups"] == {"denied": 3, "noise": 2, "other": 0}
    codes = {r["error_code"]: r for r in report["by_error_code"]}
    assert codes["AccessDenied"]["failures"] == 2 and codes["AccessDenied"]["principals"] == 2
    assert codes["Failed authentication"]["family"] == "authentication"
    assert codes["ParameterNotFound"]["sample_message"] == "ParameterNotFound for GetParameter"


def test_failures_by_api_and_principal_report_rates_and_denied_apis(lake: Path) -> None:
    report = failed_calls_report(lake, DAY)
    get_object = next(r for r in report["by_api"] if r["eventname"] == "GetObject")
    assert (get_object["calls"], get_object["failures"], get_object["denied"]) == (3, 2, 2)
    assert get_object["failure_rate"] == round(2 / 3, 4)
    deploy = next(r for r in report["by_principal"] if r["principal"].endswith("role/deploy"))
    assert (deploy["failures"], deploy["denied"], deploy["throttled"], deploy["not_found"]) == (2, 0, 1, 1)
    alice = next(r for r in report["by_principal"] if r["principal"].endswith("user/alice"))
    assert (alice["denied"], alice["denied_apis"]) == (1, 1)


def test_new_failure_kinds_are_those_not_seen_in_the_previous_week(lake: Path) -> None:
    kinds = {(r["eventname"], r["error_code"]): r for r in failed_calls_report(lake, DAY)["new_kinds"]}
    assert ("GetObject", "AccessDenied") not in kinds  # alice was denied the day before
    assert ("DescribeStacks", "Throttling") not in kinds
    assert kinds[("GetParameter", "ParameterNotFound")]["new_error_code"] is True
    assert kinds[("ConsoleLogin", "Failed authentication")]["failures"] == 1


def test_reports_share_one_connection_when_given(lake: Path) -> None:
    con = DuckDBEngine(lake)
    try:
        assert summary_report(lake, DAY, engine=con)["headline"]["events"] == 15
        assert top_callers_report(lake, "2024-03-10", engine=con)["principals"]
    finally:
        con.close()


def test_a_day_without_events_gives_empty_reports(lake: Path) -> None:
    empty = date(2024, 1, 1)
    assert summary_report(lake, empty)["headline"]["events"] == 0
    assert top_callers_report(lake, empty)["principals"] == []
    assert failed_calls_report(lake, empty)["failures"] == 0
