"""Derived tables: written beside each data file at ingest, equal to their definitions over the events, derived on
read when missing (kept when the lake can be written), never read from files of an older definition."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import build_lake, report_lake_events

import trailsight.lake.derived as derived
from trailsight.errors import StorageError
from trailsight.lake.layout import lake_files
from trailsight.query.duckdb_engine import connect, use_derived
from trailsight.query.sqlfiles import SqlFile
from trailsight.report.daily import jsonable, run_reports
from trailsight.storage.store import Storage, copy_objects

DAY = date(2024, 3, 10)
FIRST = DAY - timedelta(days=3)
CHECKED_REPORTS = ["failed_calls", "spikes", "security"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lake(tmp_path_factory.mktemp("derived"), report_lake_events(datetime(2024, 3, 10, tzinfo=UTC)))


@pytest.fixture
def fresh_lake(tmp_path: Path) -> Path:
    return build_lake(tmp_path, report_lake_events(datetime(2024, 3, 10, tzinfo=UTC)))


@pytest.fixture
def definitions() -> Iterator[None]:
    """Clear the cached definitions before and after a test that changes them."""
    derived.derived_tables.cache_clear()
    yield
    derived.derived_tables.cache_clear()


def derived_keys(lake: Path) -> set[str]:
    return {p.relative_to(lake).as_posix() for p in (lake / derived.DERIVED_PREFIX).rglob("*.parquet")}


def report_data(lake: Path) -> dict[str, Any]:
    return jsonable(run_reports(lake, DAY, CHECKED_REPORTS)[0])


def test_ingest_writes_every_derived_table_of_every_data_file(lake: Path) -> None:
    data_keys = lake_files(Storage(lake), "cloudtrail")
    expected = {table.key(key) for table in derived.derived_tables().values() for key in data_keys}
    assert len(data_keys) >= 4
    assert derived_keys(lake) == expected


@pytest.mark.parametrize("name", sorted(derived.derived_tables()))
def test_derived_files_hold_what_the_definition_computes_over_the_events(lake: Path, name: str) -> None:
    storage = Storage(lake)
    data_keys = lake_files(storage, "cloudtrail")
    assert len(data_keys) == len({key.rsplit("/", 1)[0] for key in data_keys}), "one file per partition: no sums"
    con = connect(lake)
    try:
        direct = con.execute(derived.derived_tables()[name].query.sql)
        columns = [d[0] for d in direct.description]
        expected = sorted(direct.fetchall(), key=repr)
        use_derived(con, storage, name, FIRST, DAY)
        from_files = con.execute(f"SELECT {', '.join(columns)} FROM {name}").fetchall()
    finally:
        con.close()
    assert expected, f"the fixture gives {name} some rows"
    assert sorted(from_files, key=repr) == expected


def test_data_files_without_derived_files_are_derived_on_read_and_the_files_kept(fresh_lake: Path) -> None:
    before = report_data(fresh_lake)
    written = derived_keys(fresh_lake)
    shutil.rmtree(fresh_lake / derived.DERIVED_PREFIX)
    assert report_data(fresh_lake) == before
    kept = derived_keys(fresh_lake)
    assert kept and kept <= written


def test_a_lake_that_cannot_be_written_is_reported_all_the_same(fresh_lake: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    before = report_data(fresh_lake)
    shutil.rmtree(fresh_lake / derived.DERIVED_PREFIX)

    def refuse(self: Storage, key: str, data: Any) -> None:
        raise StorageError(f"cannot write {key}: read-only")

    monkeypatch.setattr(Storage, "write_bytes", refuse)
    assert report_data(fresh_lake) == before
    assert not (fresh_lake / derived.DERIVED_PREFIX).exists()


def test_a_changed_definition_never_reads_files_of_the_old_one(fresh_lake: Path, definitions: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    original = {query.name: query for query in derived.load_derived()}["failure_kinds"]
    doubled = SqlFile(original.name, original.title, original.description, original.parameters,
                      original.sql.replace("count(*) AS failures", "2 * count(*) AS failures"))
    assert doubled.sql != original.sql

    def total(con_lake: Path) -> int:
        con = connect(con_lake)
        try:
            use_derived(con, Storage(con_lake), "failure_kinds", FIRST, DAY)
            return con.execute("SELECT sum(failures) FROM failure_kinds").fetchall()[0][0]
        finally:
            con.close()

    old_version = derived.derived_tables()["failure_kinds"].version
    single = total(fresh_lake)
    derived.derived_tables.cache_clear()
    monkeypatch.setattr(derived, "load_derived", lambda: (doubled,))
    assert derived.derived_tables()["failure_kinds"].version != old_version
    assert total(fresh_lake) == 2 * single


def test_an_s3_lake_reads_its_derived_files_and_derives_what_it_lacks(lake: Path, s3_bucket: str) -> None:
    local = report_data(lake)
    remote = Storage(f"{s3_bucket}/lake")
    copy_objects(Storage(lake), remote)
    assert jsonable(run_reports(remote, DAY, CHECKED_REPORTS)[0]) == local
    derived_files = [obj.key for obj in remote.list_files(derived.DERIVED_PREFIX)]
    for key in derived_files:
        remote.delete(key)
    assert jsonable(run_reports(remote, DAY, CHECKED_REPORTS)[0]) == local
    kept = {obj.key for obj in remote.list_files(derived.DERIVED_PREFIX)}
    assert kept <= set(derived_files), "what a report needed is derived again, and kept"
    assert {key.split("/")[1] for key in kept if f"event_date={DAY}" in key} == set(derived.derived_tables())
