"""Daily-report benchmark: seconds per report, Parquet bytes read, and spike detection against ground truth.

Usage: python bench/reports_bench.py [--days 30] [--events-per-day 340000] [--data bench-data] [--seed 11]
       [--day YYYY-MM-DD] [--spike-days N]

Generates (once, cached under --data) a sample archive with the project's generator and ingests it into a lake
(30 days x 340,000 events = 10.2M events by default; ~2 minutes to generate and ~10 minutes to ingest on two
cores). Then, on the lake:

1. each report for one day (default: the last, which has the full 28-day history) in a fresh DuckDB
   connection: seconds, and Parquet bytes read (DuckDB profiling, `io.total_bytes_read`, summed over the
   report's queries) against the raw gzip bytes delivered that day;
2. the whole `write_daily_report` for that day;
3. the spike report on each day with an injected spike, where insights are found and attributed;
4. the spike report for every day that has history, scored against the generator's `ground_truth.json`:
   an incident is found when an insight of its type (and error code) on its account, region and API overlaps
   its window; an insight is correct when it overlaps an incident on its account, region and API;
5. the injected security incidents (root sign-in without MFA, world-open security group, StopLogging): each
   must be listed, by event ID, in the findings of the controls meant to catch it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

END = date(2024, 6, 30)
SPIKE_KINDS = {"api_call_rate_spike": "ApiCallRateInsight", "api_error_rate_burst": "ApiErrorRateInsight"}
SECURITY_KINDS = {"root_console_login_without_mfa": ("cis-4.3", "console-login-without-mfa"),
                  "security_group_open_to_world": ("world-open-security-group",),
                  "cloudtrail_stop_logging": ("cis-4.5",)}


# --- data ------------------------------------------------------------------------------------------------


def ensure_archive(data: Path, days: int, events_per_day: int, seed: int) -> Path:
    from trailsight.synth.generate import generate_archive

    archive = data / f"reports-archive-{days}d-{events_per_day}-s{seed}"
    if not (archive / "ground_truth.json").exists():
        shutil.rmtree(archive, ignore_errors=True)
        started = time.monotonic()
        summary = generate_archive(archive, days, seed=seed, end=END, events_per_day=events_per_day, workers=2)
        print(f"generated {summary.events:,} events in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return archive


def ensure_lake(data: Path, archive: Path, days: int) -> Path:
    from trailsight.lake.ingest import ingest
    from trailsight.lake.layout import FORMAT_KEY

    lake = data / archive.name.replace("archive", "lake")
    done = lake / "_bench_ready"
    if not (done.exists() and (lake / FORMAT_KEY).exists()):  # a lake of an older format is made again
        shutil.rmtree(lake, ignore_errors=True)
        started = time.monotonic()
        summary = ingest(archive, lake, END - timedelta(days=days - 1), END)
        print(f"ingested {summary.events_written:,} events in {time.monotonic() - started:.0f} s", file=sys.stderr)
        done.write_text("ok\n")
    return lake


def delivered_gzip_bytes(archive: Path, day: date) -> int:
    """Bytes of the CloudTrail log files delivered on `day` (the date folders are delivery dates)."""
    folder = f"{day:%Y/%m/%d}"
    return sum(p.stat().st_size for p in archive.rglob("*.json.gz")
               if "/CloudTrail/" in p.as_posix() and f"/{folder}/" in p.as_posix())


def lake_events(lake: Path, day: date) -> int:
    from trailsight.query.duckdb_engine import run_sql

    return run_sql(lake, "SELECT count(*) FROM cloudtrail WHERE event_date = $day", {"day": day}).rows[0][0]


# --- measuring -------------------------------------------------------------------------------------------


@dataclass
class Measure:
    """Bytes read and queries run while a report runs, collected by wrapping run_report_sql."""

    bytes_read: int = 0
    queries: list[tuple[str, float, int]] = field(default_factory=list)


def measured(measure: Measure) -> Callable[..., Any]:
    import trailsight.report.daily as reports

    original = reports.run_report_sql

    def run(engine: Any, name: str, **parameters: Any) -> Any:
        started = time.perf_counter()
        rows = original(engine, name, **parameters)
        info = json.loads(engine.con.get_profiling_information(format="json"))
        read = int(info.get("io", {}).get("total_bytes_read", 0))
        measure.bytes_read += read
        measure.queries.append((name, time.perf_counter() - started, read))
        return rows

    return run


def connection(lake: Path) -> Any:
    """The lake's DuckDB engine, as the reports get it, with DuckDB's profiling on."""
    from trailsight.query.duckdb_engine import DuckDBEngine

    engine = DuckDBEngine(lake)
    engine.con.execute("SET enable_profiling = 'no_output'")
    engine.con.execute("SET profiling_mode = 'detailed'")
    return engine


def run_report(lake: Path, name: str, day: date) -> tuple[float, Measure]:
    import trailsight.report.daily as reports

    measure = Measure()
    original = reports.run_report_sql
    reports.run_report_sql = measured(measure)
    con = connection(lake)
    try:
        started = time.perf_counter()
        reports.REPORTS[name](lake, day, engine=con)
        return time.perf_counter() - started, measure
    finally:
        reports.run_report_sql = original
        con.close()


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end


def score(lake: Path, archive: Path, days: list[date]) -> dict[str, Any]:
    from trailsight.query.duckdb_engine import DuckDBEngine
    from trailsight.report.insights import detect_spikes

    truth = [t for t in json.loads((archive / "ground_truth.json").read_text()) if t["kind"] in SPIKE_KINDS]
    for t in truth:
        t["start_at"] = datetime.fromisoformat(t["start"].replace("Z", "+00:00"))
        t["end_at"] = datetime.fromisoformat(t["end"].replace("Z", "+00:00"))
    insights = []
    seconds = []
    con = DuckDBEngine(lake)
    try:
        for day in days:
            started = time.perf_counter()
            insights += detect_spikes(lake, con, day).insights
            seconds.append(time.perf_counter() - started)
    finally:
        con.close()

    def same_api(i: Any, t: dict[str, Any]) -> bool:
        return (i.account, i.region, i.eventsource, i.eventname) == (t["account"], t["region"], t["eventSource"],
                                                                       t["eventName"])

    found = [t for t in truth if any(
        same_api(i, t) and i.insight_type == SPIKE_KINDS[t["kind"]]
        and (t["errorCode"] is None or i.errorcode == t["errorCode"])
        and overlaps(i.start, i.end, t["start_at"], t["end_at"]) for i in insights)]
    correct = [i for i in insights if any(
        same_api(i, t) and overlaps(i.start, i.end, t["start_at"], t["end_at"]) for t in truth)]
    false = [i.row() for i in insights if i not in correct]
    return {
        "incidents": len(truth), "found": len(found), "insights": len(insights), "correct": len(correct),
        "recall": len(found) / len(truth) if truth else 1.0,
        "precision": len(correct) / len(insights) if insights else 1.0,
        "missed": [f"{t['kind']} {t['account']} {t['region']} {t['eventName']} {t['start']}" for t in truth
                   if t not in found],
        "false_insights": false,
        "seconds_mean": sum(seconds) / len(seconds), "seconds_max": max(seconds), "days": len(days),
    }


def score_security(lake: Path, archive: Path) -> list[str]:
    """Each injected security incident: did every expected control list its events on its day?"""
    from trailsight.report.daily import security_report

    lines = []
    for incident in json.loads((archive / "ground_truth.json").read_text()):
        expected = SECURITY_KINDS.get(incident["kind"])
        if not expected:
            continue
        day = date.fromisoformat(incident["start"][:10])
        findings = security_report(lake, day)["findings"]
        hits = {f["control"] for f in findings for e in f["events"] if e.get("eventID") in incident["eventIDs"]}
        missing = [c for c in expected if c not in hits]
        verdict = f"MISSED by {', '.join(missing)}" if missing else f"found by {', '.join(expected)}"
        lines.append(f"{incident['kind']} on {day}: {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--events-per-day", type=int, default=340_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--data", type=Path, default=Path("bench-data"))
    parser.add_argument("--day", type=date.fromisoformat, default=None, help="report day (default: the last)")
    parser.add_argument("--spike-days", type=int, default=None, help="score spikes on the last N days only")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)

    from trailsight.report.daily import REPORTS, write_daily_report

    archive = ensure_archive(args.data, args.days, args.events_per_day, args.seed)
    lake = ensure_lake(args.data, archive, args.days)
    day = args.day or END
    gzip_bytes = delivered_gzip_bytes(archive, day)
    events = lake_events(lake, day)
    print(f"lake: {lake} ({args.days} days x {args.events_per_day:,} events/day); report day {day}: "
          f"{events:,} events, {gzip_bytes / 1e6:,.1f} MB of gzip delivered that day\n")

    print(f"{'report':<14}{'seconds':>9}{'MB read':>10}{'% gzip':>8}  queries")
    for name in REPORTS:
        run_report(lake, name, day)  # warm the OS cache once
        seconds, measure = run_report(lake, name, day)
        print(f"{name:<14}{seconds:>9.2f}{measure.bytes_read / 1e6:>10.1f}"
              f"{100 * measure.bytes_read / gzip_bytes:>7.1f}%  {len(measure.queries)}")
    print()

    incident_days = sorted({date.fromisoformat(t["start"][:10]) for t in json.loads(
        (archive / "ground_truth.json").read_text()) if t["kind"] in SPIKE_KINDS})
    print("the spike report on the days with an injected spike (insights found read their windows' events):")
    for spike_day in incident_days:
        run_report(lake, "spikes", spike_day)
        seconds, measure = run_report(lake, "spikes", spike_day)
        print(f"  {spike_day}: {seconds:.2f} s, {measure.bytes_read / 1e6:.1f} MB read, "
              f"{100 * measure.bytes_read / delivered_gzip_bytes(archive, spike_day):.1f}% of its gzip")
    print()

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        summary = write_daily_report(lake, day, out)
        print(f"write_daily_report: {time.perf_counter() - started:.2f} s for {len(summary.files)} files; "
              f"{summary.spikes} spike(s), findings {summary.findings}\n")

    first = END - timedelta(days=args.days - 1)
    spike_days = [first + timedelta(days=i) for i in range(1, args.days)]
    if args.spike_days:
        spike_days = spike_days[-args.spike_days:]
    result = score(lake, archive, spike_days)
    print(f"spikes over {result['days']} days: {result['incidents']} injected incidents, {result['found']} found; "
          f"{result['insights']} insights, {result['correct']} on an incident")
    print(f"recall {result['recall']:.2f} (target >= 0.9), precision {result['precision']:.2f} (target >= 0.8); "
          f"spike report {result['seconds_mean']:.2f} s per day on average, {result['seconds_max']:.2f} s at most")
    for missed in result["missed"]:
        print(f"  missed: {missed}")
    for false in result["false_insights"]:
        print(f"  not an incident: {false['insight_type']} {false['account']} {false['region']} "
              f"{false['eventname']} {false['errorcode'] or ''} {false['start']} {false['duration_minutes']} min "
              f"peak {false['peak_minute_calls']} threshold {false['threshold']}")
    print()
    for line in score_security(lake, archive):
        print(f"security incident {line}")
    print(f"\nfinished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
