"""Ingest into the lake: event-dated partitions, de-duplication, idempotence, locking, crash safety."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import WriteLog, day_start, log_key, make_event

import trailsight.lake.ingest as lake_module
from trailsight.convert.records import convert_object
from trailsight.errors import LakeLockedError, TrailsightError
from trailsight.lake.derived import Deriver
from trailsight.lake.ingest import SPILL_PREFIX, _worker_pool, ingest, spill_parent
from trailsight.lake.layout import FORMAT_KEY, LOCK_KEY, partition_key
from trailsight.lake.lock import lake_lock
from trailsight.lake.writer import FileToWrite, write_files
from trailsight.query.duckdb_engine import run_sql
from trailsight.retention.verify import LakeIndex
from trailsight.storage.store import Storage


def lake_snapshot(lake: Path) -> dict[str, bytes]:
    """Every data and quarantine file of a lake, by relative path (run records excluded)."""
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*"))
            if p.is_file() and "_trailsight" not in p.parts}


def count(lake: Path, where: str = "true") -> int:
    return run_sql(lake, f"SELECT count(*) FROM cloudtrail WHERE {where}").rows[0][0]


def test_late_event_lands_in_its_own_day(tmp_path: Path, write_log: WriteLog) -> None:
    late = make_event(day_start(2024, 5, 1).replace(hour=23, minute=58))
    on_time = make_event(day_start(2024, 5, 2).replace(minute=1))
    write_log(log_key(day_start(2024, 5, 2).replace(minute=5)), [late, on_time])
    summary = ingest(tmp_path / "source", tmp_path / "lake", date(2024, 5, 1), date(2024, 5, 1), workers=1)
    assert summary.events_written == 2
    rows = run_sql(tmp_path / "lake", "SELECT eventid, event_date FROM cloudtrail").rows
    assert {(r[0], str(r[1])) for r in rows} == {(late["eventID"], "2024-05-01"), (on_time["eventID"], "2024-05-02")}


def test_next_days_late_window_is_read_but_not_the_whole_next_day(tmp_path: Path, write_log: WriteLog) -> None:
    d1 = day_start(2024, 5, 1)
    write_log(log_key(d1.replace(hour=12)), [make_event(d1.replace(hour=12))])
    write_log(log_key(d1 + timedelta(hours=24, minutes=10)), [make_event(d1.replace(hour=23, minute=59))])
    write_log(log_key(d1 + timedelta(hours=30)), [make_event(d1 + timedelta(hours=29, minutes=55))])
    summary = ingest(tmp_path / "source", tmp_path / "lake", date(2024, 5, 1), date(2024, 5, 1), workers=1)
    assert summary.files_found == 2
    assert count(tmp_path / "lake", "event_date = DATE '2024-05-01'") == 2


def test_duplicate_delivery_is_stored_once(tmp_path: Path, write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1).replace(hour=9)
    event = make_event(when)
    write_log(log_key(when + timedelta(minutes=5)), [event, make_event(when)])
    write_log(log_key(when + timedelta(minutes=10)), [event])
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    assert (summary.events_read, summary.events_written, summary.duplicates) == (3, 2, 1)
    assert count(tmp_path / "lake", f"eventid = '{event['eventID']}'") == 1


def test_different_events_sharing_an_event_id_are_both_kept(tmp_path: Path, write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1).replace(hour=9)
    first = make_event(when, eventID="same-id")
    second = make_event(when, eventID="same-id", eventName="RunInstances")
    write_log(log_key(when + timedelta(minutes=5)), [first, second])
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    assert summary.events_written == 2 and summary.duplicates == 0
    assert count(tmp_path / "lake", "eventid = 'same-id'") == 2


def test_rerunning_a_day_gives_an_identical_lake(tmp_path: Path, write_log: WriteLog) -> None:
    for hour in range(0, 24, 3):
        when = day_start(2024, 5, 1).replace(hour=hour)
        write_log(log_key(when + timedelta(minutes=7)), [make_event(when + timedelta(seconds=s)) for s in range(20)])
    lake = tmp_path / "lake"
    first = ingest(tmp_path / "source", lake, date(2024, 5, 1), date(2024, 5, 1), workers=1)
    before = lake_snapshot(lake)
    again = ingest(tmp_path / "source", lake, date(2024, 5, 1), date(2024, 5, 1), workers=2)
    assert lake_snapshot(lake) == before
    assert (again.events_read, again.events_written, again.duplicates) == (first.events_read, 0, first.events_read)


def test_every_event_is_accounted_for(tmp_path: Path, write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1).replace(hour=9)
    event = make_event(when)
    write_log(log_key(when), [event, event, {"eventTime": "bad"}, make_event(when)])
    write_log(log_key(when + timedelta(minutes=1)), raw=b"not gzip")
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    assert summary.balanced
    assert (summary.events_read, summary.events_written, summary.duplicates, summary.events_quarantined) == (
        4, 2, 1, 1)
    assert summary.files_quarantined == 1 and len(summary.quarantine) == 2


def test_quarantine_keeps_the_record_and_the_reason(tmp_path: Path, write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1).replace(hour=9)
    key = log_key(when)
    write_log(key, [make_event(when), {"eventTime": "not a time", "eventName": "X"}])
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    (entry_key,) = summary.quarantine
    entry = json.loads((tmp_path / "lake" / entry_key).read_text())
    assert entry["source"] == key and entry["reason"] is None
    assert entry["records"] == [{"index": 1, "reason": "eventTime 'not a time' is not an ISO-8601 time",
                                 "record": {"eventTime": "not a time", "eventName": "X"}}]


def test_lake_is_readable_by_pyarrow_with_hive_partitions(tmp_path: Path, write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1).replace(hour=9)
    write_log(log_key(when), [make_event(when)])
    ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    table = ds.dataset(tmp_path / "lake" / "cloudtrail", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 1 and {"event_date", "account", "region", "eventtime"} <= set(table.column_names)


def test_repeating_columns_nested_ones_included_are_dictionary_encoded_and_times_delta_encoded(
        tmp_path: Path, write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1).replace(hour=9)
    write_log(log_key(when), [make_event(when + timedelta(seconds=i)) for i in range(50)])
    ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    (path,) = (tmp_path / "lake" / "cloudtrail").rglob("*.parquet")
    metadata = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {metadata.column(i).path_in_schema: metadata.column(i).encodings for i in range(metadata.num_columns)}
    for repeating in ("eventname", "useridentity.arn", "useridentity.sessioncontext.sessionissuer.arn"):
        assert "RLE_DICTIONARY" in encodings[repeating], repeating
    assert "RLE_DICTIONARY" not in encodings["eventid"]
    assert "DELTA_BINARY_PACKED" in encodings["eventtime"]


def test_second_writer_is_refused_with_a_clear_message(tmp_path: Path, write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1).replace(hour=9)
    write_log(log_key(when), [make_event(when)])
    lake = Storage(tmp_path / "lake")
    with lake_lock(lake, "another ingest"), pytest.raises(LakeLockedError, match="locked by another run"):
        ingest(tmp_path / "source", lake, workers=1)
    assert not lake.exists(LOCK_KEY)
    assert ingest(tmp_path / "source", lake, workers=1).events_written == 1


def test_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path, write_log: WriteLog) -> None:
    lake = tmp_path / "lake"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (lake / "_trailsight").mkdir(parents=True)
    (lake / LOCK_KEY).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": "x"}))
    when = day_start(2024, 5, 1).replace(hour=9)
    write_log(log_key(when), [make_event(when)])
    assert ingest(tmp_path / "source", lake, workers=1).events_written == 1


KILL_AT_REPLACE = """
import os, sys
from datetime import date
real_replace = os.replace
calls = 0
def dying_replace(src, dst):
    global calls
    calls += 1
    if calls == int(sys.argv[3]):
        os._exit(137)
    real_replace(src, dst)
os.replace = dying_replace
from trailsight.lake.ingest import ingest
ingest(sys.argv[1], sys.argv[2], workers=1)
"""


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4])
def test_run_killed_midway_leaves_readable_partitions_and_rerun_completes(
    tmp_path: Path, write_log: WriteLog, kill_at: int
) -> None:
    for day in (1, 2, 3):
        for hour in (1, 13):
            when = day_start(2024, 5, day).replace(hour=hour)
            write_log(log_key(when), [make_event(when + timedelta(seconds=s)) for s in range(30)])
    lake = tmp_path / "lake"
    killed = subprocess.run([sys.executable, "-c", KILL_AT_REPLACE, str(tmp_path / "source"), str(lake),
                             str(kill_at)], capture_output=True)
    assert killed.returncode == 137, killed.stderr.decode()[-500:]
    partial = count(lake) if (lake / "cloudtrail").exists() else 0
    assert partial % 30 == 0 and partial <= 180
    ingest(tmp_path / "source", lake, workers=1)
    clean = tmp_path / "clean"
    ingest(tmp_path / "source", clean, workers=1)
    query = "SELECT eventid, eventhash, event_date, account, region FROM cloudtrail ORDER BY eventid"
    assert run_sql(lake, query).rows == run_sql(clean, query).rows
    assert count(lake) == 180


def write_day(write_log: WriteLog, files: int = 12, events: int = 40) -> None:
    """A day of small deliveries in two regions, with late events and a duplicate delivery."""
    for number in range(files):
        when = day_start(2024, 5, 1) + timedelta(hours=2 * number, minutes=5)
        records = [make_event(when - timedelta(minutes=10, seconds=s), awsRegion=("eu-west-1", "us-east-1")[s % 2])
                   for s in range(events)]
        write_log(log_key(when), records)
        if number % 4 == 0:
            write_log(log_key(when + timedelta(minutes=1)), records[:5])


def test_parallel_workers_write_the_same_files_as_one_process(
        tmp_path: Path, write_log: WriteLog, monkeypatch: pytest.MonkeyPatch) -> None:
    write_day(write_log)
    monkeypatch.setattr(lake_module, "BATCH_FILES", 2)  # many batches, so the workers really share the work
    monkeypatch.setattr(lake_module, "MAX_BUFFERED_ROWS", 150)  # and several write rounds
    inline = ingest(tmp_path / "source", tmp_path / "inline", workers=1)
    parallel = ingest(tmp_path / "source", tmp_path / "parallel", workers=2)
    assert (parallel.events_written, parallel.duplicates) == (inline.events_written, inline.duplicates)
    assert parallel.duplicates > 0 and len(parallel.partitions) > 1
    files = [p.parent for p in (tmp_path / "parallel" / "cloudtrail").rglob("*.parquet")]
    assert len(files) > len(set(files)), "expected several write rounds, so several files in a partition"
    assert lake_snapshot(tmp_path / "parallel") == lake_snapshot(tmp_path / "inline")
    assert not list(spill_parent().glob(f"{SPILL_PREFIX}{os.getpid()}-*")), "spilled rows left behind"


def test_spill_folder_of_a_killed_run_is_removed_by_the_next(
        tmp_path: Path, write_log: WriteLog, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{dead.pid}-", dir=spill_parent()))
    (left / "rows.arrow").write_bytes(b"x" * 1000)
    write_day(write_log, files=4)
    monkeypatch.setattr(lake_module, "BATCH_FILES", 1)
    ingest(tmp_path / "source", tmp_path / "lake", workers=2)
    assert not left.exists()


def test_new_lake_records_its_format_and_an_older_lake_is_refused(tmp_path: Path, write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1).replace(hour=9)
    write_log(log_key(when), [make_event(when)])
    lake = tmp_path / "lake"
    ingest(tmp_path / "source", lake, workers=1)
    assert json.loads((lake / FORMAT_KEY).read_text())["format"] == 4
    (lake / FORMAT_KEY).unlink()  # as a lake written before the format was recorded
    with pytest.raises(TrailsightError, match="written by an earlier trailsight"):
        ingest(tmp_path / "source", lake, workers=1)
    with pytest.raises(TrailsightError, match="written by an earlier trailsight"):
        LakeIndex(Storage(lake))
    (lake / FORMAT_KEY).write_text(json.dumps({"format": 5}))
    with pytest.raises(TrailsightError, match="has format 5"):
        ingest(tmp_path / "source", lake, workers=1)


def test_a_writer_writes_nothing_once_the_run_holding_the_lock_is_gone(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data = gzip.compress(json.dumps({"Records": [make_event("2024-05-01T10:00:00Z")]}).encode())
    ((partition, rows),) = convert_object("k.json.gz", data, "1", "r").tables.items()
    file = FileToWrite(f"{partition_key(partition)}/part-x.parquet", partition, [rows], np.arange(rows.num_rows))
    deriver = Deriver()
    with pytest.raises(TrailsightError, match="is gone; not writing"):
        write_files(Storage(tmp_path / "lake"), [file], deriver, owner=dead.pid)
    write_files(Storage(tmp_path / "lake"), [file], deriver, owner=os.getpid())
    deriver.close()
    assert [p.name for p in (tmp_path / "lake").rglob("*.parquet") if "_derived" not in p.parts] == ["part-x.parquet"]


def test_workers_see_the_environment_of_the_run_not_of_the_forkserver(monkeypatch: pytest.MonkeyPatch) -> None:
    with _worker_pool(2) as pool:  # the forkserver runs from here on, with the environment of this moment
        assert pool is not None and pool.submit(os.getpid).result() != os.getpid()
    monkeypatch.setenv("TRAILSIGHT_RUN_MARK", "set after the forkserver started")
    with _worker_pool(2) as pool:
        assert pool is not None
        assert pool.submit(os.getenv, "TRAILSIGHT_RUN_MARK").result() == "set after the forkserver started"


PARALLEL_RUN = """
import sys
import trailsight.lake.ingest as lake
lake.BATCH_FILES = 1
lake.MAX_BUFFERED_ROWS = 150
lake.ingest(sys.argv[1], sys.argv[2], workers=2)
"""


def test_parallel_run_killed_midway_leaves_readable_partitions_and_rerun_completes(
        tmp_path: Path, write_log: WriteLog) -> None:
    write_day(write_log, files=24, events=60)
    lake = tmp_path / "lake"
    run = subprocess.Popen([sys.executable, "-c", PARALLEL_RUN, str(tmp_path / "source"), str(lake)])
    deadline = time.monotonic() + 60
    while run.poll() is None and not list(lake.glob("cloudtrail/**/*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    time.sleep(0.5)  # its workers see the run is gone and write nothing more
    assert count(lake) > 0  # what was written is readable
    ingest(tmp_path / "source", lake, workers=2)
    clean = ingest(tmp_path / "source", tmp_path / "clean", workers=1)
    query = "SELECT eventid, eventhash, event_date, account, region FROM cloudtrail ORDER BY ALL"
    assert run_sql(lake, query).rows == run_sql(tmp_path / "clean", query).rows
    assert count(lake) == clean.events_written
    assert not list(spill_parent().glob(f"{SPILL_PREFIX}{run.pid}-*")), "the killed run's spilled rows remain"
