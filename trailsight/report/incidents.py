"""One story per incident: a day's findings and spike insights of one principal, grouped with a timeline.

A leaked key's reconnaissance shows up as an access-denied burst, many denied calls, a bulk secret read and a
few error-rate spikes; read one by one they are dozens of items, read together they are one event. An
incident is every finding of one account and principal on the day, plus the spikes whose top caller is that
principal (a role's sessions count as the role). An incident is told when it holds something new and high or
critical, or something new among at least three items; the rest are routine and left to the findings list.
"""

from __future__ import annotations

import re
from typing import Any

from trailsight.report.severity import SEVERITIES, SEVERITY_RANK

ASSUMED_ROLE = re.compile(r"^arn:aws[\w-]*:sts::(\d{12}):assumed-role/([^/]+)/")
INSIGHT_SEVERITY = "medium"  # a spike alone is worth a look, not an alarm
MIN_ITEMS = 3  # without anything new and high, an incident needs this many findings and spikes


def principal_of_arn(arn: str | None) -> str | None:
    """The principal the findings use for a caller ARN: an assumed-role session counts as its role."""
    if not arn:
        return None
    match = ASSUMED_ROLE.match(arn)
    return f"arn:aws:iam::{match[1]}:role/{match[2]}" if match else arn


def _top_caller(insight: dict[str, Any]) -> str | None:
    callers = (insight.get("attributions") or {}).get("insight", {}).get("userIdentityArn") or []
    return principal_of_arn(callers[0]["value"]) if callers else None


def build_incidents(findings: list[dict[str, Any]], insights: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The day's incidents worth telling, most severe first, each with its timeline."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for finding in findings:
        if finding.get("principal"):
            groups.setdefault((finding["account"], finding["principal"]), []).append({
                "time": finding["first_seen"], "until": finding["last_seen"], "kind": "finding",
                "what": finding["title"], "id": finding["control"], "severity": finding["severity"],
                "new": bool(finding.get("new")), "count": finding["count"], "technique": finding.get("technique"),
                "why": finding["why"]})
    for insight in insights:
        caller = _top_caller(insight)
        if caller and (insight["account"], caller) in groups:
            what = f"{insight['insight_type']} {insight['eventsource']}:{insight['eventname']}"
            groups[(insight["account"], caller)].append({
                "time": insight["start"], "until": insight["end"], "kind": "spike", "what": what,
                "id": insight["insight_id"], "severity": INSIGHT_SEVERITY, "new": True, "count": insight["calls"],
                "technique": None, "why": f"{insight['calls']} calls in {insight['duration_minutes']} min against "
                                          f"{insight['baseline_average']:.4f} a minute usually"})
    incidents = []
    for (account, principal), items in groups.items():
        worst = min(SEVERITIES.index(i["severity"]) for i in items)
        new_high = any(i["new"] and SEVERITY_RANK[i["severity"]] >= SEVERITY_RANK["high"] for i in items)
        if not (new_high or (any(i["new"] for i in items) and len(items) >= MIN_ITEMS)):
            continue  # routine, or one small new thing: left to the findings list
        items.sort(key=lambda i: (i["time"], i["kind"], i["what"]))
        incidents.append({
            "account": account, "principal": principal, "severity": SEVERITIES[worst],
            "new": any(i["new"] for i in items), "first_seen": items[0]["time"],
            "last_seen": max(i["until"] for i in items), "findings": sum(1 for i in items if i["kind"] == "finding"),
            "spikes": sum(1 for i in items if i["kind"] == "spike"),
            "techniques": sorted({i["technique"] for i in items if i["technique"]}), "timeline": items})
    incidents.sort(key=lambda i: (SEVERITIES.index(i["severity"]), not i["new"], -len(i["timeline"]),
                                  i["first_seen"]))
    return incidents
