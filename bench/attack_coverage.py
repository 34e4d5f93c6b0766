"""Which recorded attack techniques the daily security report cites, on recordings nobody here wrote.

Usage: python bench/attack_coverage.py --logs DIR [--work /tmp/attack-coverage] [--markdown FILE]

DIR holds one JSON file per technique, each a list of CloudTrail events as recorded while the technique ran:
the shape of Stratus Red Team's `docs/detonation-logs/aws.<tactic>.<technique>.json` (clone
github.com/DataDog/stratus-red-team and pass that folder; nothing is downloaded here). Each technique gets a lake
of its own, written from CloudTrail files laid out as AWS delivers them, so no technique borrows another's
events. A technique is cited when a finding of its day lists one of its events; the controls that cite it are
printed, so a technique cited only by a generic control (CIS 4.1, unauthorized calls) shows as such.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import uuid
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

from trailsight.lake.ingest import ingest
from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.report.detections import run_detections
from trailsight.storage.store import as_storage

GENERIC_CONTROLS = {"cis-4.1", "unauthorized-api-calls"}


def write_archive(events: list[dict[str, Any]], source: Path) -> set[date]:
    """The events as CloudTrail files, one per account, region and day; the days they cover."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        account = event.get("recipientAccountId") or event.get("userIdentity", {}).get("accountId") or "000000000000"
        groups[(account, event.get("awsRegion") or "us-east-1", event["eventTime"][:10])].append(event)
    for (account, region, day), records in groups.items():
        folder = source / "AWSLogs" / account / "CloudTrail" / region / day.replace("-", "/")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{account}_CloudTrail_{region}_{day.replace('-', '')}T0000Z_{uuid.uuid4().hex[:16]}.json.gz"
        (folder / name).write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    return {date.fromisoformat(day) for _, _, day in groups}


def cited_by(events: list[dict[str, Any]], work: Path) -> dict[str, int]:
    """Controls whose findings list events of this recording, with how many."""
    shutil.rmtree(work, ignore_errors=True)
    days = write_archive(events, work / "source")
    ingest(work / "source", work / "lake", min(days), max(days), workers=1)
    lake = as_storage(work / "lake")
    wanted = {e["eventID"] for e in events}
    controls: dict[str, int] = defaultdict(int)
    for day in sorted(days):
        con = DuckDBEngine(lake)
        try:
            result = run_detections(con, day)
        finally:
            con.close()
        for finding in result.findings:
            hits = sum(1 for e in finding.events if e.get("eventID") in wanted)
            if hits:
                controls[finding.control] += hits
    return dict(controls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/attack-coverage"))
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    lines = ["| technique | events | cited by |", "|---|---:|---|"]
    cited = generic_only = 0
    files = sorted(args.logs.glob("aws.*.json"))
    for path in files:
        technique = path.stem.removeprefix("aws.")
        events = json.loads(path.read_text())
        controls = cited_by(events, args.work / technique)
        if controls:
            cited += 1
            generic_only += set(controls) <= GENERIC_CONTROLS
        named = ", ".join(f"{c} ({n})" for c, n in sorted(controls.items())) or "NOT CITED"
        lines.append(f"| {technique} | {len(events)} | {named} |")
        print(f"{technique:60} {len(events):4} events  {named}")
    summary = f"{cited} of {len(files)} techniques cited ({generic_only} only by a generic control)"
    print(summary)
    if args.markdown:
        args.markdown.write_text("\n".join([*lines, "", summary, ""]))


if __name__ == "__main__":
    main()
