"""The detection library: one YAML file per detection in `sql/detections/`, loaded and checked in one place.

A detection is an SQL predicate over one event (`match`, on the columns of the `cloudtrail_calls` view), an
optional SQL expression saying what about the event matters (`detail`: the secret read, the role changed), an
optional threshold over the matching events of one principal in a day, and what a reader needs to act: title,
ATT&CK technique and tactic, severity, rationale and references.

All predicates are compiled into one derived table, `detection_events` (one boolean column per detection, rows
kept only when one matches), which the lake writer materialises beside each data file like `security_flags`:
the daily report reads a day's few matching rows, not its request parameters. Athena computes the same table
from the same SQL, inlined as a WITH clause, so the predicates are written in the dialect both engines share
(DuckDB SQL that sqlglot renders for Athena) and bind no parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from trailsight.errors import UsageError
from trailsight.resources import package_folder

DETECTIONS_DIR = package_folder("trailsight.sql") / "detections"
DERIVED_NAME = "detection_events"
SEVERITY_LEVELS = ("critical", "high", "medium", "low")
TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
QUOTED = re.compile(r"'[^']*'")
IDENTIFIER = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
REQUIRED = ("id", "title", "technique", "tactic", "severity", "rationale", "references", "match")
THRESHOLD_KEYS = {"min_events", "min_distinct_details", "min_distinct_sources", "per_detail", "unshared_sources",
                  "list_details"}
# Columns every matching row keeps; enough to show the event and to group it by principal.
EVENT_COLUMNS = (
    "event_date", "account", "region", "eventid", "eventtime", "eventsource", "eventname",
    "nullif(errorcode, '') AS errorcode", "errormessage", "sourceipaddress", "useragent", "principal",
    "coalesce(useridentity.type, 'Unknown') AS principal_type", "useridentity.principalid AS principal_id",
)


@dataclass(frozen=True)
class Threshold:
    """How many matching events of one principal in a day make a finding (all 1 by default).

    With `per_detail` the events are counted per detail value (e.g. per instance session) instead of per principal,
    and with `unshared_sources` only the source addresses no other detail value of the principal used that day
    count (a fleet of instances sharing NAT addresses is not one instance used from elsewhere). With
    `list_details` a detail that is a JSON array (`json_format(json_extract(...))`) counts each of its items, so
    ten parameter names read in one call count as ten.
    """

    min_events: int = 1
    min_distinct_details: int = 1
    min_distinct_sources: int = 1
    per_detail: bool = False
    unshared_sources: bool = False
    list_details: bool = False


@dataclass(frozen=True)
class Detection:
    id: str
    title: str
    technique: str
    tactic: str
    severity: str
    rationale: str
    references: tuple[str, ...]
    match: str
    detail: str | None = None
    threshold: Threshold = field(default_factory=Threshold)

    @property
    def column(self) -> str:
        """Its boolean column in `detection_events`."""
        return "d_" + self.id.replace("-", "_")

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "severity": self.severity, "technique": self.technique,
                "tactic": self.tactic, "rationale": self.rationale, "references": list(self.references),
                "rule": " ".join(self.match.split()), "threshold": self.threshold.__dict__}


def parse_detection(name: str, data: Any) -> Detection:
    """One detection from its YAML mapping; a malformed file is a clear UsageError naming the file."""
    if not isinstance(data, dict):
        raise UsageError(f"detection {name}: expected a mapping of id, title, technique, ...")
    missing = [key for key in REQUIRED if not data.get(key)]
    if missing:
        raise UsageError(f"detection {name}: missing {', '.join(missing)}")
    if data["id"] != name or not IDENTIFIER.match(name):
        raise UsageError(f"detection {name}: id must be the file name in lower-case-with-dashes, got {data['id']!r}")
    if data["severity"] not in SEVERITY_LEVELS:
        raise UsageError(f"detection {name}: severity must be one of {', '.join(SEVERITY_LEVELS)}")
    if not TECHNIQUE.match(str(data["technique"])):
        raise UsageError(f"detection {name}: technique must be an ATT&CK id like T1098 or T1098.003")
    threshold = data.get("threshold") or {}
    unknown = set(threshold) - THRESHOLD_KEYS
    if unknown:
        raise UsageError(f"detection {name}: unknown threshold keys {sorted(unknown)}")
    for text in (data["match"], data.get("detail") or ""):
        unquoted = QUOTED.sub("", text)
        if "?" in unquoted or "$" in unquoted:
            raise UsageError(f"detection {name}: SQL must not bind parameters (it runs inside a derived table)")
    return Detection(name, data["title"], data["technique"], data["tactic"], data["severity"],
                     " ".join(str(data["rationale"]).split()), tuple(data["references"]), data["match"].strip(),
                     (data.get("detail") or "").strip() or None, Threshold(**threshold))


@cache
def load_library() -> tuple[Detection, ...]:
    """Every detection of `sql/detections/*.yaml`, sorted by id."""
    return tuple(parse_detection(path.stem, yaml.safe_load(path.read_text()))
                 for path in sorted(DETECTIONS_DIR.glob("*.yaml")))


@cache
def library_by_id() -> dict[str, Detection]:
    return {d.id: d for d in load_library()}


def derived_sql(detections: tuple[Detection, ...]) -> str:
    """The `detection_events` derived table: one boolean column per detection, the detail, matching rows only."""
    # TRY: a free-form JSON column kept exactly as delivered (a lone surrogate, say) cannot stop a whole file's
    # derived table; that row simply matches nothing. Trino (Athena) has the same TRY.
    flags = ",\n".join(f"        coalesce(TRY(({d.match})), false) AS {d.column}" for d in detections)
    # One detail per row: detections that group by it (per_detail) come first, so their groups stay whole when an
    # event also matches another detection.
    ordered = sorted((d for d in detections if d.detail), key=lambda d: not d.threshold.per_detail)
    details = "\n".join(f"            WHEN {d.column} THEN TRY(CAST(({d.detail}) AS VARCHAR))" for d in ordered)
    columns = ", ".join(c.split(" AS ")[-1].split(".")[-1] for c in EVENT_COLUMNS)
    header = ("-- title: Events a library detection matches\n"
              "-- description: One boolean column per detection of sql/detections (d_<id>) and the detail of the "
              "first that has one; only rows matching at least one detection are kept.\n"
              "-- parameters: none\n")
    return (f"{header}WITH matched AS (\n    SELECT\n        {', '.join(EVENT_COLUMNS)},\n"
            f"        requestparameters, responseelements, additionaleventdata, useridentity,\n{flags}\n"
            f"    FROM cloudtrail_calls\n)\n"
            f"SELECT {columns}, {', '.join(d.column for d in detections)},\n"
            f"    CASE\n{details or '        WHEN false THEN NULL'}\n    END AS detail\n"
            f"FROM matched\nWHERE {' OR '.join(d.column for d in detections) or 'false'}")
