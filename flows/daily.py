"""The daily job as Prefect flows: ingest a day (late events included), report on it, alert, archive the raw
files that are due per the retention policy; and a backfill.

Thin on purpose: each task calls one trailsight library function, where the logic and its tests live. `daily`
and `backfill` differ only in how many days they ingest at once; each day then runs the same subflow,
`report_and_alert_day`: report (through Storage, so `report_root` may be s3://), alert on the findings, publish
the artifacts, mark the day complete.

Prefect's own settings (PREFECT_HOME and the like) are the caller's: `trailsight demo` sets its defaults before
importing this module, and a deployment takes them from prefect.toml.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.states import Failed, State

from trailsight.errors import ArchiveError, NoDataError, TransientError, UsageError
from trailsight.lake import ingest as lake
from trailsight.lake import layout
from trailsight.lake.distributed import ingest_on_cluster
from trailsight.lake.progress import ProgressLines
from trailsight.query import athena
from trailsight.query.athena import AthenaSettings
from trailsight.query.engine import EngineSettings
from trailsight.report import alerts
from trailsight.report import daily as reports
from trailsight.report.detections import DetectionConfig
from trailsight.retention import archive
from trailsight.retention import policy as retention
from trailsight.storage.store import Storage

PROGRESS_EVERY = 30.0


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry storage hiccups (throttling, timeouts, resets); never bad input, permissions or missing objects."""
    try:
        state.result()
    except TransientError:
        return True
    except Exception:
        return False
    return False


RETRY = {"retries": 3, "retry_delay_seconds": [10, 30, 90], "retry_condition_fn": _retry_transient}


@dataclass(frozen=True)
class DayOptions:
    """How each day is reported and alerted on: the same for `daily` and `backfill`."""

    report_root: str
    alert_min_severity: str = "high"
    sns_topic_arn: str | None = None
    webhook_url: str | None = None
    engine: str = "duckdb"
    athena_database: str = "trailsight"
    athena_workgroup: str = "primary"
    athena_output: str | None = None
    verify_digests: bool = True
    public_keys: str | None = None
    suppressions: str | None = None
    sigma_rules: str | None = None

    def engine_settings(self) -> EngineSettings:
        if self.engine not in ("duckdb", "athena"):
            raise UsageError(f"engine must be duckdb or athena, not {self.engine!r}")
        return EngineSettings(self.engine, AthenaSettings(self.athena_database, self.athena_workgroup,
                                                          self.athena_output))

    def report_dir(self, day: date) -> str:
        return f"{self.report_root.rstrip('/')}/{day.isoformat()}"


@task(**RETRY)
def ingest_days(source: str, lake_url: str, start: date, end: date, late_hours: int,
                dask_address: str | None = None) -> dict[str, Any]:
    """On this machine, or on the Dask cluster at `dask_address` (this task then only coordinates)."""
    logger = get_run_logger()
    if dask_address:
        summary = ingest_on_cluster(source, lake_url, dask_address, start, end, late_hours=late_hours)
    else:
        summary = lake.ingest(source, lake_url, start, end, late_hours=late_hours,
                              on_progress=ProgressLines(logger.info, every=PROGRESS_EVERY))
    logger.info("ingested %s events from %s files: %s new, %s duplicates, %s quarantined",
                f"{summary.events_read:,}", f"{summary.files_found:,}", f"{summary.events_written:,}",
                f"{summary.duplicates:,}", f"{summary.events_quarantined:,}")
    return summary.as_dict()


@task(**RETRY)
def report_day(lake_url: str, day: date, report_dir: str, engine: EngineSettings | None = None,
               source: str | None = None, public_keys: str | None = None, suppressions: str | None = None,
               sigma_rules: str | None = None) -> tuple[dict[str, Any], list[dict]]:
    """The day's reports; returns the summary and the findings (which the alerts and artifacts take)."""
    detection = DetectionConfig(suppression_file=suppressions) if suppressions else None
    summary = reports.write_daily_report(lake_url, day, report_dir, engine=engine, source=source,
                                         public_keys=public_keys, detection=detection, sigma_rules=sigma_rules)
    if summary.integrity_ok is False:
        get_run_logger().warning("digest verification found problems; see %s/integrity.json", report_dir)
    for warning in summary.warnings:
        get_run_logger().warning(warning)
    if not summary.events:
        raise NoDataError(f"no data: the lake {lake_url} has no events dated {day}; was the day ingested?")
    return summary.as_dict(), summary.finding_details


@task(**RETRY)
def alert_day(day: date, findings: list[dict[str, Any]], lake_url: str, min_severity: str,
              sns_topic_arn: str | None, webhook_url: str | None) -> dict[str, Any]:
    logger = get_run_logger()
    found = alerts.alerts_from_findings(day, findings, min_severity)
    if not (sns_topic_arn or webhook_url):
        if found:
            logger.warning("%s alert(s) at or above %s not sent: no destination is configured (set sns_topic_arn "
                           "or webhook_url)", len(found), min_severity)
        return {"sent": [], "already_sent": [], "not_sent": [a.subject for a in found]}
    outcome = alerts.publish_alerts(found, lake_url, sns_topic_arn, webhook_url)
    logger.info("%s alert(s) sent, %s already sent before", len(outcome.sent), len(outcome.already_sent))
    return {"sent": outcome.sent, "already_sent": outcome.already_sent, "not_sent": []}


@task(**RETRY)
def archive_raw_day(source: str, lake_url: str, day: date, policy_path: str) -> dict[str, Any]:
    """Verify, bundle, then delete one delivery day's raw files. A day failing verification fails the task and
    is not retried (nothing was changed; it needs an ingest first); an interrupted run resumes on retry."""
    result = archive.archive_day(source, lake_url, day, retention.load_policy(policy_path))
    if not result.ok:
        more = len(result.problems) - 5
        raise ArchiveError(f"{day} failed verification, nothing was written or deleted: "
                           + "; ".join(result.problems[:5]) + (f"; and {more} more" if more > 0 else ""))
    get_run_logger().info("archive %s: %s, %s bundles written, %s originals deleted", day, result.status,
                          result.bundles_written, result.files_deleted)
    create_table_artifact(
        [{"group": g.group, "status": g.status, "files": g.files, "bundle_bytes": g.bundle_bytes,
          "storage_class": g.storage_class or "-", "in_lake": g.in_lake, "quarantined": g.quarantined}
         for g in result.groups] or [{"group": "-", "status": result.status}],
        key="trailsight-archive", description=f"Raw files of {day} archived")
    return result.as_dict()


def archive_due(day: date, policy_path: str) -> date:
    """The delivery day whose as-delivered period ends on `day` (the policy's earliest_archive_date inverted)."""
    return day - timedelta(days=retention.load_policy(policy_path).keep_as_delivered_days)


def headline_markdown(day: date, report: dict[str, Any], ingest: dict[str, Any] | None) -> list[str]:
    lines = [f"# trailsight daily report, {day}", "",
             f"- events: {report['events']:,}, failed calls: {report['failed']:,}, spikes: {report['spikes']}",
             f"- findings: {reports.counts_text(report['findings'])}"]
    if ingest:
        lines.append(f"- ingest: {ingest['events_read']:,} read, {ingest['events_written']:,} new, "
                     f"{ingest['duplicates']:,} duplicates, {ingest['events_quarantined']:,} quarantined")
    return lines + [f"- warning: {w}" for w in report["warnings"]] + [f"- note: {n}" for n in report["notes"]]


@task
def publish_artifacts(day: date, ingest: dict[str, Any] | None, report: dict[str, Any],
                      findings: list[dict[str, Any]], report_dir: str) -> None:
    """Headline numbers, findings and the HTML page as keyed artifacts, so the UI keeps a history per key.

    The Prefect UI runs in a browser, which will not open file:// links from a web page. For an s3:// report
    root the page is linked with a presigned URL (valid 7 days); for a local one the artifact is Markdown with
    the headline and the page's path, to open on the machine that ran the flow.
    """
    headline = headline_markdown(day, report, ingest)
    create_markdown_artifact("\n".join(headline), key="trailsight-daily-summary", description=f"Headline for {day}")
    create_table_artifact(
        [{k: str(f.get(k, "")) for k in ("severity", "control", "title", "account", "principal", "count", "why")}
         for f in findings] or [{"severity": "-", "title": "no findings"}],
        key="trailsight-daily-findings", description=f"Findings for {day}")
    folder = Storage(report_dir)
    if folder.is_local:
        create_markdown_artifact(
            "\n".join([*headline, "", f"HTML report (open it on the machine that ran the flow): "
                       f"`{folder.path('report.html')}`"]),
            key="trailsight-daily-html", description=f"HTML report for {day}")
    else:
        url = folder.browser_url("report.html", content_type="text/html; charset=utf-8")
        create_link_artifact(url, link_text=f"HTML report for {day} (link valid 7 days)",
                             key="trailsight-daily-html", description=f"{folder.url}/report.html")


@task(**RETRY)
def update_athena_projection(engine: EngineSettings, ingest: dict[str, Any]) -> list[str]:
    """Accounts first seen by this ingest become visible to Athena's partition projection."""
    added = athena.update_projection(engine.athena, ingest["partitions"])
    for line in added:
        get_run_logger().info(line)
    return added


@flow(name="trailsight-day", log_prints=True)
def report_and_alert_day(day: date, lake_url: str, options: DayOptions, source: str,
        ingest: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ingested day: its reports, its alerts, its artifacts; then the day is marked complete."""
    report_dir = options.report_dir(day)
    report, findings = report_day(lake_url, day, report_dir, options.engine_settings(),
                                  source if options.verify_digests else None, options.public_keys,
                                  options.suppressions, options.sigma_rules)
    sent = alert_day(day, findings, lake_url, options.alert_min_severity, options.sns_topic_arn,
                     options.webhook_url)
    publish_artifacts(day, ingest, report, findings, report_dir)
    summary = {"day": day.isoformat(), "ingest": ingest, "report": report, "alerts": sent}
    layout.mark_day_complete(lake_url, day, summary)
    return summary


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def _failed(message: str) -> State:
    """A failed run with one log line and no traceback: for bad parameters, which no retry would fix."""
    get_run_logger().error(message)
    return Failed(message=message)


@flow(name="trailsight-daily", log_prints=True)
def daily(
    day: date | str | None = None,
    source: str = "demo/source",
    lake_url: str = "demo/lake",
    report_root: str = "demo/reports",
    late_hours: int = lake.LATE_HOURS,
    alert_min_severity: str = "high",
    sns_topic_arn: str | None = None,
    webhook_url: str | None = None,
    retention_policy: str | None = None,
    engine: str = "duckdb",
    athena_database: str = "trailsight",
    athena_workgroup: str = "primary",
    athena_output: str | None = None,
    verify_digests: bool = True,
    public_keys: str | None = None,
    suppressions: str | None = None,
    sigma_rules: str | None = None,
    dask_address: str | None = None,
) -> dict[str, Any] | State:
    """Ingest `day` (default: yesterday, UTC) with its late events, write its reports, send its alerts; with a
    retention policy, then archive the raw files delivered `keep_as_delivered_days` before `day`. `suppressions`
    is a suppression file for the security findings (see trailsight.report.triage); `sigma_rules` a folder of
    Sigma rules run over the day (sigma.json)."""
    options = DayOptions(report_root, alert_min_severity, sns_topic_arn, webhook_url, engine, athena_database,
                         athena_workgroup, athena_output, verify_digests, public_keys, suppressions,
                         sigma_rules)
    try:
        the_day = reports.as_day(day) if day else yesterday()
        engine_settings = options.engine_settings()
    except UsageError as exc:
        return _failed(f"parameter day: {exc}" if "date" in str(exc) else str(exc))
    ingest = ingest_days(source, lake_url, the_day, the_day, late_hours, dask_address)
    if engine_settings.name == "athena":
        update_athena_projection(engine_settings, ingest)
    summary = report_and_alert_day(the_day, lake_url, options, source, ingest)
    for note in summary["report"]["notes"]:
        get_run_logger().info("note: %s", note)
    if retention_policy:
        summary["archive"] = archive_raw_day(source, lake_url, archive_due(the_day, retention_policy),
                                             retention_policy)
    return summary


@flow(name="trailsight-backfill", log_prints=True)
def backfill(
    start: date | str,
    end: date | str,
    source: str = "demo/source",
    lake_url: str = "demo/lake",
    report_root: str = "demo/reports",
    late_hours: int = lake.LATE_HOURS,
    force: bool = False,
    retention_policy: str | None = None,
    alert_min_severity: str = "high",
    sns_topic_arn: str | None = None,
    webhook_url: str | None = None,
    engine: str = "duckdb",
    athena_database: str = "trailsight",
    athena_workgroup: str = "primary",
    athena_output: str | None = None,
    verify_digests: bool = True,
    public_keys: str | None = None,
    suppressions: str | None = None,
    sigma_rules: str | None = None,
    dask_address: str | None = None,
) -> dict[str, Any] | State:
    """Ingest a range in one pass, then run each day not done yet through the same per-day subflow as `daily`
    (reports, digests, alerts, artifacts); safe to re-run after an interruption. With a retention policy, then
    archive the raw files of each day in the range that is due (one at a time: archiving holds the lake's lock)."""
    logger = get_run_logger()
    options = DayOptions(report_root, alert_min_severity, sns_topic_arn, webhook_url, engine, athena_database,
                         athena_workgroup, athena_output, verify_digests, public_keys, suppressions,
                         sigma_rules)
    try:
        first, last = reports.as_day(start), reports.as_day(end)
        engine_settings = options.engine_settings()
    except UsageError as exc:
        return _failed(str(exc))
    if first > last:
        return _failed(f"start {first} is after end {last}")
    done = set() if force else layout.completed_days(lake_url)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    pending = [d for d in days if d not in done]
    summary: dict[str, Any] = {"days": len(pending), "skipped": len(days) - len(pending)}
    if not pending:
        logger.info("all %s day(s) from %s to %s are complete already; nothing to do (force=true redoes them)",
                    len(days), first, last)
        create_markdown_artifact(f"# Backfill {first}..{last}\n\nAll {len(days)} day(s) were complete already; "
                                 "nothing was done (run with `force=true` to redo them).",
                                 key="trailsight-backfill", description=f"Backfill {first}..{last}")
    else:
        summary["ingest"] = ingest_days(source, lake_url, pending[0], pending[-1], late_hours, dask_address)
        if engine_settings.name == "athena":
            update_athena_projection(engine_settings, summary["ingest"])
        results = {d: report_and_alert_day(d, lake_url, options, source) for d in pending}
        short = [d for d, r in results.items() if r["report"]["notes"]]
        if short:
            logger.info("%s of %s day(s) have notes on short spike history (%s..%s: a new lake has fewer earlier "
                        "days than a full baseline); each day's notes are in its report", len(short),
                        len(pending), short[0], short[-1])
        rows = [{"day": d.isoformat(), "events": r["report"]["events"], "failed": r["report"]["failed"],
                 "spikes": r["report"]["spikes"], "findings": reports.counts_text(r["report"]["findings"]),
                 "alerts sent": len(r["alerts"]["sent"])} for d, r in results.items()]
        create_table_artifact(rows, key="trailsight-backfill", description=f"Backfill {first}..{last}")
    if retention_policy:
        last_due = archive_due(datetime.now(UTC).date(), retention_policy)
        summary["archive"] = [archive_raw_day(source, lake_url, d, retention_policy) for d in days if d <= last_due]
    return summary
