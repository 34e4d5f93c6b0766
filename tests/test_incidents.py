"""One story per incident: a principal's findings and spikes of a day on one timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trailsight.report.html import incidents_section
from trailsight.report.incidents import build_incidents, principal_of_arn

ACCOUNT = "111122223333"
LEAKED = f"arn:aws:iam::{ACCOUNT}:user/ci-deployer"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 5, 15, hour, minute, tzinfo=UTC)


def finding(control: str, principal: str, severity: str, new: bool, hour: int) -> dict[str, Any]:
    return {"control": control, "title": control, "account": ACCOUNT, "principal": principal, "severity": severity,
            "new": new, "count": 3, "first_seen": at(hour), "last_seen": at(hour, 30), "technique": "T1078",
            "why": "because"}


def insight(caller: str, hour: int) -> dict[str, Any]:
    return {"insight_id": f"i-{hour}", "insight_type": "ApiErrorRateInsight", "account": ACCOUNT,
            "eventsource": "ec2.amazonaws.com", "eventname": "DescribeVpcs", "start": at(hour), "end": at(hour, 40),
            "calls": 6, "duration_minutes": 40, "baseline_average": 0.0,
            "attributions": {"insight": {"userIdentityArn": [{"value": caller, "average": 0.1}]}}}


def test_a_principals_findings_and_spikes_are_one_incident_in_time_order() -> None:
    findings = [finding("secrets-bulk-read", LEAKED, "critical", True, 3),
                finding("access-denied-burst", LEAKED, "critical", True, 2),
                finding("cis-4.1", LEAKED, "high", True, 2),
                finding("cis-4.10", ROLE, "low", False, 9),  # routine, alone: not an incident
                finding("cis-4.8", "arn:aws:iam::111122223333:user/y", "medium", True, 9)]  # new but small
    incidents = build_incidents(findings, [insight(LEAKED, 2), insight("arn:aws:iam::111122223333:user/x", 5)])
    assert len(incidents) == 1
    (story,) = incidents
    assert story["principal"] == LEAKED and story["severity"] == "critical" and story["new"]
    assert (story["findings"], story["spikes"]) == (3, 1)
    assert [item["time"] for item in story["timeline"]] == sorted(item["time"] for item in story["timeline"])
    assert story["techniques"] == ["T1078"]


def test_spikes_of_a_roles_sessions_join_the_roles_incident() -> None:
    assert principal_of_arn(f"arn:aws:sts::{ACCOUNT}:assumed-role/app/i-0abc") == ROLE
    incidents = build_incidents([finding("bedrock-model-invoked", ROLE, "critical", True, 9)],
                                [insight(f"arn:aws:sts::{ACCOUNT}:assumed-role/app/i-0abc", 9)])
    assert incidents[0]["spikes"] == 1


def test_html_page_tells_each_incident_as_a_timeline() -> None:
    incidents = build_incidents([finding("secrets-bulk-read", LEAKED, "critical", True, 3),
                                 finding("access-denied-burst", LEAKED, "critical", True, 2)], [])
    page = incidents_section(incidents)
    assert "<details open><summary>" in page and "ci-deployer" in page  # new incidents are shown opened
    assert page.index("access-denied-burst") < page.index("secrets-bulk-read")
    assert "2 finding(s), 0 spike(s)" in page
    assert "No incident" in incidents_section([])
