"""Security basics: no credentials in output or lake, keys cannot escape a folder, SQL values are bound."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import WriteLog, day_start, log_key, make_event

from trailsight.cli.main import run
from trailsight.errors import StorageError
from trailsight.query.duckdb_engine import run_sql
from trailsight.storage.store import Storage

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETMARKER"


def test_credentials_never_reach_output_lake_or_reports(tmp_path: Path, write_log: WriteLog,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SECRET + "TOKEN")
    when = day_start(2024, 5, 1).replace(hour=3)
    write_log(log_key(when), [make_event(when), {"eventTime": "bad"}])
    lake = tmp_path / "lake"
    assert run(["ingest", "--source", str(tmp_path / "source"), "--lake", str(lake), "--workers", "1"]) == 0
    assert run(["report", "--lake", str(lake), "--date", "2024-05-01", "--out", str(tmp_path / "r")]) == 0
    assert run(["sql", "--lake", str(lake), "SELECT * FROM nothing"]) == 1
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    for path in [*lake.rglob("*"), *(tmp_path / "r").rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "a/../../b", "AWSLogs/../../x"])
def test_object_keys_cannot_escape_a_local_folder(tmp_path: Path, key: str) -> None:
    storage = Storage(tmp_path / "store")
    with pytest.raises(StorageError, match="refusing object key"):
        storage.read_bytes(key)
    with pytest.raises(StorageError, match="refusing object key"):
        storage.write_bytes(key, b"x")


def test_query_parameters_are_bound_not_pasted(tmp_path: Path, write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1).replace(hour=3)
    write_log(log_key(when), [make_event(when)])
    run(["ingest", "--source", str(tmp_path / "source"), "--lake", str(tmp_path / "lake"), "--workers", "1"])
    hostile = "x' OR '1'='1"
    rows = run_sql(tmp_path / "lake", "SELECT count(*) FROM cloudtrail WHERE eventname = $name", {"name": hostile})
    assert rows.rows == [(0,)]
