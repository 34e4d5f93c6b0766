"""Triage of findings: new versus routine, magnitude against the principal's own history, and suppressions.

A finding is *new* when the same detection did not fire for the same account and principal on any of the
previous `history_days` days of the lake. Its *magnitude* is its count of events against that principal's daily
average of matching events over those days (zeros included); a count ten times (a hundred times) the usual raises
the severity one (two) levels, so 700 failed sign-ins in an hour are not the same finding as one; a routine
finding (not new) under twice its usual count is lowered one level, so what a principal does every week at its
usual volume does not crowd out what is new. The report and alerts list new and high-magnitude findings first.

Suppressions are data (a YAML file): detection id, principal pattern, account, reason and expiry. They are applied
to the findings in Python after the queries, so they hold the same on DuckDB and Athena; suppressed findings are
kept in the report, apart, with the reason, and an expired entry is reported rather than applied.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import yaml

from trailsight.errors import UsageError
from trailsight.report.severity import SEVERITY_RANK, raised

RAISE_AT = ((100.0, 2), (10.0, 1))  # ratio to the principal's usual daily count -> severity steps
ROUTINE_RATIO = 2.0  # a routine finding below twice its usual count is lowered one level


class Triaged(Protocol):
    control: str
    account: str
    principal: str | None
    severity: str
    count: int
    details: dict[str, Any]


Key = tuple[str, str, str | None]


def key_of(finding: Triaged) -> Key:
    return (finding.control, finding.account, finding.principal)


@dataclass(frozen=True)
class History:
    """What the previous days held: keys that fired on some day, and matching events per key over the days."""

    fired: frozenset[Key]
    events: dict[Key, int]
    days: int  # days of history the lake actually had
    window: int  # days asked for


def magnitude_steps(ratio: float) -> int:
    return next((steps for floor, steps in RAISE_AT if ratio >= floor), 0)


def triage(findings: Iterable[Any], history: History) -> None:
    """Set `new`, `magnitude` and the raised severity on each finding, in place."""
    for finding in findings:
        key = key_of(finding)
        baseline = history.events.get(key, 0) / max(history.window, 1)
        ratio = finding.count / max(baseline, 1.0)
        finding.new = key not in history.fired
        finding.base_severity = finding.severity
        finding.magnitude = {"count": finding.count, "usual_per_day": round(baseline, 2), "ratio": round(ratio, 1),
                             "history_days": history.days}
        steps = magnitude_steps(ratio)
        if not finding.new and ratio < ROUTINE_RATIO:
            steps = -1  # what this principal does every few days, at its usual volume
        finding.severity = raised(finding.severity, steps)


def attention_order(finding: Any) -> tuple[int, int, float]:
    """Sort key: new first, then more severe, then larger magnitude."""
    return (0 if finding.new else 1, -SEVERITY_RANK[finding.severity], -finding.magnitude["ratio"])


@dataclass(frozen=True)
class Suppression:
    detection: str  # a detection id, or a glob such as "cis-4.*"
    principal: str  # a glob over the finding's principal ("*" for any, also for findings without one)
    account: str  # an account id or "*"
    reason: str
    expires: date

    def matches(self, finding: Triaged) -> bool:
        return (fnmatch.fnmatchcase(finding.control, self.detection)
                and fnmatch.fnmatchcase(finding.principal or "", self.principal)
                and (self.account == "*" or self.account == finding.account))


def load_suppressions(path: str | Path) -> list[Suppression]:
    """The suppression file: a YAML list of {detection, principal, account, reason, expires}."""
    try:
        entries = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read suppression file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"suppression file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(entries, list):
        raise UsageError(f"suppression file {path}: expected a list of entries")
    rules = []
    for number, entry in enumerate(entries, 1):
        missing = [k for k in ("detection", "principal", "reason", "expires") if not (entry or {}).get(k)]
        if missing:
            raise UsageError(f"suppression file {path}, entry {number}: missing {', '.join(missing)}")
        expires = entry["expires"]
        if not isinstance(expires, date):
            try:
                expires = date.fromisoformat(str(expires))
            except ValueError:
                raise UsageError(f"suppression file {path}, entry {number}: expires must be YYYY-MM-DD") from None
        rules.append(Suppression(str(entry["detection"]), str(entry["principal"]), str(entry.get("account", "*")),
                                 str(entry["reason"]), expires))
    return rules


def apply_suppressions(findings: list[Any], rules: list[Suppression], day: date
                       ) -> tuple[list[Any], list[dict[str, Any]], list[str]]:
    """Findings kept, the suppressed ones (finding key and reason) and notes about expired entries."""
    active = [rule for rule in rules if rule.expires >= day]
    notes = [f"suppression of {r.detection} for {r.principal} expired on {r.expires}; not applied"
             for r in rules if r.expires < day]
    kept, suppressed = [], []
    for finding in findings:
        rule = next((r for r in active if r.matches(finding)), None)
        if rule is None:
            kept.append(finding)
        else:
            suppressed.append({"control": finding.control, "account": finding.account,
                               "principal": finding.principal, "severity": finding.severity, "count": finding.count,
                               "reason": rule.reason, "expires": rule.expires})
    return kept, suppressed, notes
