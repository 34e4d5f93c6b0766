"""The CLI: every command has help, errors are one line without a traceback, commands mirror the library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from conftest import WriteLog, day_start, log_key, make_event

from trailsight.cli.main import app, run

COMMANDS = (
    "ingest", "export", "sql", "generate", "demo", "schema", "report", "verify", "archive", "restore", "lifecycle",
    "retention",
)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([command, "--help"]) == 0
    assert "Example: trailsight " + command in capsys.readouterr().out


@pytest.mark.parametrize("command", ["ddl", "create"])
def test_athena_commands_have_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["athena", command, "--help"]) == 0
    assert f"Example: trailsight athena {command}" in capsys.readouterr().out


def test_aws_errors_are_one_line(s3_bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["ingest", "--source", "s3://no-such-bucket-here/trails", "--lake", f"{s3_bucket}/lake"]) == 1
    assert capsys.readouterr().err == "Error: s3://no-such-bucket-here/trails: no such bucket\n"


def test_commands_are_the_documented_ones() -> None:
    names = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert set(COMMANDS) <= names


def ingest_sample(tmp_path: Path, write_log: WriteLog) -> Path:
    when = day_start(2024, 5, 1).replace(hour=9)
    write_log(log_key(when), [make_event(when), make_event(when, errorCode="AccessDenied"), {"eventTime": 5}])
    lake = tmp_path / "lake"
    assert run(["ingest", "--source", str(tmp_path / "source"), "--lake", str(lake), "--date", "2024-05-01",
                "--workers", "1", "--json"]) == 0
    return lake


def test_ingest_prints_a_balanced_summary(tmp_path: Path, write_log: WriteLog,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ingest_sample(tmp_path, write_log)
    summary = json.loads(capsys.readouterr().out)
    assert summary["balanced"] and summary["events_read"] == 3 and summary["events_quarantined"] == 1


def test_sql_formats(tmp_path: Path, write_log: WriteLog, capsys: pytest.CaptureFixture[str]) -> None:
    lake = ingest_sample(tmp_path, write_log)
    capsys.readouterr()
    query = "SELECT eventname, errorcode FROM cloudtrail ORDER BY errorcode NULLS LAST"
    assert run(["sql", "--lake", str(lake), query, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"eventname": "DescribeInstances", "errorcode": "AccessDenied"},
        {"eventname": "DescribeInstances", "errorcode": None},
    ]
    assert run(["sql", "--lake", str(lake), query, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "eventname,errorcode", "DescribeInstances,AccessDenied", "DescribeInstances,"]
    assert run(["sql", "--lake", str(lake), query]) == 0
    assert "AccessDenied" in capsys.readouterr().out


def test_export_writes_cloudtrail_files(tmp_path: Path, write_log: WriteLog,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    lake = ingest_sample(tmp_path, write_log)
    assert run(["export", "--lake", str(lake), "--date", "2024-05-01", "--out", str(tmp_path / "out")]) == 0
    assert "exported 2 events" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "AWSLogs").rglob("*.json.gz"))) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "--source", "s", "--lake", "l", "--date", "2024-02-30"],
         "Error: --date '2024-02-30' is not a date"),
        (["ingest", "--source", "s", "--lake", "l", "--start", "2024-01-02"], "Error: --start and --end go together"),
        (["ingest", "--source", "s", "--lake", "l", "--date", "2024-01-01", "--start", "2024-01-01",
          "--end", "2024-01-02"], "Error: give either --date or --start/--end"),
        (["ingest", "--source", "s", "--lake", "l", "--start", "2024-01-05", "--end", "2024-01-02"],
         "Error: --start 2024-01-05 is after --end 2024-01-02"),
    ],
)
def test_bad_arguments_give_one_error_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_report_writes_the_day_s_files(tmp_path: Path, write_log: WriteLog,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    lake = ingest_sample(tmp_path, write_log)
    capsys.readouterr()
    assert run(["report", "--lake", str(lake), "--date", "2024-05-01", "--out", str(tmp_path / "r"),
                "--reports", "summary,top_callers"]) == 0
    assert "2024-05-01: 2 events, 1 failed calls" in capsys.readouterr().out
    assert {"summary.json", "top_callers.json", "report.html", "report.md"} <= {p.name for p in
                                                                                (tmp_path / "r").iterdir()}


def test_failing_query_is_one_error_line(tmp_path: Path, write_log: WriteLog,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    lake = ingest_sample(tmp_path, write_log)
    capsys.readouterr()
    assert run(["sql", "--lake", str(lake), "SELECT * FROM no_such_table"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: query failed: Catalog Error") and "Traceback" not in err


def test_locked_lake_is_one_error_line(tmp_path: Path, write_log: WriteLog,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    when = day_start(2024, 5, 1)
    write_log(log_key(when), [make_event(when)])
    (tmp_path / "lake" / "_trailsight").mkdir(parents=True)
    (tmp_path / "lake" / "_trailsight" / "lock").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    assert run(["ingest", "--source", str(tmp_path / "source"), "--lake", str(tmp_path / "lake")]) == 1
    assert "Error: the lake" in capsys.readouterr().err


def test_missing_source_folder_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["ingest", "--source", str(tmp_path / "nowhere"), "--lake", str(tmp_path / "lake")]) == 1
    assert capsys.readouterr().err.startswith(f"Error: {tmp_path / 'nowhere'} does not exist")


def test_source_without_cloudtrail_layout_ingests_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert run(["ingest", "--source", str(tmp_path / "empty"), "--lake", str(tmp_path / "lake"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files_found"] == 0


def test_verify_reports_ok_and_a_tampered_file_with_exit_code_2(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import gzip
    from datetime import date

    from trailsight.synth.generate import generate_archive

    generate_archive(tmp_path / "src", days=1, seed=4, end=date(2024, 5, 1), events_per_day=300)
    assert run(["verify", "--source", str(tmp_path / "src"), "--date", "2024-05-01"]) == 0
    assert capsys.readouterr().out.strip().endswith("OK")
    victim = sorted((tmp_path / "src").rglob("*_CloudTrail_*.json.gz"))[0]
    victim.write_bytes(gzip.compress(gzip.decompress(victim.read_bytes()).replace(b"Z", b"z", 1)))
    assert run(["verify", "--source", str(tmp_path / "src"), "--date", "2024-05-01"]) == 2
    out = capsys.readouterr().out
    assert "hash-mismatch" in out and out.strip().splitlines()[-1].startswith("FAILED: 1 problems")


def test_report_with_source_includes_integrity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import date

    from trailsight.synth.generate import generate_archive

    generate_archive(tmp_path / "src", days=1, seed=4, end=date(2024, 5, 1), events_per_day=300)
    assert run(["ingest", "--source", str(tmp_path / "src"), "--lake", str(tmp_path / "lake"), "--workers", "1",
                "--json"]) == 0
    assert run(["report", "--lake", str(tmp_path / "lake"), "--date", "2024-05-01", "--out", str(tmp_path / "r"),
                "--source", str(tmp_path / "src")]) == 0
    integrity = json.loads((tmp_path / "r" / "integrity.json").read_text())
    assert integrity["ok"] and integrity["log_files_valid"] == integrity["log_files_listed"] > 0
    assert "Log file integrity" in (tmp_path / "r" / "report.html").read_text()
