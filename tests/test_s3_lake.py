"""Source and lake on S3 (moto over HTTP) behave like local folders."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import WriteLog, day_start, log_key, make_event

import trailsight.lake.ingest as lake_module
from trailsight.errors import LakeLockedError
from trailsight.lake.export import export
from trailsight.lake.ingest import ingest
from trailsight.lake.layout import lake_files
from trailsight.lake.lock import lake_lock
from trailsight.query.duckdb_engine import run_sql
from trailsight.storage.store import Storage, copy_objects


def small_archive(write_log: WriteLog) -> None:
    for day in (1, 2):
        for hour in (0, 12, 23):
            when = day_start(2024, 5, day).replace(hour=hour, minute=58)
            events = [make_event(when + timedelta(seconds=s)) for s in range(10)]
            write_log(log_key(when + timedelta(minutes=7)), events)
            write_log(log_key(when + timedelta(minutes=7), org="o-abcdefghij", account="222233334444"), events[:3])


QUERY = "SELECT eventid, event_date, account, region, eventhash FROM cloudtrail ORDER BY eventid, account"


def test_ingest_from_and_to_s3_matches_the_local_run(tmp_path: Path, write_log: WriteLog, s3_bucket: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    small_archive(write_log)
    copy_objects(Storage(tmp_path / "source"), Storage(f"{s3_bucket}/trails"))
    local = ingest(tmp_path / "source", tmp_path / "lake", date(2024, 5, 1), date(2024, 5, 2), workers=1)
    monkeypatch.setattr(lake_module, "BATCH_FILES", 1)  # several batches: worker processes read and write S3
    remote = ingest(f"{s3_bucket}/trails", f"{s3_bucket}/lake", date(2024, 5, 1), date(2024, 5, 2), workers=2)
    assert (remote.events_read, remote.events_written, remote.duplicates) == (
        local.events_read, local.events_written, local.duplicates)
    assert run_sql(f"{s3_bucket}/lake", QUERY).rows == run_sql(tmp_path / "lake", QUERY).rows
    again = ingest(f"{s3_bucket}/trails", f"{s3_bucket}/lake", date(2024, 5, 1), date(2024, 5, 2), workers=1)
    assert again.events_written == 0


def test_partition_filter_on_an_s3_lake_gives_the_local_answer(tmp_path: Path, write_log: WriteLog,
                                                              s3_bucket: str) -> None:
    small_archive(write_log)
    copy_objects(Storage(tmp_path / "source"), Storage(f"{s3_bucket}/trails"))
    ingest(f"{s3_bucket}/trails", f"{s3_bucket}/lake", workers=1)
    ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    query = "SELECT account, count(*) FROM cloudtrail WHERE event_date = $day GROUP BY account ORDER BY account"
    remote = run_sql(f"{s3_bucket}/lake", query, {"day": date(2024, 5, 2)}).rows
    assert remote == run_sql(tmp_path / "lake", query, {"day": date(2024, 5, 2)}).rows
    assert remote == [("111122223333", 30)]  # the org copies are the same events: stored once


def test_export_from_an_s3_lake(tmp_path: Path, write_log: WriteLog, s3_bucket: str) -> None:
    small_archive(write_log)
    ingest(tmp_path / "source", f"{s3_bucket}/lake", workers=1)
    summary = export(f"{s3_bucket}/lake", tmp_path / "out")
    assert summary.events == run_sql(f"{s3_bucket}/lake", "SELECT count(*) FROM cloudtrail").rows[0][0]


def test_concurrent_run_on_an_s3_lake_is_refused(tmp_path: Path, write_log: WriteLog, s3_bucket: str) -> None:
    small_archive(write_log)
    lake = Storage(f"{s3_bucket}/lake")
    with lake_lock(lake, "first"), pytest.raises(LakeLockedError):
        ingest(tmp_path / "source", lake, workers=1)


def test_without_httpfs_an_s3_lake_is_read_through_pyarrow(tmp_path: Path, write_log: WriteLog,
                                                           s3_bucket: str) -> None:
    import duckdb

    from trailsight.query.duckdb_engine import _httpfs_secret, connect

    small_archive(write_log)
    ingest(tmp_path / "source", f"{s3_bucket}/lake", workers=1)
    probe = duckdb.connect()
    assert _httpfs_secret(probe) is False, "httpfs is not installable here; this test covers the fallback"
    con = connect(f"{s3_bucket}/lake")
    kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
    assert kinds["cloudtrail_calls"] == "VIEW"
    assert con.execute("SELECT count(*) FROM cloudtrail").fetchall()[0][0] > 0


def test_httpfs_view_points_at_the_s3_url(s3_bucket: str, tmp_path: Path, write_log: WriteLog) -> None:
    from trailsight.query.duckdb_engine import _view_sql
    from trailsight.schema import load_schema

    small_archive(write_log)
    ingest(tmp_path / "source", f"{s3_bucket}/lake", workers=1)
    sql = _view_sql(Storage(f"{s3_bucket}/lake"), "cloudtrail", load_schema())
    files = lake_files(Storage(f"{s3_bucket}/lake"), "cloudtrail")
    assert files
    assert f"read_parquet(['{s3_bucket}/lake/{files[0]}'" in sql and "hive_partitioning = true" in sql
