"""The daily job as Prefect flows: ingest a day (late events included), report on it, alert, archive the raw
files that are due per the retention policy; and a backfill.

Thin on purpose: each task calls one trailsight library function, where the logic and its tests live.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from trailsight.flows.prefect_env import configure_prefect

configure_prefect()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from trailsight.errors import ArchiveError, TransientError, UsageError  # noqa: E402
from trailsight.lake import ingest as lake  # noqa: E402
from trailsight.lake import layout  # noqa: E402
from trailsight.query.athena import AthenaSettings  # noqa: E402
from trailsight.report import alerts  # noqa: E402
from trailsight.report import daily as reports  # noqa: E402
from trailsight.report.detections import DetectionConfig  # noqa: E402
from trailsight.retention import archive  # noqa: E402
from trailsight.retention import policy as retention  # noqa: E402


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


@task(**RETRY)
def ingest_days(source: str, lake_url: str, start: date, end: date, late_hours: int) -> dict[str, Any]:
    summary = lake.ingest(source, lake_url, start, end, late_hours=late_hours)
    get_run_logger().info(
        "ingested %s events from %s files: %s new, %s duplicates, %s quarantined",
        summary.events_read, summary.files_found, summary.events_written, summary.duplicates,
        summary.events_quarantined)
    return summary.as_dict()


@task(**RETRY)
def report_day(lake_url: str, day: date, report_dir: str, athena_settings: AthenaSettings | None = None,
               source: str | None = None, public_keys: str | None = None,
               suppressions: str | None = None, sigma_rules: str | None = None) -> dict[str, Any]:
    detection = DetectionConfig(suppression_file=suppressions) if suppressions else None
    summary = reports.write_daily_report(lake_url, day, report_dir, athena=athena_settings, source=source,
                                         public_keys=public_keys, detection=detection, sigma_rules=sigma_rules)
    if summary.integrity_ok is False:
        get_run_logger().warning("digest verification found problems; see %s/integrity.json", report_dir)
    for warning in summary.warnings:
        get_run_logger().warning(warning)
    return summary.as_dict()


@task(**RETRY)
def alert_day(lake_url: str, day: date, report_dir: str, min_severity: str, sns_topic_arn: str | None,
              webhook_url: str | None) -> dict[str, Any]:
    found = alerts.alerts_from_findings(day, alerts.findings_of_report(report_dir), min_severity)
    outcome = alerts.publish_alerts(found, lake_url, sns_topic_arn, webhook_url)
    get_run_logger().info("%s alert(s) sent, %s already sent before", len(outcome.sent), len(outcome.already_sent))
    return {"sent": outcome.sent, "already_sent": outcome.already_sent}


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


@task
def publish_artifacts(day: date, ingest: dict[str, Any] | None, report: dict[str, Any], report_dir: str) -> None:
    """Headline numbers and findings as keyed artifacts, so the UI keeps a history per key."""
    findings = alerts.findings_of_report(report_dir)
    lines = [f"# trailsight daily report, {day}", "",
             f"- events: {report['events']:,}, failed calls: {report['failed']:,}, spikes: {report['spikes']}",
             f"- findings by severity: {report['findings']}"]
    if ingest:
        lines.append(f"- ingest: {ingest['events_read']:,} read, {ingest['events_written']:,} new, "
                     f"{ingest['duplicates']:,} duplicates, {ingest['events_quarantined']:,} quarantined")
    lines += [f"- warning: {w}" for w in report["warnings"]]
    create_markdown_artifact("\n".join(lines), key="trailsight-daily-summary", description=f"Headline for {day}")
    create_table_artifact(
        [{k: str(f.get(k, "")) for k in ("severity", "control", "title", "account", "principal", "count", "why")}
         for f in findings] or [{"severity": "-", "title": "no findings"}],
        key="trailsight-daily-findings", description=f"Findings for {day}")
    html = Path(report_dir).resolve() / "report.html"
    create_link_artifact(html.as_uri(), link_text=f"HTML report for {day}", key="trailsight-daily-html")


def _athena(engine: str, database: str, workgroup: str, output: str | None) -> AthenaSettings | None:
    if engine not in ("duckdb", "athena"):
        raise UsageError(f"engine must be duckdb or athena, not {engine!r}")
    return AthenaSettings(database, workgroup, output) if engine == "athena" else None


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


@flow(name="trailsight-daily", log_prints=True)
def daily(
    day: date | None = None,
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
) -> dict[str, Any]:
    """Ingest `day` (default: yesterday, UTC) with its late events, write its reports, send its alerts; with a
    retention policy, then archive the raw files delivered `keep_as_delivered_days` before `day`. `suppressions`
    is a suppression file for the security findings (see trailsight.report.triage); `sigma_rules` a folder of
    Sigma rules run over the day (sigma.json)."""
    day = day or yesterday()
    report_dir = str(Path(report_root) / day.isoformat())
    ingest = ingest_days(source, lake_url, day, day, late_hours)
    report = report_day(lake_url, day, report_dir, _athena(engine, athena_database, athena_workgroup, athena_output),
                        source if verify_digests else None, public_keys, suppressions, sigma_rules)
    sent = alert_day(lake_url, day, report_dir, alert_min_severity, sns_topic_arn, webhook_url)
    publish_artifacts(day, ingest, report, report_dir)
    summary = {"day": day.isoformat(), "ingest": ingest, "report": report, "alerts": sent}
    layout.mark_day_complete(lake_url, day, summary)
    if retention_policy:
        summary["archive"] = archive_raw_day(source, lake_url, archive_due(day, retention_policy), retention_policy)
    return summary


@flow(name="trailsight-backfill", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=2))
def backfill(
    start: date,
    end: date,
    source: str = "demo/source",
    lake_url: str = "demo/lake",
    report_root: str = "demo/reports",
    late_hours: int = lake.LATE_HOURS,
    force: bool = False,
    retention_policy: str | None = None,
) -> dict[str, Any]:
    """Ingest a range in one pass, then report each day not done yet; safe to re-run after an interruption.
    With a retention policy, then archive the raw files of each day in the range that is due (one at a time:
    archiving holds the lake's lock)."""
    done = set() if force else layout.completed_days(lake_url)
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    pending = [d for d in days if d not in done]
    summary: dict[str, Any] = {"days": len(pending), "skipped": len(days) - len(pending)}
    if pending:
        summary["ingest"] = ingest_days(source, lake_url, pending[0], pending[-1], late_hours)
        futures = {d: report_day.submit(lake_url, d, str(Path(report_root) / d.isoformat())) for d in pending}
        results = {d: f.result() for d, f in futures.items()}
        for d, report in results.items():
            layout.mark_day_complete(lake_url, d, {"day": d.isoformat(), "report": report, "backfill": True})
        rows = [{"day": d.isoformat(), "events": r["events"], "failed": r["failed"], "spikes": r["spikes"],
                 "findings": sum(r["findings"].values())} for d, r in results.items()]
        create_table_artifact(rows, key="trailsight-backfill", description=f"Backfill {start}..{end}")
    if retention_policy:
        last_due = archive_due(datetime.now(UTC).date(), retention_policy)
        summary["archive"] = [archive_raw_day(source, lake_url, d, retention_policy) for d in days if d <= last_due]
    return summary
