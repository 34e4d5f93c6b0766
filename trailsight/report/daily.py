"""Daily reports: each report runs the `sql/` files of one question for one UTC day and returns plain data.

Reports (names are what `--reports` takes):
  summary       headline numbers and calls per hour (always computed: the HTML page's headline needs it)
  top_callers   per principal, plus top APIs, top source IPs and the read/write split per identity type
  failed_calls  failures by error code (with its family), by API, by principal, and new kinds of failure
  spikes        Insights-style API call-rate and error-rate spikes (see `trailsight.report.insights`)
  security      CIS AWS Foundations monitoring controls and the usual extras (see `trailsight.report.detections`)

`write_daily_report` writes one JSON file per report, CSV files for the tables, `insights.json` (Insights
records in AWS's own shape), a Markdown summary and a self-contained HTML page into one folder.
"""

from __future__ import annotations

import csv
import difflib
import io
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from trailsight.errors import UsageError
from trailsight.integrity.digests import verify_digests
from trailsight.lake import layout
from trailsight.query.engine import Engine, EngineSettings, open_engine
from trailsight.report.incidents import build_incidents
from trailsight.report.queries import Rows, run_report_sql
from trailsight.resources import package_folder
from trailsight.storage.store import Storage, as_storage

if TYPE_CHECKING:
    from trailsight.report.detections import DetectionConfig
    from trailsight.report.insights import SpikeConfig

LakeLike = str | Path | Storage
DEFAULT_LIMIT = 50
LIST_LIMIT = 20
MESSAGE_LIMIT = 300
NEW_FAILURE_DAYS = 7
TREND_DAYS = 7
BREAKDOWN_COUNTS = ("events", "failed", "writes", "root_events", "principals")
DENIED_FAMILIES = ("access_denied", "authentication")
NOISE_FAMILIES = ("throttling", "not_found", "conflict", "dry_run")


# --- connections -------------------------------------------------------------------------------------


@contextmanager
def lake_engine(lake: LakeLike, engine: Engine | None = None) -> Iterator[Engine]:
    """The given engine, or DuckDB over the lake, closed afterwards."""
    if engine is not None:
        yield engine
        return
    own = open_engine(as_storage(lake))
    try:
        yield own
    finally:
        own.close()


def as_day(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{value!r} is not a date; use YYYY-MM-DD") from None


def _trim(values: list[Any] | None, limit: int = LIST_LIMIT) -> list[Any]:
    return sorted(v for v in values or [] if v is not None)[:limit]


def _message(text: str | None) -> str | None:
    if text is None or len(text) <= MESSAGE_LIMIT:
        return text
    return text[:MESSAGE_LIMIT] + "…"


# --- the reports -----------------------------------------------------------------------------------------


def summary_report(lake: LakeLike, day: date | str, engine: Engine | None = None) -> dict[str, Any]:
    """Headline numbers, the 24 hours of the day (hours without calls included as zeros), the day per account
    and per region, and the TREND_DAYS days up to it (findings of earlier days as the daily job recorded them)."""
    day = as_day(day)
    storage = as_storage(lake)
    since = day - timedelta(days=TREND_DAYS - 1)
    with lake_engine(storage, engine) as c:
        rows = run_report_sql(c, "summary", day=day)
        per_day = {as_day(r["day"]): r for r in run_report_sql(c, "summary_trend", day=day, since=since)}
        parts = _dimensions(run_report_sql(c, "summary_breakdown", day=day))
    headline = {k: v for k, v in rows[0].items() if k != "hour"}
    headline["failed_rate"] = round(headline["failed"] / headline["events"], 4) if headline["events"] else 0.0
    hours = {row["hour"]: row for row in rows[1:]}

    def hour(h: int) -> dict[str, int]:
        row = hours.get(h, {})
        return {"hour": h, "calls": row.get("events", 0), "reads": row.get("reads", 0),
                "writes": row.get("writes", 0), "failed": row.get("failed", 0)}

    per_hour = [hour(h) for h in range(24)]
    trend = []
    for offset in range(TREND_DAYS):
        when = since + timedelta(days=offset)
        recorded = (layout.day_summary(storage, when) or {}).get("report") or {} if when < day else {}
        found = recorded.get("findings")
        trend.append({"day": when, "events": per_day.get(when, {}).get("events", 0),
                      "failed": per_day.get(when, {}).get("failed", 0),
                      "findings": sum(found.values()) if found is not None else None})
    by_account = [{"account": r["name"], **{k: r[k] for k in BREAKDOWN_COUNTS}, "regions": r["regions"]}
                  for r in parts.get("account", [])]
    by_region = [{"region": r["name"], **{k: r[k] for k in BREAKDOWN_COUNTS}, "accounts": r["accounts"]}
                 for r in parts.get("region", [])]
    return {"day": day, "headline": headline, "calls_per_hour": per_hour, "trend": trend,
            "by_account": by_account, "by_region": by_region}


def _dimensions(rows: Rows) -> dict[str, Rows]:
    split: dict[str, Rows] = {}
    for row in rows:
        split.setdefault(row.pop("dimension"), []).append(row)
    return split


def top_callers_report(lake: LakeLike, day: date | str, limit: int = DEFAULT_LIMIT,
                       engine: Engine | None = None) -> dict[str, Any]:
    """Who called the most, with what, from where; lists are capped at 20 values (counts are exact)."""
    day = as_day(day)
    with lake_engine(lake, engine) as c:
        parts = _dimensions(run_report_sql(c, "top_callers", day=day, limit=limit))
    principals = [{"principal": r["name"], "principal_type": r["principal_type"], "calls": r["calls"],
                   "apis": r["apis"], "errors": r["errors"], "error_rate": r["error_rate"], "reads": r["reads"],
                   "writes": r["writes"], "accounts": r["accounts"], "regions": r["regions"],
                   "region_list": _trim(r["region_list"]), "source_ips": r["source_ips"],
                   "source_ip_list": _trim(r["source_ip_list"]), "sessions": r["sessions"],
                   "session_names": _trim(r["session_names"]), "first_seen": r["first_seen"],
                   "last_seen": r["last_seen"]} for r in parts.get("principal", [])]
    apis = [{"eventsource": r["name"].split(":", 1)[0], "eventname": r["name"].split(":", 1)[-1],
             "calls": r["calls"], "principals": r["principals"], "errors": r["errors"], "writes": r["writes"],
             "regions": r["regions"]} for r in parts.get("api", [])]
    source_ips = [{"source_ip": r["name"], "calls": r["calls"], "principals": r["principals"],
                   "principal_list": _trim(r["principal_list"]), "apis": r["apis"], "errors": r["errors"],
                   "first_seen": r["first_seen"], "last_seen": r["last_seen"]} for r in parts.get("source_ip", [])]
    read_write = [{"principal_type": r["name"], "calls": r["calls"], "reads": r["reads"], "writes": r["writes"],
                   "unknown": r["unknown"], "errors": r["errors"], "principals": r["principals"]}
                  for r in parts.get("identity_type", [])]
    return {"day": day, "principals": principals, "apis": apis, "source_ips": source_ips, "read_write": read_write}


def failed_calls_report(lake: LakeLike, day: date | str, limit: int = DEFAULT_LIMIT,
                        new_failure_days: int = NEW_FAILURE_DAYS,
                        engine: Engine | None = None) -> dict[str, Any]:
    """Failures by code, API and principal; access-denied families apart from throttling and not-found noise."""
    day = as_day(day)
    since = day - timedelta(days=new_failure_days)
    storage = as_storage(lake)
    with lake_engine(storage, engine) as c:
        c.use_derived("failure_kinds", since, day)
        parts = _dimensions(run_report_sql(c, "failed_calls", day=day, limit=limit, since=since))
    by_code = [{"error_code": r["name"], "family": r["family"], "failures": r["failures"],
                "principals": r["principals"], "apis": r["apis"], "sample_message": _message(r["sample_message"]),
                "first_seen": r["first_failure"], "last_seen": r["last_failure"]} for r in parts.get("error_code", [])]
    common = ("calls", "failures", "failure_rate", "denied", "denied_apis", "throttled", "not_found")
    by_api = [{"eventsource": r["name"].split(":", 1)[0], "eventname": r["name"].split(":", 1)[-1],
               **{k: r[k] for k in common}, "error_codes": _trim(r["error_codes"])} for r in parts.get("api", [])]
    by_principal = [{"principal": r["name"], "principal_type": r["principal_type"], **{k: r[k] for k in common},
                     "error_codes": _trim(r["error_codes"]), "first_failure": r["first_failure"],
                     "last_failure": r["last_failure"]} for r in parts.get("principal", [])]
    new_kinds = [{"eventsource": r["eventsource"], "eventname": r["eventname"], "error_code": r["error_code"],
                  "family": r["family"], "failures": r["failures"], "principals": r["principals"],
                  "sample_message": _message(r["sample_message"]), "first_seen": r["first_failure"],
                  "last_seen": r["last_failure"], "new_error_code": r["new_error_code"]}
                 for r in parts.get("new_kind", [])]
    families: dict[str, int] = {}
    for row in by_code:
        families[row["family"]] = families.get(row["family"], 0) + row["failures"]
    total = sum(families.values())
    groups = {
        "denied": sum(families.get(f, 0) for f in DENIED_FAMILIES),
        "noise": sum(families.get(f, 0) for f in NOISE_FAMILIES),
    }
    groups["other"] = total - groups["denied"] - groups["noise"]
    return {"day": day, "failures": total, "families": dict(sorted(families.items(), key=lambda kv: -kv[1])),
            "groups": groups, "by_error_code": by_code, "by_api": by_api, "by_principal": by_principal,
            "new_kinds": new_kinds, "new_kinds_since": since}


def spikes_report(lake: LakeLike, day: date | str, config: SpikeConfig | None = None,
                  engine: Engine | None = None) -> dict[str, Any]:
    """Insights-style spikes; the result also carries the AWS-shaped records under `records`."""
    from trailsight.report.insights import detect_spikes

    day = as_day(day)
    storage = as_storage(lake)
    with lake_engine(storage, engine) as c:
        result = detect_spikes(storage, c, day, config)
    return {**result.as_dict(), "records": result.records()}


def security_report(lake: LakeLike, day: date | str, config: DetectionConfig | None = None,
                    engine: Engine | None = None) -> dict[str, Any]:
    """CIS monitoring controls and extras, as findings with severity, events and the reason they fired."""
    from trailsight.report.detections import run_detections

    day = as_day(day)
    storage = as_storage(lake)
    with lake_engine(storage, engine) as c:
        return run_detections(c, day, config).as_dict()


ReportFunction = Callable[..., dict[str, Any]]
REPORTS: dict[str, ReportFunction] = {
    "summary": summary_report,
    "top_callers": top_callers_report,
    "failed_calls": failed_calls_report,
    "spikes": spikes_report,
    "security": security_report,
}

# The main table of each report (written as <report>.csv), then further tables (<report>.<table>.csv), with the
# columns each is written with even when empty.
CSV_COLUMNS: dict[str, dict[str, list[str]]] = tomllib.loads(
    (package_folder("trailsight.report") / "csv_columns.toml").read_text())
TABLES: dict[str, tuple[str, ...]] = {name: tuple(tables) for name, tables in CSV_COLUMNS.items()}


def select_reports(reports: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Report names in canonical order; `summary` is always included. Unknown names get a suggestion."""
    if reports is None:
        return list(REPORTS)
    names = [r.strip() for r in (reports.split(",") if isinstance(reports, str) else reports) if r.strip()]
    for name in names:
        if name not in REPORTS:
            close = difflib.get_close_matches(name, REPORTS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"unknown report {name!r}; known: {', '.join(REPORTS)}.{hint}")
    return [name for name in REPORTS if name == "summary" or name in names]


# --- writing ---------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Values as JSON wants them: times in CloudTrail's UTC form, dates ISO, decimals as floats."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def report_json(value: Any) -> bytes:
    """A report file's JSON: indented for people, with dates, decimals and sets made plain."""
    return orjson.dumps(jsonable(value), option=orjson.OPT_INDENT_2) + b"\n"


def csv_text(rows: Rows, columns: list[str] | None = None) -> str:
    """CSV of rows with a header (the rows' own keys, else `columns`: an empty table keeps its header); lists
    become `a; b; c` so every cell stays one value."""
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else list(columns or [])
    if not columns:
        return ""
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for column in columns:
            value = jsonable(row.get(column))
            if isinstance(value, list):
                value = "; ".join(str(v) for v in value)
            elif isinstance(value, dict):
                value = orjson.dumps(value).decode()
            cells.append("" if value is None else value)
        writer.writerow(cells)
    return buffer.getvalue()


def counts_text(counts: dict[str, int]) -> str:
    """`{"critical": 1, "high": 3, "low": 0}` as `1 critical, 3 high` (or `none`): for lines people read.

    >>> counts_text({"critical": 1, "high": 3, "low": 0})
    '1 critical, 3 high'
    """
    return ", ".join(f"{n:,} {name}" for name, n in counts.items() if n) or "none"


@dataclass
class ReportSummary:
    """What `write_daily_report` did: files written, seconds per report and the figures a person looks at."""

    day: date
    out_dir: str
    reports: list[str]
    files: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    events: int = 0
    failed: int = 0
    spikes: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    new_findings: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)
    integrity_ok: bool | None = None
    # The security report's findings in full, for alerts and artifacts; not part of the summary's dict.
    finding_details: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return jsonable({k: v for k, v in self.__dict__.items() if k != "finding_details"})


def run_reports(lake: LakeLike, day: date | str, reports: str | list[str] | None = None,
                engine: Engine | None = None, detection: DetectionConfig | None = None
                ) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Run the selected reports on one connection; returns their data and the seconds each took. `detection`
    configures the security report (thresholds, suppression file)."""
    day = as_day(day)
    storage = as_storage(lake)
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    with lake_engine(storage, engine) as c:
        for name in select_reports(reports):
            started = time.perf_counter()
            function = REPORTS[name]
            options = {"config": detection} if name == "security" and detection else {}
            results[name] = function(storage, day, engine=c, **options)
            seconds[name] = round(time.perf_counter() - started, 3)
    return results, seconds


def write_daily_report(lake: LakeLike, day: date | str, out_dir: str | Path | Storage,
                       reports: str | list[str] | None = None, engine: EngineSettings | None = None,
                       source: LakeLike | None = None, public_keys: str | Path | None = None,
                       detection: DetectionConfig | None = None,
                       sigma_rules: str | Path | None = None) -> ReportSummary:
    """Run the reports for one UTC day and write JSON, CSV, insights.json, report.md and report.html into
    `out_dir`: a folder or an s3:// prefix.

    With Athena as the `engine` the same SQL files run on Athena instead of DuckDB; the bytes scanned and their
    cost are recorded in the summary (`engine`). With the raw `source`, the day's log files are also verified
    against CloudTrail's digests (`integrity`). With `sigma_rules` (a folder of Sigma rules) each rule is run over
    the day too (`sigma`); rules that cannot be converted or run are listed with their reason.
    """
    from trailsight.report.html import render_html, render_markdown

    day = as_day(day)
    out = as_storage(out_dir)
    running = open_engine(as_storage(lake), engine)
    try:
        results, seconds = run_reports(lake, day, reports, engine=running, detection=detection)
        if sigma_rules is not None:
            from trailsight.report.sigma import convert_rules, run_sigma_rules

            rules = [r.as_dict() for r in run_sigma_rules(running, convert_rules(sigma_rules), day)]
            results["sigma"] = {"day": day, "rules": rules, "table": [
                {k: r[k] for k in ("path", "title", "level", "matches", "error")} for r in rules]}
        stats = running.stats()
    finally:
        running.close()
    summary = ReportSummary(day, out.url, list(results), seconds=seconds, engine=stats)
    if "sigma" in results:
        summary.warnings += [f"Sigma rule {r['path']} skipped: {r['error']}" for r in results["sigma"]["rules"]
                             if r["error"]]
    results["summary"]["engine"] = summary.engine
    results["summary"]["lake"] = as_storage(lake).url  # for the page's queries: `trailsight sql --lake ...`
    if source is not None:
        results["integrity"] = verify_digests(source, day, public_keys=public_keys).as_dict()
        summary.integrity_ok = results["integrity"]["ok"]
    headline = results["summary"]["headline"]
    summary.events, summary.failed = headline["events"], headline["failed"]
    if not headline["events"]:
        summary.warnings.append(f"the lake has no events dated {day}; was the day ingested?")
    if "spikes" in results:
        results["spikes"]["table"] = [{k: v for k, v in i.items() if k not in ("model", "attributions", "chart")}
                                      for i in results["spikes"]["insights"]]
        summary.spikes = len(results["spikes"]["insights"])
        summary.notes += results["spikes"]["notes"]  # short history is expected on a new lake, not a failure
    if "security" in results:
        insights = results["spikes"]["insights"] if "spikes" in results else []
        results["security"]["incidents"] = build_incidents(results["security"]["findings"], insights)
        summary.findings = results["security"]["by_severity"]
        summary.finding_details = jsonable(results["security"]["findings"])
        results["summary"]["trend"][-1]["findings"] = sum(summary.findings.values())
        per_account: dict[str, int] = {}
        for finding in results["security"]["findings"]:
            per_account[finding["account"]] = per_account.get(finding["account"], 0) + 1
        for row in results["summary"]["by_account"]:
            row["findings"] = per_account.get(row["account"], 0)
        summary.new_findings = results["security"]["new_by_severity"]
        summary.notes += results["security"]["notes"]  # short history, expired suppressions: read, not failures

    def write(name: str, data: bytes | str) -> None:
        out.write_bytes(name, data if isinstance(data, bytes) else data.encode())
        summary.files.append(name)

    for name, data in results.items():
        body = {k: v for k, v in data.items() if k not in ("records", "table")}
        write(f"{name}.json", report_json({"report": name, "day": day, **body}))
        for index, table in enumerate(TABLES[name]):
            rows = data.get(table) or []
            write(f"{name}.csv" if index == 0 else f"{name}.{table}.csv",
                  csv_text([rows] if isinstance(rows, dict) else rows, CSV_COLUMNS[name][table]))
    if "spikes" in results:
        write("insights.json", report_json({"Records": results["spikes"]["records"]}))
    write("report.md", render_markdown(day, results, summary))
    write("report.html", render_html(day, results, summary))
    return summary
