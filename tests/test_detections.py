"""Security monitoring: every control fires on the events it is about and stays quiet on near-misses.

One lake holds all cases; each case acts as its own principal (named after the case), so a test asks
"did control X fire for principal Y".
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import ACCOUNT, assumed_role, build_lake, console_login, event, iam_user, root, service

from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.query.sqlfiles import load_derived
from trailsight.report.daily import security_report
from trailsight.report.detections import CONTROLS, CONTROLS_BY_ID, DetectionConfig, Finding, run_detections

DAY = date(2024, 3, 10)
SPRAYED = "222200000001"
ONE_USER = "222200000002"
FEW_USERS = "222200000003"
FRESH = "222200000004"
HIDDEN_ACCOUNT = "222200000005"


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def user(case: str, account: str = ACCOUNT) -> dict[str, Any]:
    return iam_user(case, account)


def arn(case: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:iam::{account}:user/{case}"


def ingress(cidr: str | None = None, ipv6: str | None = None) -> dict[str, Any]:
    permission: dict[str, Any] = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "groups": {},
                                  "ipRanges": {"items": [{"cidrIp": cidr}]} if cidr else {},
                                  "ipv6Ranges": {"items": [{"cidrIpv6": ipv6}]} if ipv6 else {}}
    return {"groupId": "sg-0123", "ipPermissions": {"items": [permission]}}


def modify_rule(cidr: str) -> dict[str, Any]:
    return {"ModifySecurityGroupRulesRequest": {"GroupId": "sg-0456", "SecurityGroupRule": {
        "SecurityGroupRuleId": "sgr-1", "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 3389,
                                                              "ToPort": 3389, "CidrIpv4": cidr}}}}


EC2, IAM = "ec2.amazonaws.com", "iam.amazonaws.com"


def _events() -> list[dict[str, Any]]:
    e: list[dict[str, Any]] = []

    def add(case: str, name: str, source: str, **fields: Any) -> None:
        e.append(event(at(10), name, source, user(case), **fields))

    # 4.1 unauthorized API calls, as intended
    add("f41", "GetObject", "s3.amazonaws.com", read_only=True, error="AccessDenied")
    add("f41ec2", "DescribeInstances", EC2, read_only=True, error="Client.UnauthorizedOperation")
    add("m41headbucket", "HeadBucket", "s3.amazonaws.com", read_only=True, error="AccessDenied")
    add("m41delivery", "PutObject", "s3.amazonaws.com", error="AccessDenied",
        sourceIPAddress="delivery.logs.amazonaws.com")
    add("m41ok", "GetObject", "s3.amazonaws.com", read_only=True)
    add("m41throttled", "GetObject", "s3.amazonaws.com", read_only=True, error="ThrottlingException")
    # 4.2, 4.6 and the successful-login-without-MFA extra
    e.append(console_login(at(8), user("f42"), mfa="No"))
    e.append(console_login(at(8), user("m42mfa"), mfa="Yes"))
    e.append(console_login(at(8), assumed_role("AWSReservedSSO_Admin", "sso-user"), mfa="No"))
    e.append(console_login(at(8), user("f46"), mfa="No", success=False))
    silent_failure = console_login(at(8), user("f46nomessage"), mfa="No", success=False)
    del silent_failure["errorMessage"]  # recorded failures without errorMessage: only responseElements says so
    e.append(silent_failure)
    # 4.3 root usage
    e.append(event(at(9), "GetAccountSummary", IAM, root(), read_only=True))
    e.append(event(at(9), "GetAccountSummary", IAM, root("444455556666", invoked_by="support.amazonaws.com"),
                   account="444455556666", read_only=True))
    e.append(event(at(9), "ServiceEvent", IAM, root("555566667777"), account="555566667777",
                   eventType="AwsServiceEvent"))
    # change controls: one firing call and one near-miss (a read of the same service) each
    for case, name, source, miss in (
        ("f44", "PutUserPolicy", IAM, "ListPolicies"),
        ("f45", "StopLogging", "cloudtrail.amazonaws.com", "DescribeTrails"),
        ("f47", "ScheduleKeyDeletion", "kms.amazonaws.com", "EnableKey"),
        ("f48", "PutBucketPolicy", "s3.amazonaws.com", "GetBucketPolicy"),
        ("f49", "StopConfigurationRecorder", "config.amazonaws.com", "DescribeConfigurationRecorders"),
        ("f410", "AuthorizeSecurityGroupIngress", EC2, "DescribeSecurityGroups"),
        ("f411", "CreateNetworkAclEntry", EC2, "DescribeNetworkAcls"),
        ("f412", "AttachInternetGateway", EC2, "DescribeInternetGateways"),
        ("f413", "CreateRoute", EC2, "DescribeRouteTables"),
        ("f414", "CreateVpcPeeringConnection", EC2, "DescribeVpcs"),
        ("f415", "CreateAccount", "organizations.amazonaws.com", "ListAccounts"),
    ):
        add(case, name, source, requestParameters=ingress("10.0.0.0/8") if name.startswith("Authorize") else None)
        add("m" + case[1:], miss, source, read_only=True)
    add("m44orgs", "CreatePolicy", "organizations.amazonaws.com")  # 4.15, not an IAM policy change
    add("f410modify", "ModifySecurityGroupRules", EC2, requestParameters=modify_rule("10.1.0.0/16"))
    # a security group opened to the world
    add("fopen4", "AuthorizeSecurityGroupIngress", EC2, requestParameters=ingress("0.0.0.0/0"))
    add("fopen6", "AuthorizeSecurityGroupIngress", EC2, requestParameters=ingress(ipv6="::/0"))
    add("fopenmodify", "ModifySecurityGroupRules", EC2, requestParameters=modify_rule("0.0.0.0/0"))
    add("mopenfailed", "AuthorizeSecurityGroupIngress", EC2, requestParameters=ingress("0.0.0.0/0"),
        error="Client.InvalidPermission.Duplicate")
    add("mopenrevoke", "RevokeSecurityGroupIngress", EC2, requestParameters=ingress("0.0.0.0/0"))
    add("mopenegress", "AuthorizeSecurityGroupEgress", EC2, requestParameters=ingress("0.0.0.0/0"))
    add("mopen10", "AuthorizeSecurityGroupIngress", EC2, requestParameters=ingress("10.0.0.0/0"))
    # GuardDuty, Config and flow logs disabled
    add("fgd", "DeleteDetector", "guardduty.amazonaws.com", requestParameters={"detectorId": "d1"})
    add("fgdupdate", "UpdateDetector", "guardduty.amazonaws.com",
        requestParameters={"detectorId": "d1", "enable": False})
    add("fconfig", "DeleteDeliveryChannel", "config.amazonaws.com")
    add("fflow", "DeleteFlowLogs", EC2, requestParameters={"flowLogIds": ["fl-1"]})
    add("mgdupdate", "UpdateDetector", "guardduty.amazonaws.com",
        requestParameters={"detectorId": "d1", "enable": True, "findingPublishingFrequency": "SIX_HOURS"})
    add("mflowcreate", "CreateFlowLogs", EC2)
    add("mgddenied", "DeleteDetector", "guardduty.amazonaws.com", error="AccessDeniedException")
    # credentials made for another user
    add("fkey", "CreateAccessKey", IAM, requestParameters={"userName": "bob"})
    e.append(event(at(10), "CreateLoginProfile", IAM, assumed_role("admin-role", "fprofile"),
                   requestParameters={"userName": "carol", "passwordResetRequired": True}))
    add("mkeyself", "CreateAccessKey", IAM, requestParameters={"userName": "mkeyself"})
    add("mkeynouser", "CreateAccessKey", IAM, requestParameters={})
    # an access-denied burst, and two near-misses
    apis = [f"Describe{n}" for n in ("Instances", "Volumes", "Vpcs", "Subnets", "Images", "Snapshots",
                                      "Addresses", "KeyPairs", "Regions", "Hosts", "Routes", "Tags")]
    for i, api in enumerate(apis):
        e.append(event(at(11, i), api, EC2, user("fburst"), read_only=True, error="Client.UnauthorizedOperation"))
        e.append(event(at(11, i), api, EC2, user("mbusy"), read_only=True, error="Client.UnauthorizedOperation"))
    for i, api in enumerate(apis[:9]):
        e.append(event(at(12, i), api, EC2, user("mnine"), read_only=True, error="Client.UnauthorizedOperation"))
    e += [event(at(13, i % 60), "GetObject", "s3.amazonaws.com", user("mbusy"), read_only=True) for i in range(100)]
    # password spraying: six user names in one account; one user failing 20 times; four users
    e += [console_login(at(14, i), user(f"victim{i}", SPRAYED), success=False, account=SPRAYED,
                        sourceIPAddress="203.0.113.9") for i in range(6)]
    e += [console_login(at(14, i), user("forgetful", ONE_USER), success=False, account=ONE_USER)
          for i in range(20)]
    e += [console_login(at(14, i), user(f"user{i}", FEW_USERS), success=False, account=FEW_USERS,
                        sourceIPAddress="203.0.113.10") for i in range(4)]
    e += [console_login(at(15, i), user(f"typo{i}", FEW_USERS), success=False, account=FEW_USERS,
                        sourceIPAddress=f"198.51.100.{i + 20}") for i in range(6)]
    # spraying of names that do not exist: CloudTrail hides them
    hidden = {"type": "IAMUser", "principalId": HIDDEN_ACCOUNT, "accountId": HIDDEN_ACCOUNT,
              "userName": "HIDDEN_DUE_TO_SECURITY_REASONS"}
    e += [console_login(at(16, i), hidden, success=False, account=HIDDEN_ACCOUNT, sourceIPAddress="203.0.113.77",
                        errorMessage="No username found in supplied account") for i in range(6)]
    # first activity in a region: the account used us-east-1 and eu-west-1 the day before
    yesterday = DAY - timedelta(days=1)
    e.append(event(at(9, day=yesterday), "DescribeInstances", EC2, user("old"), read_only=True))
    e.append(event(at(9, day=yesterday), "DescribeInstances", EC2, user("old"), region="eu-west-1", read_only=True))
    e.append(event(at(9), "RunInstances", EC2, user("fregion"), region="ap-south-1"))
    e.append(event(at(9), "DescribeInstances", EC2, user("mregion"), region="eu-west-1", read_only=True))
    e.append(event(at(9), "AssumeRole", "sts.amazonaws.com", service("ec2.amazonaws.com"), region="sa-east-1",
                   read_only=True))
    e.append(event(at(9), "RunInstances", EC2, user("mfresh", FRESH), account=FRESH, region="me-south-1"))
    return e


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[Finding]:
    lake = build_lake(tmp_path_factory.mktemp("detections"), _events())
    con = DuckDBEngine(lake)
    try:
        return run_detections(con, DAY).findings
    finally:
        con.close()


def fired(findings: list[Finding], control: str, principal: str | None = None, account: str | None = None) -> bool:
    return any(f.control == control and (principal is None or f.principal == principal)
               and (account is None or f.account == account) for f in findings)


def controls_for(findings: list[Finding], principal: str) -> set[str]:
    return {f.control for f in findings if f.principal == principal}


def test_every_control_is_described_with_severity_and_cis_numbers() -> None:
    assert len([c for c in CONTROLS if c.cis]) == 15
    assert CONTROLS_BY_ID["cis-4.1"].cis_numbers == {"v1.2": "3.1", "v1.4-v5.0": "4.1", "v6.0": "5.1"}
    assert CONTROLS_BY_ID["cis-4.15"].cis_numbers == {"v1.4-v5.0": "4.15", "v6.0": "5.15"}
    (sql,) = [q.sql for q in load_derived() if q.name == "security_flags"]
    for control in CONTROLS:
        assert control.severity in ("critical", "high", "medium", "low")
        if control.column:
            assert f"AS {control.column}" in sql


def test_unauthorized_calls_fire_as_intended_not_as_the_or_typo(findings: list[Finding]) -> None:
    assert fired(findings, "cis-4.1", arn("f41"))
    assert fired(findings, "cis-4.1", arn("f41ec2"))
    for miss in ("m41headbucket", "m41delivery", "m41ok", "m41throttled"):
        assert not fired(findings, "cis-4.1", arn(miss)), miss


def test_console_sign_in_controls(findings: list[Finding]) -> None:
    sso = f"arn:aws:iam::{ACCOUNT}:role/AWSReservedSSO_Admin"
    assert controls_for(findings, arn("f42")) == {"cis-4.2", "console-login-without-mfa"}
    assert controls_for(findings, sso) == {"cis-4.2"}  # federated: MFA happens at the identity provider
    assert controls_for(findings, arn("f46")) == {"cis-4.2", "cis-4.6"}  # a failure is not a sign-in
    assert controls_for(findings, arn("m42mfa")) == set()


def test_failed_sign_in_without_error_message_is_not_a_sign_in_without_mfa(findings: list[Finding]) -> None:
    assert controls_for(findings, arn("f46nomessage")) == {"cis-4.2"}  # CIS 4.6 names the errorMessage


def test_password_spraying_counts_hidden_user_names(findings: list[Finding]) -> None:
    (spray,) = [f for f in findings if f.control == "password-spraying" and f.account == HIDDEN_ACCOUNT]
    assert spray.count == 6 and spray.details["source_ip"] == "203.0.113.77"
    assert "6 hidden by CloudTrail" in spray.why


def test_root_usage_fires_only_without_invoked_by_and_not_for_service_events(findings: list[Finding]) -> None:
    assert fired(findings, "cis-4.3", f"arn:aws:iam::{ACCOUNT}:root")
    assert not fired(findings, "cis-4.3", account="444455556666")
    assert not fired(findings, "cis-4.3", account="555566667777")
    root_finding = next(f for f in findings if f.control == "cis-4.3")
    assert root_finding.severity == "critical"
    assert "GetAccountSummary" in root_finding.why


@pytest.mark.parametrize("number", [4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15])
def test_change_controls_fire_on_changes_and_not_on_reads(findings: list[Finding], number: int) -> None:
    assert controls_for(findings, arn(f"f4{number}")) >= {f"cis-4.{number}"}
    assert controls_for(findings, arn(f"m4{number}")) == set()


def test_iam_policy_control_ignores_organizations_policies(findings: list[Finding]) -> None:
    assert controls_for(findings, arn("m44orgs")) == {"cis-4.15"}


def test_security_group_changes_include_modify_security_group_rules(findings: list[Finding]) -> None:
    assert controls_for(findings, arn("f410modify")) == {"cis-4.10"}


def test_world_open_security_group_ipv4_ipv6_and_modify_rules(findings: list[Finding]) -> None:
    for case in ("fopen4", "fopen6", "fopenmodify"):
        assert fired(findings, "world-open-security-group", arn(case)), case
    finding = next(f for f in findings if f.control == "world-open-security-group" and f.principal == arn("fopen4"))
    assert finding.events[0]["detail"] == "AuthorizeSecurityGroupIngress on sg-0123: tcp 22 from 0.0.0.0/0"
    assert "3389 from 0.0.0.0/0" in next(f for f in findings if f.principal == arn("fopenmodify")
                                         and f.control == "world-open-security-group").why
    for case in ("mopenfailed", "mopenrevoke", "mopenegress", "mopen10"):
        assert not fired(findings, "world-open-security-group", arn(case)), case
        assert fired(findings, "cis-4.10", arn(case)), case


def test_monitoring_disabled(findings: list[Finding]) -> None:
    for case in ("fgd", "fgdupdate", "fconfig", "fflow"):
        assert fired(findings, "monitoring-disabled", arn(case)), case
    for case in ("mgdupdate", "mflowcreate", "mgddenied"):
        assert not fired(findings, "monitoring-disabled", arn(case)), case
    assert fired(findings, "cis-4.9", arn("fconfig"))


def test_credentials_made_for_another_user(findings: list[Finding]) -> None:
    key = next(f for f in findings if f.control == "credentials-for-another-user" and f.principal == arn("fkey"))
    assert key.events[0]["detail"] == "CreateAccessKey for user bob"
    assert fired(findings, "credentials-for-another-user", f"arn:aws:iam::{ACCOUNT}:role/admin-role")
    assert not fired(findings, "credentials-for-another-user", arn("mkeyself"))
    assert not fired(findings, "credentials-for-another-user", arn("mkeynouser"))


def test_access_denied_burst_needs_many_apis_and_a_large_share(findings: list[Finding]) -> None:
    burst = next(f for f in findings if f.control == "access-denied-burst")
    assert burst.principal == arn("fburst") and burst.count == 12 and len(burst.events) == 12
    assert burst.details["denied_share"] == 1.0
    assert not fired(findings, "access-denied-burst", arn("mbusy"))  # 12 APIs but 12 of 112 calls
    assert not fired(findings, "access-denied-burst", arn("mnine"))  # all denied, 9 APIs


def test_password_spraying_needs_many_user_names_from_one_source(findings: list[Finding]) -> None:
    spray = [f for f in findings if f.control == "password-spraying"]
    assert [f.account for f in spray] == [SPRAYED, HIDDEN_ACCOUNT]
    assert spray[0].count == 6 and spray[0].details["source_ip"] == "203.0.113.9"
    assert len(spray[0].details["user_names"]) == 6 and len(spray[0].events) == 6


def test_first_activity_in_a_region(findings: list[Finding]) -> None:
    new = [f for f in findings if f.control == "new-region"]
    assert [(f.account, f.details["region"], f.principal) for f in new] == [(ACCOUNT, "ap-south-1", arn("fregion"))]


def test_findings_are_sorted_by_severity_and_carry_events_and_reasons(findings: list[Finding]) -> None:
    order = ["critical", "high", "medium", "low"]
    assert [order.index(f.severity) for f in findings] == sorted(order.index(f.severity) for f in findings)
    for finding in findings:
        assert finding.events and finding.why and "Rule:" in finding.why
        assert finding.count >= len(finding.events)


def test_pattern_thresholds_are_configurable(tmp_path: Path) -> None:
    lake = build_lake(tmp_path, [console_login(at(14, i), user(f"u{i}", ONE_USER), success=False, account=ONE_USER,
                                               sourceIPAddress="203.0.113.5") for i in range(3)])
    con = DuckDBEngine(lake)
    try:
        default = run_detections(con, DAY).findings
        loose = run_detections(con, DAY, DetectionConfig(spraying_min_users=3)).findings
    finally:
        con.close()
    assert not fired(default, "password-spraying")
    assert fired(loose, "password-spraying", account=ONE_USER)


def test_security_report_counts_findings_by_severity(tmp_path: Path) -> None:
    lake = build_lake(tmp_path, [event(at(9), "StopLogging", "cloudtrail.amazonaws.com", user("x"))])
    report = security_report(lake, DAY)
    assert report["by_severity"] == {"critical": 1, "high": 0, "medium": 0, "low": 0}  # StopLogging blinds the trail
    assert report["table"][0]["control"] == "cis-4.5"
    assert report["notes"]  # a lake of one day cannot say which regions are new


def test_trail_changes_are_high_and_stopping_the_trail_is_critical(tmp_path: Path) -> None:
    lake = build_lake(tmp_path, [event(at(9), "UpdateTrail", "cloudtrail.amazonaws.com", user("a")),
                                 event(at(9), "DeleteTrail", "cloudtrail.amazonaws.com", user("b"))])
    severity = {f["principal"]: f["severity"] for f in security_report(lake, DAY)["findings"]}
    assert severity == {arn("a"): "high", arn("b"): "critical"}


def test_a_root_console_sign_in_is_one_critical_finding_with_its_mfa_state(tmp_path: Path) -> None:
    lake = build_lake(tmp_path, [console_login(at(9), root(), mfa="No")])
    report = security_report(lake, DAY)
    assert report["by_severity"] == {"critical": 1, "high": 0, "medium": 0, "low": 0}
    (finding,) = report["findings"]
    assert finding["control"] == "cis-4.3"
    assert finding["events"][0]["detail"] == "ConsoleLogin succeeded, MFAUsed=No"


def test_a_bucket_policy_change_names_the_bucket_and_the_policy(tmp_path: Path) -> None:
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pub/*"},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": "arn:aws:s3:::pub/*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    lake = build_lake(tmp_path, [event(at(9), "PutBucketPolicy", "s3.amazonaws.com", user("p"),
                                       requestParameters={"bucketName": "pub", "bucketPolicy": policy})])
    (finding,) = security_report(lake, DAY)["findings"]
    assert finding["events"][0]["detail"] == ("PutBucketPolicy on bucket pub: Allow s3:GetObject to anyone; "
                                              "Deny s3:* to anyone if aws:SecureTransport=false")
