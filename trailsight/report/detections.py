"""Security monitoring: the CIS AWS Foundations monitoring controls and the extras security teams expect.

Each control is data (`CONTROLS`): its id, CIS numbers in the three numberings (v1.2 3.x, v1.4-v5.0 4.x,
v6.0 5.x), title, severity, the rule in words and why it matters. The matching itself is SQL in `sql/`:
`security_events.sql` flags single events (one boolean column per control), the other `security_*.sql` files
find patterns over a day (access-denied bursts, password spraying, activity per region). This module turns
matches into findings: one per control, account and principal, with the events and the reason it fired.

Deliberate choices, each tested with events that must fire and near-misses that must not:
- 4.1 is implemented as intended: (errorCode *UnauthorizedOperation or AccessDenied*) AND the source is not
  delivery.logs.amazonaws.com AND the call is not HeadBucket. The published metric filter joins the two
  exclusions with OR, which matches almost every event.
- 4.4 is limited to iam.amazonaws.com (the published filter matches eventName only, so AWS Organizations'
  CreatePolicy/DeletePolicy would count as IAM policy changes; they belong to 4.15).
- CIS change controls match attempts whether or not they succeeded, as the metric filters do; the extras
  that claim a state changed (world-open security group, monitoring disabled, credentials for another user,
  console sign-in without MFA) only match successful calls.
- A ConsoleLogin is a failure when it has an error code or message, or responseElements.ConsoleLogin says
  Failure (some failures carry no errorMessage); responseElements is read for ConsoleLogin events only.
- Password spraying counts each failure with a hidden user name (CloudTrail hides names that do not exist) as
  a name of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import orjson

from trailsight.query.detection_library import DERIVED_NAME, Detection, load_library
from trailsight.query.engine import Engine
from trailsight.report.queries import run_report_sql
from trailsight.report.severity import SEVERITIES
from trailsight.report.triage import History, Key, apply_suppressions, key_of, load_suppressions, triage


@dataclass(frozen=True)
class Control:
    """One monitoring control; `column` is its flag in security_events.sql (None for pattern controls)."""

    id: str
    title: str
    severity: str
    rule: str
    why: str
    cis: str | None = None  # the v1.4-v5.0 number, e.g. "4.3"
    column: str | None = None
    critical_calls: frozenset[str] = frozenset()  # calls that make a finding of this control critical

    @property
    def cis_numbers(self) -> dict[str, str] | None:
        """The same control in each CIS benchmark numbering (4.15 did not exist in v1.2)."""
        if self.cis is None:
            return None
        index = int(self.cis.split(".")[1])
        numbers = {"v1.2": f"3.{index}", "v1.4-v5.0": self.cis, "v6.0": f"5.{index}"}
        if index > 14:
            del numbers["v1.2"]
        return numbers


def _cis(number: int, title: str, severity: str, rule: str, why: str) -> Control:
    return Control(f"cis-4.{number}", title, severity, rule, why, cis=f"4.{number}", column=f"cis_4_{number}")


CONTROLS: tuple[Control, ...] = (
    _cis(1, "Unauthorized API calls", "low",
         "errorCode is *UnauthorizedOperation or AccessDenied*, not from delivery.logs.amazonaws.com, not HeadBucket",
         "denied calls show misconfigured automation or someone probing what a credential may do"),
    _cis(2, "Console sign-in without MFA", "medium",
         "ConsoleLogin with additionalEventData.MFAUsed other than Yes",
         "a console session protected by a password alone is one phishing away from takeover"),
    _cis(3, "Root account usage", "critical",
         "userIdentity.type is Root, no invokedBy, eventType is not AwsServiceEvent",
         "the root user cannot be restricted by IAM policies and should almost never be used"),
    _cis(4, "IAM policy changes", "medium",
         "iam.amazonaws.com Put/Delete/Attach/Detach of user, group or role policies, Create/Delete Policy and "
         "PolicyVersion", "policy changes grant or remove permissions"),
    replace(_cis(5, "CloudTrail configuration changes", "high",
                 "cloudtrail.amazonaws.com CreateTrail, UpdateTrail, DeleteTrail, StartLogging, StopLogging "
                 "(StopLogging and DeleteTrail are critical)",
                 "stopping or redirecting the trail blinds every other control"),
            critical_calls=frozenset({"StopLogging", "DeleteTrail"})),
    _cis(6, "Console authentication failures", "medium",
         "ConsoleLogin with errorMessage 'Failed authentication'",
         "repeated failures suggest password guessing"),
    _cis(7, "KMS keys disabled or scheduled for deletion", "high",
         "kms.amazonaws.com DisableKey or ScheduleKeyDeletion",
         "data encrypted under a deleted key is lost for good"),
    _cis(8, "S3 bucket policy changes", "medium",
         "s3.amazonaws.com Put/Delete BucketPolicy, BucketCors, BucketLifecycle, BucketReplication, PutBucketAcl",
         "bucket policies and ACLs decide who can read the data"),
    _cis(9, "AWS Config changes", "high",
         "config.amazonaws.com StopConfigurationRecorder, DeleteDeliveryChannel, PutDeliveryChannel, "
         "PutConfigurationRecorder", "Config is the record of how resources were configured"),
    _cis(10, "Security group changes", "medium",
         "ec2.amazonaws.com Authorize/Revoke SecurityGroupIngress/Egress, Create/DeleteSecurityGroup, "
         "ModifySecurityGroupRules", "security groups are the firewall of every instance"),
    _cis(11, "Network ACL changes", "medium",
         "ec2.amazonaws.com Create/Delete NetworkAcl[Entry], ReplaceNetworkAclEntry, ReplaceNetworkAclAssociation",
         "NACLs filter traffic of whole subnets"),
    _cis(12, "Network gateway changes", "medium",
         "ec2.amazonaws.com Create/Delete CustomerGateway, Create/Delete/Attach/Detach InternetGateway",
         "gateways connect a VPC to the internet or to other networks"),
    _cis(13, "Route table changes", "medium",
         "ec2.amazonaws.com Create/Replace/Delete Route, Create/Delete RouteTable, ReplaceRouteTableAssociation, "
         "DisassociateRouteTable", "routes decide where traffic leaves the VPC"),
    _cis(14, "VPC changes", "medium",
         "ec2.amazonaws.com Create/Delete Vpc, ModifyVpcAttribute, Accept/Create/Delete/Reject "
         "VpcPeeringConnection, ClassicLink calls", "VPC and peering changes open paths between networks"),
    _cis(15, "AWS Organizations changes", "high",
         "organizations.amazonaws.com account, OU, policy and handshake changes",
         "organization changes move accounts and service control policies"),
    Control("world-open-security-group", "Security group opened to the world", "high",
            "successful AuthorizeSecurityGroupIngress or ModifySecurityGroupRules with 0.0.0.0/0 or ::/0",
            "an ingress rule open to any address exposes the port to the whole internet",
            column="world_open_security_group"),
    Control("console-login-without-mfa", "Successful console sign-in without MFA", "high",
            "successful ConsoleLogin of an IAM user or root with MFAUsed other than Yes",
            "unlike 4.2 this leaves out failures and federated (SSO) sign-ins, whose MFA happens at the identity "
            "provider", column="console_login_without_mfa"),
    Control("monitoring-disabled", "GuardDuty, Config or flow logs disabled", "high",
            "successful GuardDuty DeleteDetector / UpdateDetector enable=false / disassociation / "
            "StopMonitoringMembers, Config StopConfigurationRecorder / DeleteConfigurationRecorder / "
            "DeleteDeliveryChannel, EC2 DeleteFlowLogs",
            "attackers switch off detection before they act", column="monitoring_disabled"),
    Control("credentials-for-another-user", "Access key or login profile made for another user", "medium",
            "successful CreateAccessKey, CreateLoginProfile or UpdateLoginProfile naming a userName other than "
            "the caller's own", "creating credentials for someone else is a classic way to persist access",
            column="credentials_for_another_user"),
    Control("access-denied-burst", "Access-denied burst", "high",
            "one principal denied on many distinct APIs in a day, denials being a large share of its calls",
            "stolen credentials are typically tried against everything to see what they can do"),
    Control("password-spraying", "Password spraying", "high",
            "failed console sign-ins for many distinct user names from one source IP in one account in a day",
            "one or two passwords tried against many users avoids per-user lockouts"),
    Control("new-region", "First activity in a region", "medium",
            "calls by non-service principals in a region where the account had no events before",
            "attackers favour unused regions, where nobody looks (crypto-mining, hidden resources)"),
)
CONTROLS_BY_ID = {c.id: c for c in CONTROLS}
# An event that fires the first control is not counted again under the second: a root console sign-in is one
# critical finding (its MFA state in the event's detail), not also a high and a medium one.
SUBSUMED: dict[str, tuple[str, ...]] = {"cis-4.3": ("console-login-without-mfa", "cis-4.2")}


@dataclass(frozen=True)
class DetectionConfig:
    """Thresholds of the pattern controls."""

    access_denied_min_apis: int = 10
    access_denied_min_share: float = 0.2
    spraying_min_users: int = 5
    new_region_history_days: int = 90
    max_events_per_finding: int = 50
    routine_history_days: int = 7  # a finding is new when it did not fire in these days before
    suppression_file: str | None = None


@dataclass
class Finding:
    """One control firing for one account and principal (or account and region) on one day."""

    control: str
    title: str
    severity: str
    cis: dict[str, str] | None
    account: str
    principal: str | None
    count: int
    first_seen: datetime
    last_seen: datetime
    why: str
    events: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    technique: str | None = None  # MITRE ATT&CK technique id, for library detections
    tactic: str | None = None
    new: bool | None = None  # did not fire for this account and principal in the history days (see triage)
    magnitude: dict[str, Any] = field(default_factory=dict)
    base_severity: str | None = None  # before the magnitude raised it

    def row(self) -> dict[str, Any]:
        return {"severity": self.severity, "new": self.new, "control": self.control, "title": self.title,
                "cis": (self.cis or {}).get("v1.4-v5.0"), "technique": self.technique, "account": self.account,
                "principal": self.principal, "count": self.count, "first_seen": self.first_seen,
                "last_seen": self.last_seen, "usual_per_day": self.magnitude.get("usual_per_day"),
                "why": self.why}


@dataclass
class DetectionResult:
    day: date
    findings: list[Finding]
    notes: list[str]
    suppressed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def by_severity(self) -> dict[str, int]:
        return {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES}

    @property
    def new_by_severity(self) -> dict[str, int]:
        return {s: sum(1 for f in self.findings if f.severity == s and f.new) for s in SEVERITIES}

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "by_severity": self.by_severity,
            "new_by_severity": self.new_by_severity,
            "notes": self.notes,
            "findings": [{**f.row(), "cis": f.cis, "tactic": f.tactic, "base_severity": f.base_severity,
                          "magnitude": f.magnitude, "details": f.details, "events": f.events}
                         for f in self.findings],
            "suppressed": self.suppressed,
            "table": [f.row() for f in self.findings],
            "controls": [{"id": c.id, "title": c.title, "severity": c.severity, "cis": c.cis_numbers,
                          "rule": c.rule, "why": c.why} for c in CONTROLS],
            "library": [d.describe() for d in load_library()],
        }


# --- per-event controls ----------------------------------------------------------------------------------


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _open_rules(parameters: Any) -> list[str]:
    """`tcp 22 from 0.0.0.0/0` for each world-open range in a security group request, whatever its shape."""
    found: list[str] = []

    def walk(node: Any, protocol: str, ports: str) -> None:
        if isinstance(node, dict):
            lowered = {k.lower(): v for k, v in node.items()}
            protocol = str(lowered.get("ipprotocol", protocol))
            low, high = lowered.get("fromport"), lowered.get("toport")
            if low is not None:
                ports = str(low) if low == high or high is None else f"{low}-{high}"
            for key in ("cidrip", "cidripv4", "cidripv6"):
                if lowered.get(key) in ("0.0.0.0/0", "::/0"):
                    found.append(f"{'all' if protocol == '-1' else protocol} {ports or 'all ports'} "
                                 f"from {lowered[key]}")
            for value in node.values():
                walk(value, protocol, ports)
        elif isinstance(node, list):
            for value in node:
                walk(value, protocol, ports)

    walk(parameters, "", "")
    return sorted(set(found))


def event_detail(control: Control, row: dict[str, Any]) -> str:
    """What about this event made the control fire, in a few words."""
    name = row["eventname"]
    parameters = _json(row.get("requestparameters"))
    if control.id == "world-open-security-group":
        group = (parameters or {}).get("groupId") or (parameters or {}).get("ModifySecurityGroupRulesRequest", {}
                                                                             ).get("GroupId")
        return f"{name} on {group or 'a security group'}: {', '.join(_open_rules(parameters)) or 'open range'}"
    if control.id == "credentials-for-another-user":
        return f"{name} for user {(parameters or {}).get('userName')}"
    if control.id in ("console-login-without-mfa", "cis-4.2") or (control.id == "cis-4.3" and name == "ConsoleLogin"):
        failed = row.get("errormessage") or row.get("errorcode") or row.get("login_result") == "Failure"
        outcome = "failed" if failed else "succeeded"
        return f"ConsoleLogin {outcome}, MFAUsed={row.get('mfa_used') or 'absent'}"
    if control.id == "cis-4.8" and parameters:
        bucket = f"{name} on bucket {parameters.get('bucketName', '?')}"
        policy = _json(parameters["bucketPolicy"]) if isinstance(parameters.get("bucketPolicy"), str) \
            else parameters.get("bucketPolicy")
        return f"{bucket}: {policy_summary(policy)}" if policy else bucket
    detail = f"{(row['eventsource'] or '(missing)').split('.')[0]}:{name}"
    if row.get("errorcode"):
        detail += f" (failed: {row['errorcode']})"
    elif row.get("errormessage"):
        detail += f" (failed: {row['errormessage']})"
    return detail


def _principal_text(principal: Any) -> str:
    if principal == "*" or (isinstance(principal, dict) and "*" in (principal.get("AWS"), principal.get("*"))):
        return "anyone"
    if isinstance(principal, dict):
        values = [v for value in principal.values() for v in (value if isinstance(value, list) else [value])]
        return ", ".join(str(v) for v in values[:3]) + (" ..." if len(values) > 3 else "")
    return str(principal)


def policy_summary(policy: Any, limit: int = 240) -> str:
    """A bucket policy in words: `Deny s3:* to anyone if aws:SecureTransport=false` per statement.

    >>> policy_summary({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]})
    'Allow s3:GetObject to anyone'
    """
    statements = (policy or {}).get("Statement", [])
    parts = []
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action", "?")
        action = ", ".join(actions[:3]) + (" ..." if len(actions) > 3 else "") if isinstance(actions, list) \
            else str(actions)
        text = f"{statement.get('Effect', '?')} {action} to {_principal_text(statement.get('Principal'))}"
        conditions = [f"{key}={value}" for test in (statement.get("Condition") or {}).values()
                      if isinstance(test, dict) for key, value in test.items()]
        parts.append(text + (f" if {', '.join(conditions[:2])}" if conditions else ""))
    text = "; ".join(parts) or "empty policy"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _event_summary(row: dict[str, Any], detail: str) -> dict[str, Any]:
    return {"eventID": row["eventid"], "eventTime": row["eventtime"], "region": row["region"],
            "eventSource": row["eventsource"], "eventName": row["eventname"], "errorCode": row.get("errorcode"),
            "sourceIPAddress": row.get("sourceipaddress"), "userAgent": row.get("useragent"), "detail": detail}


def findings_from_events(rows: list[dict[str, Any]], config: DetectionConfig) -> list[Finding]:
    """Group flagged events into one finding per control, account and principal."""
    groups: dict[tuple[str, str, str], list[tuple[dict[str, Any], str]]] = {}
    for row in rows:
        fired = {control.id for control in CONTROLS if control.column and row.get(control.column)}
        for first, others in SUBSUMED.items():
            if first in fired:
                fired -= set(others)
        for control_id in sorted(fired):
            control = CONTROLS_BY_ID[control_id]
            groups.setdefault((control.id, row["account"], row["principal"]), []).append(
                (row, event_detail(control, row)))
    findings = []
    for (control_id, account, principal), matches in groups.items():
        control = CONTROLS_BY_ID[control_id]
        names: dict[str, int] = {}
        for row, _ in matches:
            names[row["eventname"]] = names.get(row["eventname"], 0) + 1
        calls = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in sorted(names.items()))
        first_detail = matches[0][1]
        why = f"{control.title}: {calls} by {principal}"
        if control.id in ("world-open-security-group", "credentials-for-another-user", "monitoring-disabled",
                          "console-login-without-mfa"):
            why += f" ({first_detail}{'; ...' if len(matches) > 1 else ''})"
        why += f". Rule: {control.rule}."
        severity = "critical" if control.critical_calls & set(names) else control.severity
        findings.append(Finding(
            control.id, control.title, severity, control.cis_numbers, account, principal, len(matches),
            min(r["eventtime"] for r, _ in matches), max(r["eventtime"] for r, _ in matches), why,
            [_event_summary(r, d) for r, d in matches[: config.max_events_per_finding]],
        ))
    return findings


# --- the detection library -----------------------------------------------------------------------------


def _distinct_details(detection: Detection, matches: list[dict[str, Any]]) -> set[str]:
    """The distinct details of matching events; the items of a JSON array each count with `list_details`."""
    details = {str(r["detail"]) for r in matches if r.get("detail") is not None}
    if not detection.threshold.list_details:
        return details
    items: set[str] = set()
    for detail in details:
        try:
            value = json.loads(detail)
        except ValueError:
            value = detail
        if isinstance(value, list):
            items.update(str(item) for item in value)
        else:
            items.add(detail)
    return items


def _reaches_threshold(detection: Detection, matches: list[dict[str, Any]], shared: set[str]) -> bool:
    threshold = detection.threshold
    details = _distinct_details(detection, matches)
    sources = {r["sourceipaddress"] for r in matches if r.get("sourceipaddress")} - shared
    return (len(matches) >= threshold.min_events
            and (threshold.min_distinct_details <= 1 or len(details) >= threshold.min_distinct_details)
            and (threshold.min_distinct_sources <= 1 or len(sources) >= threshold.min_distinct_sources))


def _library_group_finding(detection: Detection, account: str, principal: str, matches: list[dict[str, Any]],
                           config: DetectionConfig) -> Finding:
    """The finding of one principal's matching events (those of the groups that reached the threshold)."""
    details = sorted(_distinct_details(detection, matches))
    sources = sorted({r["sourceipaddress"] for r in matches if r.get("sourceipaddress")})
    names: dict[str, int] = {}
    for row in matches:
        names[row["eventname"]] = names.get(row["eventname"], 0) + 1
    calls = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in sorted(names.items()))
    why = f"{detection.title}: {calls} by {principal}"
    if details:
        why += f" ({len(details)} distinct: {', '.join(details[:5])}{', ...' if len(details) > 5 else ''})"
    if detection.threshold.min_distinct_sources > 1:
        why += f" from {len(sources)} addresses: {', '.join(sources[:5])}"
    why += f". Rule: library detection {detection.id} (ATT&CK {detection.technique}, {detection.tactic})."
    return Finding(
        detection.id, detection.title, detection.severity, None, account, principal, len(matches),
        min(r["eventtime"] for r in matches), max(r["eventtime"] for r in matches), why,
        [_event_summary(r, f"{r['eventname']}{': ' + str(r['detail']) if r.get('detail') else ''}")
         for r in matches[: config.max_events_per_finding]],
        {"distinct": details[:20], "distinct_count": len(details), "source_ips": sources[:20],
         "references": list(detection.references)},
        technique=detection.technique, tactic=detection.tactic)


def library_findings(rows: list[dict[str, Any]], config: DetectionConfig) -> list[Finding]:
    """One finding per library detection, account and principal (per detail value where the detection says so)."""
    findings = []
    for detection in load_library():
        per_principal: dict[tuple[str, str], dict[str | None, list[dict[str, Any]]]] = {}
        for row in rows:
            if row[detection.column]:
                part = row.get("detail") if detection.threshold.per_detail else None
                per_principal.setdefault((row["account"], row["principal"]), {}).setdefault(part, []).append(row)
        for (account, principal), groups in per_principal.items():
            qualifying: list[dict[str, Any]] = []
            for part, matches in groups.items():
                shared = ({r["sourceipaddress"] for other, rows_of in groups.items() if other != part
                           for r in rows_of} if detection.threshold.unshared_sources else set())
                if _reaches_threshold(detection, matches, shared):
                    qualifying += matches
            if qualifying:
                qualifying.sort(key=lambda r: (r["eventtime"], r["eventid"]))
                findings.append(_library_group_finding(detection, account, principal, qualifying, config))
    return findings


# --- pattern controls ------------------------------------------------------------------------------------


def _pattern_finding(control_id: str, account: str, principal: str | None, count: int, row: dict[str, Any],
                     why: str, details: dict[str, Any], events: list[dict[str, Any]],
                     config: DetectionConfig) -> Finding:
    control = CONTROLS_BY_ID[control_id]
    return Finding(control.id, control.title, control.severity, None, account, principal, count,
                   row["first_seen"], row["last_seen"], f"{why}. Rule: {control.rule}.",
                   events[: config.max_events_per_finding], details)


def run_detections(con: Engine, day: date,
                   config: DetectionConfig | None = None) -> DetectionResult:
    """Every control for one day, findings sorted by severity then time."""
    config = config or DetectionConfig()
    suppressions = load_suppressions(config.suppression_file) if config.suppression_file else []
    notes: list[str] = []
    since = day - timedelta(days=config.routine_history_days)
    con.use_derived("security_flags", since, day)
    con.use_derived(DERIVED_NAME, since, day)
    rows = run_report_sql(con, "security_events", day=day)
    findings = findings_from_events(rows, config)
    findings += library_findings(run_report_sql(con, "detection_events_day", day=day), config)
    # The pattern queries count; their events are rows already read by security_events (the same predicates).
    denied: dict[tuple[str, str], list[dict[str, Any]]] = {}
    failed_logins: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["cis_4_1"]:
            denied.setdefault((row["account"], row["principal"]), []).append(
                _event_summary(row, f"{row['eventname']} denied: {row['errorcode']}"))
        if row["console_login_failed"]:
            failed_logins.setdefault(row["account"], []).append(
                _event_summary(row, f"failed sign-in as {row['user_name'] or row['principal']}"))

    for row in run_report_sql(con, "security_access_denied_burst", day=day,
                              min_apis=config.access_denied_min_apis, min_share=config.access_denied_min_share):
        apis = sorted(row["api_list"] or [])
        findings.append(_pattern_finding(
            "access-denied-burst", row["account"], row["principal"], row["denials"], row,
            f"{row['principal']} was denied {row['denials']} times on {row['apis']} distinct APIs "
            f"({row['denied_share']:.0%} of its {row['calls']} calls), e.g. {', '.join(apis[:5])}",
            {"apis": apis, "regions": sorted(row["regions"] or []), "source_ips": sorted(row["source_ips"] or []),
             "denied_share": row["denied_share"]}, denied.get((row["account"], row["principal"]), []), config))

    for row in run_report_sql(con, "security_password_spraying", day=day, min_users=config.spraying_min_users):
        users = sorted(row["user_list"] or [])
        events = [e for e in failed_logins.get(row["account"], []) if e["sourceIPAddress"] == row["source_ip"]]
        findings.append(_pattern_finding(
            "password-spraying", row["account"], None, row["failures"], row,
            f"{row['failures']} failed console sign-ins for {row['user_names']} user names "
            f"({row['hidden_names']} hidden by CloudTrail as non-existent) in account {row['account']} "
            f"from {row['source_ip']}",
            {"user_names": users, "source_ip": row["source_ip"]}, events, config))

    regions_since = day - timedelta(days=config.new_region_history_days)
    first_day = min(regions_since, since)
    con.use_derived("region_days", first_day, day)
    used = run_report_sql(con, "security_regions_used", since=first_day, day=day)
    seen = {(row["account"], row["region"]) for row in used if regions_since <= row["event_date"] < day}
    accounts_seen = {account for account, _ in seen}
    today = {(row["account"], row["region"]) for row in used if row["event_date"] == day}
    new_regions = sorted(pair for pair in today - seen if pair[0] in accounts_seen)
    for account, region in new_regions:
        activity = run_report_sql(con, "security_region_activity", day=day, account=account, region=region)
        if not activity:
            continue
        row = activity[0]
        principals = sorted(row["principal_list"] or [])
        finding = _pattern_finding(
            "new-region", row["account"], principals[0] if len(principals) == 1 else None, row["events"], row,
            f"{row['events']} calls in {row['region']} by {row['principals']} principal(s); account "
            f"{row['account']} had no events there in the previous {config.new_region_history_days} days",
            {"region": row["region"], "principals": principals[:20], "apis": sorted(row["api_list"] or [])[:20],
             "source_ips": sorted(row["source_ips"] or [])[:20]}, [], config)
        first_calls = run_report_sql(con, "security_region_events", day=day, account=row["account"],
                                     region=row["region"], limit=config.max_events_per_finding)
        finding.events = [{"eventID": e["eventid"], "eventTime": e["eventtime"], "region": row["region"],
                           "eventSource": e["eventsource"], "eventName": e["eventname"], "errorCode": e["errorcode"],
                           "sourceIPAddress": e["sourceipaddress"], "userAgent": e["useragent"],
                           "detail": f"{e['principal']} called {e['eventname']}"} for e in first_calls]
        findings.append(finding)
    if not accounts_seen:
        notes.append(f"no earlier days in the lake: first activity in a region cannot be judged for {day}")

    history_days = len({row["event_date"] for row in used if since <= row["event_date"] < day})
    history = routine_history(run_report_sql(con, "security_events_history", since=since, day=day),
                              run_report_sql(con, "detection_events_history", since=since, day=day),
                              config, history_days)
    if history_days < config.routine_history_days:
        notes.append(f"the lake holds {history_days} of the {config.routine_history_days} days before {day}: "
                     "findings are marked new against that shorter history")
    triage(findings, history)
    findings, suppressed, expired = apply_suppressions(findings, suppressions, day)
    notes += expired
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (order[f.severity], not f.new, -f.magnitude["ratio"], f.first_seen, f.control,
                                 f.account, f.principal or ""))
    return DetectionResult(day, findings, notes, suppressed)


def routine_history(flag_rows: list[dict[str, Any]], library_rows: list[dict[str, Any]], config: DetectionConfig,
                    history_days: int) -> History:
    """Which detections fired for which account and principal on the days before, and their matching events.

    Per-event controls fire on any matching event; library detections are judged per day with their thresholds;
    the pattern controls are approximated from their flags (an access-denied burst from denials on at least
    `access_denied_min_apis` APIs, spraying from failed sign-ins for `spraying_min_users` names from one source).
    """
    fired: set[Key] = set()
    events: dict[Key, int] = {}

    def count(key: Key) -> None:
        events[key] = events.get(key, 0) + 1

    denied_apis: dict[tuple[date, str, str], set[str]] = {}
    sprayed: dict[tuple[date, str, str], set[str]] = {}
    for row in flag_rows:
        for control in CONTROLS:
            if control.column and row.get(control.column):
                key = (control.id, row["account"], row["principal"])
                fired.add(key)
                count(key)
        if row["cis_4_1"]:
            denied_apis.setdefault((row["event_date"], row["account"], row["principal"]), set()).add(
                f"{row['eventsource']}:{row['eventname']}")
            count(("access-denied-burst", row["account"], row["principal"]))
        if row["console_login_failed"]:
            name = row["user_name"] or row["principal_id"] or "unknown"
            hidden = name == "HIDDEN_DUE_TO_SECURITY_REASONS"
            sprayed.setdefault((row["event_date"], row["account"], row["sourceipaddress"] or "unknown"), set()).add(
                f"{name}#{row['eventid']}" if hidden else name)
            count(("password-spraying", row["account"], None))
    fired |= {("access-denied-burst", account, principal) for (_, account, principal), apis in denied_apis.items()
              if len(apis) >= config.access_denied_min_apis}
    fired |= {("password-spraying", account, None) for (_, account, _), names in sprayed.items()
              if len(names) >= config.spraying_min_users}
    by_day: dict[date, list[dict[str, Any]]] = {}
    for row in library_rows:
        by_day.setdefault(row["event_date"], []).append(row)
        for detection in load_library():
            if row[detection.column]:
                count((detection.id, row["account"], row["principal"]))
    for day_rows in by_day.values():
        fired |= {key_of(f) for f in library_findings(day_rows, config)}
    return History(frozenset(fired), events, history_days, config.routine_history_days)
