"""Alerts: the batch version of CloudTrail → CloudWatch alarm → SNS.

Findings at or above a severity are grouped (one message per control and account per day) and published to
an SNS topic and/or a webhook. Each group's fingerprint is recorded in the lake once it is sent, so re-running
a day alerts nothing new.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from trailsight.errors import AlertError, UsageError
from trailsight.report.severity import SEVERITY_RANK
from trailsight.storage.aws import client
from trailsight.storage.store import Storage, as_storage

LEDGER_PREFIX = "_trailsight/alerts"
MAX_EVENTS_LISTED = 5


@dataclass(frozen=True)
class Alert:
    fingerprint: str
    severity: str
    subject: str
    message: str
    attributes: dict[str, str]


def _at_least(severity: str, minimum: str) -> bool:
    if minimum not in SEVERITY_RANK:
        raise UsageError(f"unknown severity {minimum!r}; use one of {', '.join(SEVERITY_RANK)}")
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[minimum]


def alerts_from_findings(day: date, findings: list[dict[str, Any]], min_severity: str = "high") -> list[Alert]:
    """One alert per (control, account) among the findings at or above `min_severity`; new ones first (a
    detection that did not fire for the principal in the week before), then by severity and magnitude."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for finding in findings:
        if _at_least(finding["severity"], min_severity):
            groups.setdefault((finding["control"], finding["account"]), []).append(finding)
    ranked: list[tuple[tuple[int, int, float], Alert]] = []
    for (control, account), members in sorted(groups.items()):
        first = members[0]
        severity = max((m["severity"] for m in members), key=lambda s: SEVERITY_RANK.get(s, 0))
        count = sum(int(m.get("count") or 0) for m in members)
        principals = sorted({m.get("principal") or "-" for m in members})
        event_ids = [e.get("eventid") for m in members for e in m.get("events", []) if e.get("eventid")]
        new = any(m.get("new") for m in members)
        ratio = max(float((m.get("magnitude") or {}).get("ratio", 0)) for m in members)
        subject = f"[trailsight] {'NEW ' if new else ''}{severity.upper()} {first['title']} in {account} on {day}"
        lines = [
            f"{first['title']} ({control}), severity {severity}, account {account}, {day}.",
            f"Why: {first.get('why', '')}",
            f"Events: {count}; principals: {', '.join(principals[:10])}",
        ]
        if ratio >= 10:
            lines.append(f"Magnitude: {ratio:,.0f} times the principal's usual daily count")
        if event_ids:
            lines.append(f"Event IDs (first {MAX_EVENTS_LISTED}): {', '.join(event_ids[:MAX_EVENTS_LISTED])}")
        fingerprint = hashlib.sha256(f"{day}|{control}|{account}".encode()).hexdigest()[:32]
        alert = Alert(fingerprint, severity, subject[:100], "\n".join(lines),
                      {"severity": severity, "control": control, "account": account, "day": str(day),
                       "new": str(new).lower()})
        ranked.append(((0 if new else 1, -SEVERITY_RANK.get(severity, 0), -ratio), alert))
    return [alert for _, alert in sorted(ranked, key=lambda pair: pair[0])]


@dataclass
class AlertOutcome:
    sent: list[str] = field(default_factory=list)
    already_sent: list[str] = field(default_factory=list)


def _post_webhook(url: str, alert: Alert) -> None:
    body = json.dumps({"subject": alert.subject, "text": alert.message, **alert.attributes}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            response.read()
    except (urllib.error.URLError, TimeoutError) as exc:
        raise AlertError(f"webhook {url} refused the alert: {exc}") from exc


def _publish_sns(topic_arn: str, alert: Alert) -> None:
    attributes = {k: {"DataType": "String", "StringValue": v} for k, v in alert.attributes.items()}
    try:
        client("sns").publish(TopicArn=topic_arn, Subject=alert.subject, Message=alert.message,
                              MessageAttributes=attributes)
    except (ClientError, BotoCoreError) as exc:
        raise AlertError(f"cannot publish to {topic_arn}: {exc}") from exc


def publish_alerts(alerts: list[Alert], lake: str | Storage, sns_topic_arn: str | None = None,
                   webhook_url: str | None = None) -> AlertOutcome:
    """Send each alert not sent before, then record it in the lake's ledger."""
    lake = as_storage(lake)
    outcome = AlertOutcome()
    if not (sns_topic_arn or webhook_url):
        return outcome
    for alert in alerts:
        marker = f"{LEDGER_PREFIX}/{alert.fingerprint}.json"
        if lake.exists(marker):
            outcome.already_sent.append(alert.subject)
            continue
        if sns_topic_arn:
            _publish_sns(sns_topic_arn, alert)
        if webhook_url:
            _post_webhook(webhook_url, alert)
        lake.write_bytes(marker, json.dumps({"subject": alert.subject, **alert.attributes}).encode())
        outcome.sent.append(alert.subject)
    return outcome
