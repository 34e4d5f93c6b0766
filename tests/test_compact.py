"""Compaction: a partition's files merged into few, atomically for readers, derived tables kept consistent."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import WriteLog, day_start, log_key, make_event

import trailsight.lake.compact as compact_module
from trailsight.cli.main import run
from trailsight.errors import TrailsightError
from trailsight.lake.compact import compact
from trailsight.lake.derived import derived_tables
from trailsight.lake.ingest import ingest
from trailsight.lake.layout import lake_files, visible_names
from trailsight.query.duckdb_engine import connect, run_sql, use_derived
from trailsight.storage.store import Storage

DAY = date(2024, 5, 1)
EVENTS = "SELECT count(*), count(DISTINCT eventid), sum(hash(eventid)) FROM cloudtrail"


def deliveries(write_log: WriteLog, hours: range, events_per_file: int = 20) -> None:
    """One file per hour of DAY, each delivered 7 minutes after its events, in one account and region."""
    for hour in hours:
        when = day_start(2024, 5, 1).replace(hour=hour)
        events = [make_event(when + timedelta(seconds=s), errorCode="AccessDenied" if s % 5 == 0 else None)
                  for s in range(events_per_file)]
        write_log(log_key(when + timedelta(minutes=7)), events)


def lake_of_three_runs(tmp_path: Path, write_log: WriteLog) -> Path:
    """A lake whose one partition got a file from each of three runs (hourly deliveries arriving in between)."""
    lake = tmp_path / "lake"
    for hours in (range(0, 4), range(4, 8), range(8, 12)):
        deliveries(write_log, hours)
        ingest(tmp_path / "source", lake, DAY, DAY, workers=1)
    assert len(lake_files(Storage(lake))) == 3
    return lake


def data_names(lake: Path) -> list[str]:
    return sorted(p.name for p in (lake / "cloudtrail").rglob("*.parquet"))


def failure_counts(lake: Path) -> list[tuple]:
    """The failures per API and error from the derived table (its rows add up across data files)."""
    con = connect(lake)
    try:
        use_derived(con, Storage(lake), "failure_kinds", DAY, DAY)
        return con.execute("SELECT event_date, account, region, eventsource, eventname, error_code, sum(failures) "
                           "FROM failure_kinds GROUP BY ALL ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_compaction_merges_a_partitions_files_into_one_holding_the_same_events(tmp_path: Path,
                                                                               write_log: WriteLog) -> None:
    lake = lake_of_three_runs(tmp_path, write_log)
    before, counts_before = run_sql(lake, EVENTS).rows, failure_counts(lake)
    summary = compact(lake)
    assert (summary.partitions_compacted, summary.files_before, summary.files_after, summary.rows) == (1, 3, 1, 240)
    assert run_sql(lake, EVENTS).rows == before == [(240, 240, before[0][2])]
    [name] = data_names(lake)
    assert name.startswith("compacted-000001-001of001-")
    derived = sorted(p.name for p in (lake / "_derived").rglob("*.parquet"))
    assert derived == [name] * len(derived_tables())  # the old files' derived files went with them
    assert failure_counts(lake) == counts_before
    assert counts_before[0][-1] == 48
    assert not list((lake / "_trailsight").rglob("compacting/**/*.parquet"))


def test_compacting_again_changes_nothing(tmp_path: Path, write_log: WriteLog) -> None:
    lake = lake_of_three_runs(tmp_path, write_log)
    compact(lake)
    names = data_names(lake)
    summary = compact(lake)
    assert (summary.partitions_compacted, summary.left_overs_removed) == (0, 0)
    assert data_names(lake) == names


def test_a_compaction_killed_before_its_set_is_complete_is_never_seen(tmp_path: Path, write_log: WriteLog,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    lake = lake_of_three_runs(tmp_path, write_log)
    before = run_sql(lake, EVENTS).rows
    original = Storage.move
    moves = []

    def killed_after_one_move(self: Storage, key: str, new_key: str) -> None:
        if moves:
            raise KeyboardInterrupt
        moves.append(new_key)
        original(self, key, new_key)

    monkeypatch.setattr(Storage, "move", killed_after_one_move)
    with pytest.raises(KeyboardInterrupt):
        compact(lake, target_bytes=1)  # one new file per old one: a set of three
    monkeypatch.setattr(Storage, "move", original)
    assert len(data_names(lake)) == 4  # the three old files and one of the three new ones
    assert run_sql(lake, EVENTS).rows == before
    summary = compact(lake)
    assert summary.left_overs_removed == 1
    assert run_sql(lake, EVENTS).rows == before
    assert len(data_names(lake)) == 1


def test_a_compaction_killed_after_its_commit_leaves_the_replaced_files_unseen(tmp_path: Path, write_log: WriteLog,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    lake = lake_of_three_runs(tmp_path, write_log)
    before = run_sql(lake, EVENTS).rows

    def killed(lake: Storage, partition: object, keys: list[str]) -> None:
        if keys:
            raise KeyboardInterrupt

    monkeypatch.setattr(compact_module, "_remove", killed)
    with pytest.raises(KeyboardInterrupt):
        compact(lake)
    monkeypatch.undo()
    assert len(data_names(lake)) == 4
    assert run_sql(lake, EVENTS).rows == before
    assert compact(lake).left_overs_removed == 3
    assert run_sql(lake, EVENTS).rows == before
    assert len(data_names(lake)) == 1


def test_ingest_after_a_compaction_is_seen_beside_it_and_deduplicated_against_it(tmp_path: Path,
                                                                                  write_log: WriteLog) -> None:
    lake = lake_of_three_runs(tmp_path, write_log)
    compact(lake)
    again = ingest(tmp_path / "source", lake, DAY, DAY, workers=1)
    assert (again.events_written, again.duplicates) == (0, 240)
    deliveries(write_log, range(12, 14))
    later = ingest(tmp_path / "source", lake, DAY, DAY, workers=1)
    assert later.events_written == 40
    assert [n.split("-")[0:2] for n in data_names(lake)] == [["compacted", "000001"], ["part", "000001"]]
    assert run_sql(lake, EVENTS).rows[0][:2] == (280, 280)
    compact(lake)
    assert data_names(lake)[0].startswith("compacted-000002-001of001-")
    assert run_sql(lake, EVENTS).rows[0][:2] == (280, 280)


def test_readers_see_the_newest_complete_compaction_and_what_came_after_it() -> None:
    names = ["part-aa.parquet", "compacted-000001-001of001-cc.parquet", "part-000001-dd.parquet",
             "compacted-000002-001of002-ee.parquet", "compacted-000002-002of002-ff.parquet"]
    # The epoch-2 files carry different digests: two attempts, neither complete.
    assert visible_names(names) == (["compacted-000001-001of001-cc.parquet", "part-000001-dd.parquet"],
                                    ["compacted-000002-001of002-ee.parquet", "compacted-000002-002of002-ff.parquet",
                                     "part-aa.parquet"])
    assert visible_names(["part-aa.parquet", "part-bb.parquet"]) == (["part-aa.parquet", "part-bb.parquet"], [])


def test_compaction_on_s3_keeps_every_event_once(tmp_path: Path, write_log: WriteLog, s3_bucket: str) -> None:
    lake = f"{s3_bucket}/lake"
    for hours in (range(0, 2), range(2, 4)):
        deliveries(write_log, hours)
        ingest(tmp_path / "source", lake, DAY, DAY, workers=1)
    before = run_sql(lake, EVENTS).rows
    summary = compact(lake)
    assert (summary.files_before, summary.files_after) == (2, 1)
    assert run_sql(lake, EVENTS).rows == before
    assert len(lake_files(Storage(lake))) == 1


def test_compact_command_prints_what_it_did(tmp_path: Path, write_log: WriteLog,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    lake = lake_of_three_runs(tmp_path, write_log)
    assert run(["compact", "--lake", str(lake), "--date", "2024-05-01", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["partitions_compacted"], printed["files_before"], printed["files_after"]) == (1, 3, 1)
    assert run(["compact", "--lake", str(tmp_path / "missing"), "--start", "2024-05-02", "--end", "2024-05-01"]) == 1
    assert run(["compact", "--lake", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_a_file_named_without_the_epoch_after_a_compaction_is_refused_not_deleted(tmp_path: Path,
                                                                                  write_log: WriteLog) -> None:
    lake = lake_of_three_runs(tmp_path, write_log)
    compact(lake)
    deliveries(write_log, range(12, 13))
    ingest(tmp_path / "source", lake, DAY, DAY, workers=1)
    [late] = [p for p in (lake / "cloudtrail").rglob("part-000001-*.parquet")]
    late.rename(late.with_name("part-00000000000000ff.parquet"))  # as a writer unaware of epochs would name it
    with pytest.raises(TrailsightError, match="20 events of files a compaction replaced"):
        compact(lake)
    assert (late.with_name("part-00000000000000ff.parquet")).exists()
