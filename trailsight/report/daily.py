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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import orjson

from trailsight.errors import UsageError
from trailsight.integrity.digests import verify_digests
from trailsight.query.athena import AthenaConnection, AthenaSettings
from trailsight.query.duckdb_engine import connect, use_derived
from trailsight.report.incidents import build_incidents
from trailsight.report.queries import Rows, run_report_sql
from trailsight.storage.store import Storage, as_storage

if TYPE_CHECKING:
    from trailsight.report.detections import DetectionConfig
    from trailsight.report.insights import SpikeConfig

LakeLike = str | Path | Storage
DEFAULT_LIMIT = 50
LIST_LIMIT = 20
MESSAGE_LIMIT = 300
NEW_FAILURE_DAYS = 7
DENIED_FAMILIES = ("access_denied", "authentication")
NOISE_FAMILIES = ("throttling", "not_found", "conflict", "dry_run")


# --- connections -------------------------------------------------------------------------------------


@contextmanager
def lake_connection(lake: LakeLike, con: duckdb.DuckDBPyConnection | None = None
                    ) -> Iterator[duckdb.DuckDBPyConnection]:
    """The given connection, or a new one over the lake that is closed afterwards."""
    if con is not None:
        yield con
        return
    own = connect(as_storage(lake))
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


def summary_report(lake: LakeLike, day: date | str, con: duckdb.DuckDBPyConnection | None = None) -> dict[str, Any]:
    """Headline numbers and the 24 hours of the day (hours without calls included as zeros)."""
    day = as_day(day)
    with lake_connection(lake, con) as c:
        rows = run_report_sql(c, "summary", day=day)
    headline = {k: v for k, v in rows[0].items() if k != "hour"}
    headline["failed_rate"] = round(headline["failed"] / headline["events"], 4) if headline["events"] else 0.0
    hours = {row["hour"]: row for row in rows[1:]}

    def hour(h: int) -> dict[str, int]:
        row = hours.get(h, {})
        return {"hour": h, "calls": row.get("events", 0), "reads": row.get("reads", 0),
                "writes": row.get("writes", 0), "failed": row.get("failed", 0)}

    per_hour = [hour(h) for h in range(24)]
    return {"day": day, "headline": headline, "calls_per_hour": per_hour}


def _dimensions(rows: Rows) -> dict[str, Rows]:
    split: dict[str, Rows] = {}
    for row in rows:
        split.setdefault(row.pop("dimension"), []).append(row)
    return split


def top_callers_report(lake: LakeLike, day: date | str, limit: int = DEFAULT_LIMIT,
                       con: duckdb.DuckDBPyConnection | None = None) -> dict[str, Any]:
    """Who called the most, with what, from where; lists are capped at 20 values (counts are exact)."""
    day = as_day(day)
    with lake_connection(lake, con) as c:
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
                        con: duckdb.DuckDBPyConnection | None = None) -> dict[str, Any]:
    """Failures by code, API and principal; access-denied families apart from throttling and not-found noise."""
    day = as_day(day)
    since = day - timedelta(days=new_failure_days)
    storage = as_storage(lake)
    with lake_connection(storage, con) as c:
        use_derived(c, storage, "failure_kinds", since, day)
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
                  con: duckdb.DuckDBPyConnection | None = None) -> dict[str, Any]:
    """Insights-style spikes; the result also carries the AWS-shaped records under `records`."""
    from trailsight.report.insights import detect_spikes

    day = as_day(day)
    storage = as_storage(lake)
    with lake_connection(storage, con) as c:
        result = detect_spikes(storage, c, day, config)
    return {**result.as_dict(), "records": result.records()}


def security_report(lake: LakeLike, day: date | str, config: DetectionConfig | None = None,
                    con: duckdb.DuckDBPyConnection | None = None) -> dict[str, Any]:
    """CIS monitoring controls and extras, as findings with severity, events and the reason they fired."""
    from trailsight.report.detections import run_detections

    day = as_day(day)
    storage = as_storage(lake)
    with lake_connection(storage, con) as c:
        return run_detections(storage, c, day, config).as_dict()


ReportFunction = Callable[..., dict[str, Any]]
REPORTS: dict[str, ReportFunction] = {
    "summary": summary_report,
    "top_callers": top_callers_report,
    "failed_calls": failed_calls_report,
    "spikes": spikes_report,
    "security": security_report,
}

# The main table of each report (written as <report>.csv), then further tables (<report>.<table>.csv).
TABLES: dict[str, tuple[str, ...]] = {
    "summary": ("calls_per_hour",),
    "top_callers": ("principals", "apis", "source_ips", "read_write"),
    "failed_calls": ("by_error_code", "by_api", "by_principal", "new_kinds"),
    "spikes": ("table",),
    "security": ("table",),
    "integrity": ("problems",),
    "sigma": ("table",),
}


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


def dump_json(value: Any) -> bytes:
    return orjson.dumps(jsonable(value), option=orjson.OPT_INDENT_2) + b"\n"


def csv_text(rows: Rows) -> str:
    """CSV of rows; lists become `a; b; c` so every cell stays one value."""
    buffer = io.StringIO()
    if not rows:
        return ""
    columns = list(rows[0])
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


@dataclass
class ReportSummary:
    """What `write_daily_report` did: files written, seconds per report and the figures a person looks at."""

    day: date
    out_dir: Path
    reports: list[str]
    files: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    events: int = 0
    failed: int = 0
    spikes: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    new_findings: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)
    integrity_ok: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return jsonable({**self.__dict__, "out_dir": str(self.out_dir)})


def run_reports(lake: LakeLike, day: date | str, reports: str | list[str] | None = None,
                con: duckdb.DuckDBPyConnection | None = None, detection: DetectionConfig | None = None
                ) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Run the selected reports on one connection; returns their data and the seconds each took. `detection`
    configures the security report (thresholds, suppression file)."""
    day = as_day(day)
    storage = as_storage(lake)
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    with lake_connection(storage, con) as c:
        for name in select_reports(reports):
            started = time.perf_counter()
            function = REPORTS[name]
            options = {"config": detection} if name == "security" and detection else {}
            results[name] = function(storage, day, con=c, **options)
            seconds[name] = round(time.perf_counter() - started, 3)
    return results, seconds


def write_daily_report(lake: LakeLike, day: date | str, out_dir: str | Path,
                       reports: str | list[str] | None = None, athena: AthenaSettings | None = None,
                       source: LakeLike | None = None, public_keys: str | Path | None = None,
                       detection: DetectionConfig | None = None,
                       sigma_rules: str | Path | None = None) -> ReportSummary:
    """Run the reports for one UTC day and write JSON, CSV, insights.json, report.md and report.html.

    With `athena` settings the same SQL files run on Athena instead of DuckDB; the bytes scanned and their cost
    are recorded in the summary (`engine`). With the raw `source`, the day's log files are also verified against
    CloudTrail's digests (`integrity`). With `sigma_rules` (a folder of Sigma rules) each rule is run over the
    day too (`sigma`); rules that cannot be converted or run are listed with their reason.
    """
    from trailsight.report.html import render_html, render_markdown

    day = as_day(day)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    athena_connection = AthenaConnection(athena) if athena else None
    results, seconds = run_reports(lake, day, reports, con=athena_connection,  # type: ignore[arg-type]
                                   detection=detection)
    summary = ReportSummary(day, out, list(results), seconds=seconds)
    summary.engine = athena_connection.stats() if athena_connection else {"engine": "duckdb"}
    results["summary"]["engine"] = summary.engine
    if sigma_rules is not None:
        from trailsight.report.sigma import convert_rules, run_sigma_rules

        with lake_connection(lake, athena_connection) as con:  # type: ignore[arg-type]
            rules = [r.as_dict() for r in run_sigma_rules(con, convert_rules(sigma_rules), day)]
        results["sigma"] = {"day": day, "rules": rules, "table": [
            {k: r[k] for k in ("path", "title", "level", "matches", "error")} for r in rules]}
        summary.warnings += [f"Sigma rule {r['path']} skipped: {r['error']}" for r in rules if r["error"]]
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
        summary.warnings += results["spikes"]["notes"]
    if "security" in results:
        insights = results["spikes"]["insights"] if "spikes" in results else []
        results["security"]["incidents"] = build_incidents(results["security"]["findings"], insights)
        summary.findings = results["security"]["by_severity"]
        summary.new_findings = results["security"]["new_by_severity"]
        summary.warnings += results["security"]["notes"]

    def write(name: str, data: bytes | str) -> None:
        path = out / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        summary.files.append(name)

    for name, data in results.items():
        body = {k: v for k, v in data.items() if k not in ("records", "table")}
        write(f"{name}.json", dump_json({"report": name, "day": day, **body}))
        for index, table in enumerate(TABLES[name]):
            write(f"{name}.csv" if index == 0 else f"{name}.{table}.csv", csv_text(data.get(table, [])))
    if "spikes" in results:
        write("insights.json", dump_json({"Records": results["spikes"]["records"]}))
    write("report.md", render_markdown(day, results, summary))
    write("report.html", render_html(day, results, summary))
    return summary
