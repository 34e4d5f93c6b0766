"""Migrating a lake of region folders (formats 2 and 3) to format 4: a folder per account and day, region a column."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import WriteLog, day_start, log_key, make_event
from old_formats import as_region_folders

from trailsight.cli.main import run
from trailsight.errors import TrailsightError
from trailsight.lake.ingest import ingest
from trailsight.lake.layout import FORMAT_KEY
from trailsight.lake.migrate import migrate_lake
from trailsight.query.duckdb_engine import connect, run_sql, use_derived
from trailsight.storage.store import Storage, copy_objects

DAY = date(2024, 5, 1)
ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")
BY_REGION = ("SELECT account, region, count(*) AS events, count(DISTINCT eventhash) AS distinct_events, "
             "sum(hash(eventid)) AS ids FROM cloudtrail GROUP BY ALL ORDER BY ALL")


def lake_of_two_accounts_in_three_regions(tmp_path: Path, write_log: WriteLog) -> Path:
    """A current lake: two accounts, three regions each, a few failed calls; insight-table rows included."""
    for account in ACCOUNTS:
        for n, region in enumerate(REGIONS):
            when = day_start(2024, 5, 1).replace(hour=3 + n)
            events = [make_event(when + timedelta(seconds=s), awsRegion=region, recipientAccountId=account,
                                 errorCode="AccessDenied" if s % 4 == 0 else None) for s in range(10 + n)]
            write_log(log_key(when + timedelta(minutes=7), account=account, region=region), events)
    lake = tmp_path / "lake"
    ingest(tmp_path / "source", lake, DAY, DAY, workers=1)
    return lake


def by_region(lake: Path) -> list[tuple]:
    return run_sql(lake, BY_REGION).rows


def failures(lake: Path) -> list[tuple]:
    """A derived table's rows: what the reports read."""
    con = connect(lake)
    try:
        use_derived(con, Storage(lake), "failure_kinds", DAY, DAY)
        return con.execute("SELECT * FROM failure_kinds ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_a_format_3_lake_is_refused_by_readers_and_writers_naming_the_migrate_command(
        tmp_path: Path, write_log: WriteLog) -> None:
    lake = lake_of_two_accounts_in_three_regions(tmp_path, write_log)
    as_region_folders(lake, 3)
    with pytest.raises(TrailsightError, match=f"has format 3.*trailsight migrate --lake {lake}"):
        connect(lake)
    with pytest.raises(TrailsightError, match="trailsight migrate --lake"):
        ingest(tmp_path / "source", lake, DAY, DAY, workers=1)


def test_migrate_merges_each_accounts_regions_into_its_day_folder_keeping_every_event_once(
        tmp_path: Path, write_log: WriteLog, capsys: pytest.CaptureFixture[str]) -> None:
    lake = lake_of_two_accounts_in_three_regions(tmp_path, write_log)
    before, failed_before = by_region(lake), failures(lake)
    assert len(before) == 6 and all(row[2] == row[3] for row in before)
    as_region_folders(lake, 3)
    assert len(list((lake / "cloudtrail").rglob("region=*"))) == 6

    assert run(["migrate", "--lake", str(lake)]) == 0
    assert "migrated" in capsys.readouterr().out
    assert json.loads((lake / FORMAT_KEY).read_text())["format"] == 4
    assert not list(lake.rglob("region=*"))
    folders = sorted(path.parent.relative_to(lake).as_posix() for path in (lake / "cloudtrail").rglob("*.parquet"))
    assert folders == [f"cloudtrail/event_date=2024-05-01/account={account}" for account in ACCOUNTS]
    assert by_region(lake) == before
    assert failures(lake) == failed_before
    for path in (lake / "cloudtrail").rglob("*.parquet"):
        regions = pq.ParquetFile(path).read(columns=["region"]).column("region").to_pylist()
        assert regions == sorted(regions)

    assert migrate_lake(lake).partitions == 0
    assert ingest(tmp_path / "source", lake, DAY, DAY, workers=1).events_written == 0


def test_a_migration_killed_before_removing_the_old_folders_finishes_when_run_again(
        tmp_path: Path, write_log: WriteLog, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = lake_of_two_accounts_in_three_regions(tmp_path, write_log)
    before = by_region(lake)
    as_region_folders(lake, 3)

    def killed(self: Storage, key: str) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(Storage, "delete", killed)
        with pytest.raises(KeyboardInterrupt):
            migrate_lake(lake)
    assert json.loads((lake / FORMAT_KEY).read_text())["format"] == 3
    summary = migrate_lake(lake)
    assert summary.duplicates_removed > 0  # the first attempt's files held them already
    assert by_region(lake) == before
    assert not list(lake.rglob("region=*"))


def test_an_s3_lake_of_region_folders_is_migrated_in_place(tmp_path: Path, write_log: WriteLog,
                                                          s3_bucket: str) -> None:
    lake = lake_of_two_accounts_in_three_regions(tmp_path, write_log)
    before = by_region(lake)
    as_region_folders(lake, 3)
    remote = f"{s3_bucket}/lake"
    copy_objects(Storage(lake), Storage(remote))

    summary = migrate_lake(remote)
    assert (summary.from_format, summary.partitions) == (3, 2)
    assert run_sql(remote, BY_REGION).rows == before
    keys = [obj.key for obj in Storage(remote).list_files("")]
    assert not [key for key in keys if "region=" in key]
    assert Storage(remote).list_dirs(f"cloudtrail/event_date=2024-05-01/account={ACCOUNTS[0]}") == []
    assert json.loads(Storage(remote).read_bytes(FORMAT_KEY))["format"] == 4
