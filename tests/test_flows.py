"""Prefect flows: deployments load and validate, the daily flow runs for real, re-runs change nothing.

Logic is tested on the library functions; here Prefect's own machinery runs the flows (a temporary API).
"""

from __future__ import annotations

import gzip
import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import make_event
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint

from trailsight.errors import ArchiveError
from trailsight.lake.ingest import ingest
from trailsight.lake.lock import lake_lock
from trailsight.storage.aws import client
from trailsight.storage.store import Storage

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEPLOYMENTS = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]
DAY = date(2024, 5, 2)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_every_entrypoint_loads_and_its_parameters_validate(deployment: dict[str, Any]) -> None:
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    parameters = dict(deployment.get("parameters") or {})
    if deployment["name"] == "backfill":
        parameters.update(start="2024-05-01", end="2024-05-07")
    validated = flow.validate_parameters(parameters)
    assert set(validated) >= set(parameters)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_every_schedule_parses_with_an_explicit_timezone(deployment: dict[str, Any]) -> None:
    for schedule in deployment.get("schedules") or []:
        assert schedule["timezone"] == "UTC"
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])


def test_daily_runs_shortly_after_one_utc() -> None:
    (daily,) = [d for d in DEPLOYMENTS if d["name"] == "daily"]
    minute, hour, *_ = daily["schedules"][0]["cron"].split()
    assert hour == "1" and int(minute) <= 30


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120), temporary_settings(
        {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    ):
        yield


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trailsight.synth.generate import generate_archive

    root = tmp_path_factory.mktemp("archive")
    generate_archive(root, days=2, seed=5, end=DAY, events_per_day=2500)
    return root


@pytest.fixture
def sns_inbox(moto_endpoint: str) -> tuple[str, str]:
    """An SNS topic with an SQS queue subscribed, to read what was published."""
    sns, sqs = client("sns"), client("sqs")
    name = f"trailsight-{uuid.uuid4().hex[:12]}"  # a fresh pair per test: SQS allows one purge a minute
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, queue


def received(queue: str) -> list[dict[str, Any]]:
    messages = []
    while True:
        batch = client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return messages
        messages += [json.loads(m["Body"]) for m in batch]
        for m in batch:
            client("sqs").delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])


def lake_files(lake: Path) -> dict[str, bytes]:
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*.parquet"))}


def test_daily_flow_reports_publishes_artifacts_and_alerts_once(
    prefect_api: None, archive: Path, tmp_path: Path, sns_inbox: tuple[str, str]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from trailsight.flows.daily import daily

    topic, queue = sns_inbox
    arguments = dict(day=DAY, source=str(archive), lake_url=str(tmp_path / "lake"),
                     report_root=str(tmp_path / "reports"), sns_topic_arn=topic, alert_min_severity="high")
    first = daily(**arguments)
    assert first["report"]["events"] > 0 and (tmp_path / "reports" / DAY.isoformat() / "report.html").exists()
    alerts = received(queue)
    assert alerts and len(alerts) == len(first["alerts"]["sent"])
    assert any("Root" in a["Subject"] or "root" in a["Subject"] for a in alerts)
    assert all(a["MessageAttributes"]["severity"]["Value"] in ("high", "critical") for a in alerts)

    before = lake_files(tmp_path / "lake")
    second = daily(**arguments)
    assert lake_files(tmp_path / "lake") == before
    assert second["alerts"]["sent"] == [] and len(second["alerts"]["already_sent"]) == len(alerts)
    assert received(queue) == []

    import anyio

    async def artifact_keys() -> set[str]:
        async with get_client() as prefect_client:
            found = await prefect_client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
                any_=["trailsight-daily-summary", "trailsight-daily-findings", "trailsight-daily-html"])))
            return {a.key for a in found}

    assert anyio.run(artifact_keys) == {"trailsight-daily-summary", "trailsight-daily-findings",
                                        "trailsight-daily-html"}


def test_second_daily_run_on_a_locked_lake_fails_and_says_why(prefect_api: None, archive: Path,
                                                              tmp_path: Path) -> None:
    from trailsight.flows.daily import daily

    lake = Storage(tmp_path / "lake")
    with lake_lock(lake, "the other daily run"):
        state = daily(day=DAY, source=str(archive), lake_url=str(tmp_path / "lake"),
                      report_root=str(tmp_path / "reports"), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="locked by another run \\(the other daily run"):
        state.result()


def test_daily_run_of_a_day_without_data_fails_saying_no_data(prefect_api: None, archive: Path,
                                                              tmp_path: Path) -> None:
    from trailsight.flows.daily import daily

    empty_day = DAY + timedelta(days=20)
    state = daily(day=empty_day, source=str(archive), lake_url=str(tmp_path / "lake"),
                  report_root=str(tmp_path / "reports"), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=f"no data: the lake .* has no events dated {empty_day}"):
        state.result()


def run_logs(state: Any) -> list[tuple[int, str]]:
    """(level, message) of every log line of a flow run and its tasks and subflows, read back from the API."""
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    async def read() -> list[tuple[int, str]]:
        await APILogHandler.aflush()  # log lines reach the API from a background worker
        async with get_client() as prefect_client:
            run_id = state.state_details.flow_run_id
            children = await prefect_client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))
            ids = [run_id, *(c.id for c in children)]
            logs = await prefect_client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
            return [(log.level, log.message) for log in logs]

    return anyio.run(read)


def latest_artifact(key: str) -> Any:
    """The newest artifact under a key."""
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def newest() -> Any:
        async with get_client() as prefect_client:
            (artifact,) = await prefect_client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC,
                limit=1)
            return artifact

    return anyio.run(newest)


def test_backfill_skips_completed_days_unless_forced(prefect_api: None, archive: Path, tmp_path: Path) -> None:
    from trailsight.flows.daily import backfill

    arguments = dict(source=str(archive), lake_url=str(tmp_path / "lake"), report_root=str(tmp_path / "reports"))
    first = backfill(start=date(2024, 5, 1), end=DAY, **arguments)
    assert (first["days"], first["skipped"]) == (2, 0)
    state = backfill(start=date(2024, 5, 1), end=DAY, return_state=True, **arguments)
    assert state.result() == {"days": 0, "skipped": 2}
    assert any("all 2 day(s) from 2024-05-01 to 2024-05-02 are complete already; nothing to do" in message
               for _, message in run_logs(state))
    assert "All 2 day(s) were complete already" in latest_artifact("trailsight-backfill").data
    assert backfill(start=date(2024, 5, 1), end=DAY, force=True, **arguments)["days"] == 2


def test_backfill_reports_verifies_and_alerts_each_day_as_daily_does(
        prefect_api: None, archive: Path, tmp_path: Path, sns_inbox: tuple[str, str]) -> None:
    from trailsight.flows.daily import backfill

    topic, queue = sns_inbox
    state = backfill(start=date(2024, 5, 1), end=DAY, source=str(archive), lake_url=str(tmp_path / "lake"),
                     report_root=str(tmp_path / "reports"), sns_topic_arn=topic, return_state=True)
    result = state.result()
    assert result["days"] == 2
    history = [(level, message) for level, message in run_logs(state) if "history" in message]
    assert [level for level, _ in history] == [20]  # a new lake's short history: one line, not a warning each
    assert history[0][1].startswith("2 of 2 day(s) have notes on short spike history (2024-05-01..2024-05-02")
    for day in (date(2024, 5, 1), DAY):
        folder = tmp_path / "reports" / day.isoformat()
        assert json.loads((folder / "integrity.json").read_text())["digests"] > 0
        marker = json.loads((tmp_path / "lake" / "_trailsight" / "days" / f"{day}.json").read_text())
        assert marker["report"]["engine"] == {"engine": "duckdb"} and "alerts" in marker
    assert len(received(queue)) == sum(1 for _ in (tmp_path / "lake" / "_trailsight" / "alerts").iterdir()) > 0


def test_a_bad_day_fails_the_run_with_one_line_and_no_traceback(prefect_api: None, tmp_path: Path) -> None:
    from trailsight.flows.daily import daily

    state = daily(day="2024-13-01", lake_url=str(tmp_path / "lake"), return_state=True)
    assert state.is_failed()
    assert state.message == "parameter day: '2024-13-01' is not a date; use YYYY-MM-DD"
    logs = run_logs(state)
    assert (40, "parameter day: '2024-13-01' is not a date; use YYYY-MM-DD") in logs
    assert not any("Traceback" in message for _, message in logs)


def test_alerts_without_a_destination_say_so(prefect_api: None, archive: Path, tmp_path: Path) -> None:
    from trailsight.flows.daily import daily

    state = daily(day=DAY, source=str(archive), lake_url=str(tmp_path / "lake"),
                  report_root=str(tmp_path / "reports"), return_state=True)
    result = state.result()
    assert result["alerts"]["sent"] == [] and result["alerts"]["not_sent"]
    assert any(level == 30 and message == f"{len(result['alerts']['not_sent'])} alert(s) at or above high not "
               "sent: no destination is configured (set sns_topic_arn or webhook_url)"
               for level, message in run_logs(state))
    page = latest_artifact("trailsight-daily-html")
    assert page.type == "markdown" and str(tmp_path / "reports" / DAY.isoformat() / "report.html") in page.data
    assert "findings: " in page.data and "{'" not in page.data


def test_reports_on_s3_are_linked_with_a_url_a_browser_opens(prefect_api: None, archive: Path, tmp_path: Path,
                                                             s3_bucket: str) -> None:
    import urllib.request

    from trailsight.flows.daily import daily

    daily(day=DAY, source=str(archive), lake_url=str(tmp_path / "lake"), report_root=f"{s3_bucket}/reports")
    assert Storage(f"{s3_bucket}/reports/{DAY}").exists("report.html")
    link = latest_artifact("trailsight-daily-html")
    assert link.type == "markdown" and "(http" in link.data  # Prefect keeps a link artifact as Markdown
    url = link.data.rsplit("](", 1)[1].removesuffix(")")
    with urllib.request.urlopen(url) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert b"CloudTrail daily report" in response.read()


def retention_policy(folder: Path, keep_as_delivered_days: int = 1) -> Path:
    path = folder / "retention.toml"
    path.write_text(f"[raw]\nkeep_as_delivered_days = {keep_as_delivered_days}\nretain_days = 400\n\n"
                    "[bundles]\nstorage_class = \"GLACIER_IR\"\n")
    return path


def delivered_on(source: Path, day: date) -> list[Path]:
    return sorted(source.glob(f"AWSLogs/**/CloudTrail/*/{day:%Y/%m/%d}/*.json.gz"))


def test_daily_flow_with_a_policy_archives_the_day_that_is_due(prefect_api: None, archive: Path,
                                                               tmp_path: Path) -> None:
    from trailsight.flows.daily import daily

    source, lake = tmp_path / "source", tmp_path / "lake"
    shutil.copytree(archive, source)  # archiving deletes originals; the module's archive stays as it is
    due = DAY - timedelta(days=1)  # keep_as_delivered_days = 1
    ingest(str(source), str(lake), due, due, workers=1)  # what the previous daily run did
    originals = len(delivered_on(source, due))
    result = daily(day=DAY, source=str(source), lake_url=str(lake), report_root=str(tmp_path / "reports"),
                   retention_policy=str(retention_policy(tmp_path)))
    archived = result["archive"]
    assert (archived["day"], archived["status"], archived["ok"]) == (due.isoformat(), "archived", True)
    assert originals and archived["files_deleted"] == originals and delivered_on(source, due) == []
    assert archived["bundles_written"] == len(list(source.glob(f"trailsight-archive/bundles/{due:%Y/%m/%d}/**/*.tar")))
    assert delivered_on(source, DAY), "the run's own day stays as delivered"


def test_archive_task_fails_on_an_unverified_day_and_is_never_retried(tmp_path: Path) -> None:
    from trailsight.flows.daily import archive_raw_day

    day = DAY - timedelta(days=1)
    key = f"AWSLogs/111122223333/CloudTrail/us-east-1/{day:%Y/%m/%d}/111122223333_CloudTrail_us-east-1_x.json.gz"
    raw = tmp_path / "source" / key
    raw.parent.mkdir(parents=True)
    raw.write_bytes(gzip.compress(json.dumps({"Records": [make_event(f"{day}T10:00:00Z")]}).encode()))
    with pytest.raises(ArchiveError, match=f"^{day} failed verification, nothing was written or deleted: {key}: "
                                           "1 of 1 events are neither in the lake"):
        archive_raw_day.fn(str(tmp_path / "source"), str(tmp_path / "lake"), day, str(retention_policy(tmp_path)))
    assert raw.exists()

    class Failed:
        def result(self) -> None:
            raise ArchiveError("failed verification")

    assert archive_raw_day.retry_condition_fn(archive_raw_day, None, Failed()) is False


def test_demo_runs_end_to_end_with_source_and_lake_on_s3(prefect_api: None, s3_bucket: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from trailsight.cli.main import run
    from trailsight.query.duckdb_engine import run_sql

    assert run(["demo", "--dir", str(tmp_path), "--days", "2", "--events-per-day", "300",
                "--source", f"{s3_bucket}/trails", "--lake", f"{s3_bucket}/lake"]) == 0
    output = capsys.readouterr().out
    assert "Lake overview" in output and "report:" in output
    assert list(Storage(f"{s3_bucket}/trails").list_dirs()) == ["AWSLogs"]
    events = run_sql(f"{s3_bucket}/lake", "SELECT count(*) FROM cloudtrail").rows[0][0]
    assert events > 550
    assert len(list(tmp_path.glob("reports/*/report.html"))) == 2
