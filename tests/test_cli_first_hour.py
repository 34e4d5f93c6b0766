"""A new user's first hour: mistakes that would succeed silently fail with a message that names the fix."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import WriteLog, day_start, log_key, make_event

from trailsight.cli.main import run
from trailsight.lake.progress import ProgressLines
from trailsight.storage.aws import client
from trailsight.storage.store import Storage


@pytest.fixture
def archive(tmp_path: Path, write_log: WriteLog) -> Path:
    when = day_start(2024, 5, 1).replace(hour=9)
    write_log(log_key(when), [make_event(when), make_event(when, errorCode="AccessDenied")])
    return tmp_path / "source"


def ingest_from(source: Path | str, tmp_path: Path) -> int:
    return run(["ingest", "--source", str(source), "--lake", str(tmp_path / "lake"), "--workers", "1"])


def test_source_at_the_awslogs_folder_itself_is_read(archive: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert ingest_from(archive / "AWSLogs", tmp_path) == 0
    assert "events written" in capsys.readouterr().out.replace("_", " ")


def test_source_at_an_account_folder_says_what_to_pass(archive: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    account = next((archive / "AWSLogs").iterdir())
    assert ingest_from(account, tmp_path) == 1
    assert capsys.readouterr().err == (
        f"Error: {account} is inside a CloudTrail archive; give the folder that holds AWSLogs/ and choose what to "
        f"read with options: --source {archive} --account {account.name}\n")


def test_source_at_a_date_folder_names_account_region_and_date(archive: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (day_folder,) = archive.glob("AWSLogs/*/CloudTrail/*/2024/05/01")
    assert ingest_from(day_folder, tmp_path) == 1
    assert capsys.readouterr().err.endswith(
        f"--source {archive} --account {day_folder.parts[-6]} --region {day_folder.parts[-4]} --date 2024-05-01\n")


def test_source_with_no_log_files_says_what_source_takes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert ingest_from(tmp_path / "empty", tmp_path) == 0
    assert capsys.readouterr().err == (f"note: no CloudTrail log files in {tmp_path / 'empty'}; --source takes the "
                                       "folder (or s3:// prefix) that holds AWSLogs/\n")


def test_s3_without_credentials_fails_in_seconds_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr("trailsight.storage.aws._have_credentials", set())
    started = time.monotonic()
    assert run(["ingest", "--source", str(tmp_path), "--lake", "s3://some-bucket/lake"]) == 1
    assert time.monotonic() - started < 10
    assert capsys.readouterr().err == (
        "Error: no AWS credentials found for s3://some-bucket/lake: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or run `aws configure`\n")


class FlakyS3(BaseHTTPRequestHandler):
    """Answers 503 SlowDown to the first request, then 200: what a throttled bucket does."""

    calls = 0

    def do_HEAD(self) -> None:
        type(self).calls += 1
        self.send_response(503 if type(self).calls == 1 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_retrying_s3_call_is_said_once_with_its_reason(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr("trailsight.storage.aws._retry_noted", set())
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s3 = client("s3", f"http://127.0.0.1:{server.server_port}")
        with caplog.at_level(logging.WARNING, logger="trailsight"):
            s3.head_bucket(Bucket="b")
            s3.head_bucket(Bucket="b")
    finally:
        server.shutdown()
        server.server_close()
    assert FlakyS3.calls == 3
    assert [r.getMessage() for r in caplog.records] == [
        "s3 is not answering (HTTP 503); retrying, up to 8 attempts per call"]


class FlakyObjectStore(BaseHTTPRequestHandler):
    """One object, `b/lake/x`, behind a store whose first answer is 503 SlowDown, as a throttled bucket's is."""

    body = b"the object's bytes"
    calls = 0

    def _answer(self, with_body: bool) -> None:
        type(self).calls += 1
        if type(self).calls == 1:
            error = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(error) if with_body else 0))
            self.end_headers()
            if with_body:
                self.wfile.write(error)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Last-Modified", "Sun, 06 Dec 2026 07:00:00 GMT")
        self.send_header("ETag", '"e"')
        self.end_headers()
        if with_body:
            self.wfile.write(self.body)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("call", "answer", "reason"), [
    (lambda store: store.read_bytes("x"), FlakyObjectStore.body, "HTTP 503"),  # a GET, retried by botocore
    (lambda store: store.exists("x"), True, "HTTP status 503"),  # a HEAD through pyarrow, retried by trailsight
])
def test_a_retried_s3_call_is_said_once_with_its_reason(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture, call: Any, answer: Any,
                                                        reason: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr("trailsight.storage.aws._retry_noted", set())
    monkeypatch.setattr(FlakyObjectStore, "calls", 0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyObjectStore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TRAILSIGHT_S3_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    try:
        with caplog.at_level(logging.WARNING, logger="trailsight"):
            result = call(Storage("s3://b/lake"))
    finally:
        server.shutdown()
        server.server_close()
    assert result == answer
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith("s3 is not answering (") and reason in said
    assert said.endswith("); retrying, up to 8 attempts per call")


def test_generate_into_a_file_says_it_needs_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("x")
    assert run(["generate", "--out", str(tmp_path / "a-file"), "--days", "1"]) == 1
    assert capsys.readouterr().err == (
        f"Error: {tmp_path / 'a-file'} is a file; the sample archive needs a folder (created if missing)\n")


def test_failed_archive_verification_shows_ten_problems_and_lists_all_in_a_file(
        tmp_path: Path, write_log: WriteLog, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    kept = day_start(2024, 5, 2).replace(hour=9)
    write_log(log_key(kept), [make_event(kept)])
    assert ingest_from(tmp_path / "source", tmp_path) == 0
    for n in range(25):  # delivered for 2024-05-01, never ingested
        when = day_start(2024, 5, 1).replace(hour=1 + n // 2, minute=n % 2 * 30)
        write_log(log_key(when, suffix=f"{n:016x}"), [make_event(when)])
    policy = tmp_path / "retention.toml"
    policy.write_text("[raw]\nkeep_as_delivered_days = 1\nretain_days = 400\n[bundles]\nstorage_class = 'GLACIER'\n")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert run(["archive", "--source", str(tmp_path / "source"), "--lake", str(tmp_path / "lake"),
                "--date", "2024-05-01", "--policy", str(policy)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 12 and lines[10] == "... and 15 more"
    assert lines[11] == ("2024-05-01 failed verification (25 problems); nothing was written or deleted; all 25 "
                         "problems are listed in archive-problems-2024-05-01.txt")
    listed = (tmp_path / "archive-problems-2024-05-01.txt").read_text().splitlines()
    assert len(listed) == 25 and listed[:10] == lines[:10]


@pytest.fixture
def lake(archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert ingest_from(archive, tmp_path) == 0
    capsys.readouterr()
    return tmp_path / "lake"


def test_select_star_too_wide_for_the_terminal_is_shown_one_field_per_line(
        lake: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("trailsight.cli.common.out.size", (220, 50))
    assert run(["sql", "--lake", str(lake), "SELECT * FROM cloudtrail ORDER BY errorcode NULLS LAST LIMIT 5"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("note: 37 columns do not fit in 220; one field per line (--format line).")
    lines = captured.out.splitlines()
    assert lines[0].startswith("-[ row 1 ]") and sum(line.startswith("-[ row") for line in lines) == 2
    assert "errorcode                    | AccessDenied" in lines
    (identity,) = [line for line in lines if line.startswith("useridentity ")][:1]
    assert json.loads(identity.split(" | ", 1)[1])["type"] == "IAMUser"


def test_table_cells_are_cut_short_not_squeezed_out(lake: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("trailsight.cli.common.out.size", (120, 50))
    assert run(["sql", "--lake", str(lake), "SELECT eventname, useridentity, errorcode FROM cloudtrail "
                "ORDER BY errorcode NULLS LAST"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "DescribeInstances" in line]
    assert len(rows) == 2 and all('{"type":"IAMUser",' in row and "…" in row for row in rows)
    assert "AccessDenied" in rows[0]


def test_csv_and_jsonl_write_structs_as_json(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = "SELECT useridentity, eventtime FROM cloudtrail LIMIT 1"
    assert run(["sql", "--lake", str(lake), query, "--format", "csv"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert json.loads(row["useridentity"])["type"] == "IAMUser" and "None" not in row["useridentity"]
    assert row["eventtime"] == "2024-05-01T09:00:00Z"
    assert run(["sql", "--lake", str(lake), query, "--format", "jsonl"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["useridentity"]["type"] == "IAMUser"


def test_parquet_output_goes_to_a_file(lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = "SELECT eventname, useridentity FROM cloudtrail"
    assert run(["sql", "--lake", str(lake), query, "--format", "parquet"]) == 1
    assert capsys.readouterr().err == "Error: --format parquet writes a file; add --out PATH\n"
    assert run(["sql", "--lake", str(lake), query, "--format", "parquet", "--out", str(tmp_path / "r.parquet")]) == 0
    assert capsys.readouterr().err == f"wrote 2 rows to {tmp_path / 'r.parquet'}\n"
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.num_rows == 2 and table.schema.field("useridentity").type.num_fields > 3


def test_sql_help_names_the_three_views(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["sql", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(view in text for view in ("cloudtrail ", "cloudtrail_calls", "cloudtrail_insights"))


def test_the_overview_and_the_report_count_failed_calls_alike(archive: Path, lake: Path, tmp_path: Path,
                                                              write_log: WriteLog) -> None:
    from trailsight.query.duckdb_engine import run_sql
    from trailsight.query.sqlfiles import load_sql
    from trailsight.report.daily import summary_report

    when = day_start(2024, 5, 1).replace(hour=10)
    write_log(log_key(when, suffix="e" * 16), [make_event(when, errorMessage="Failed authentication")])
    assert ingest_from(archive, tmp_path) == 0
    overview = run_sql(lake, load_sql("lake_overview").sql)
    failed = dict(zip(overview.columns, overview.rows[0], strict=True))["failed"]
    assert failed == summary_report(lake, "2024-05-01")["headline"]["failed"] == 2


def test_ingest_into_a_pipe_prints_plain_progress_lines(archive: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("trailsight.cli.lake.PROGRESS_EVERY", 0.0)  # a line at every step of this short run
    assert run(["ingest", "--source", str(archive), "--lake", str(tmp_path / "lake"), "--workers", "1"]) == 0
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ingest: ")]
    assert len(progress) == 1 and progress[0].startswith("ingest: 1 of 1 files, 2 events, ")
    assert progress[0].endswith(" events/s")


def test_progress_lines_come_every_few_seconds_with_rate_and_time_left() -> None:
    now = [0.0]
    said: list[str] = []
    lines = ProgressLines(said.append, every=10, clock=lambda: now[0])
    for second, done in ((4, 10), (11, 25), (15, 30), (22, 50), (30, 100)):
        now[0] = second
        lines(done, 100, done * 1000)
    assert said == ["ingest: 25 of 100 files, 25,000 events, 2,273 events/s, about 0:33 left",
                    "ingest: 50 of 100 files, 50,000 events, 2,273 events/s, about 0:22 left"]
    now[0] = 33
    lines(100, 100, 100_000)
    assert said[-1] == "ingest: 100 of 100 files, 100,000 events, 3,030 events/s"


@pytest.mark.parametrize("command", ["ingest", "sql", "report", "archive", "lifecycle plan", "retention plan"])
def test_help_has_no_type_placeholders(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*command.split(), "--help"]) == 0
    text = capsys.readouterr().out
    assert re.findall(r"<(?:str|int|bool|float|path|list)\b|list\[", text) == []
