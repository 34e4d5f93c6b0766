"""Exactly once by content: two records are one event exactly when they are JSON-equal, whatever their bytes."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import WriteLog, log_key, make_event
from old_formats import as_region_folders

from trailsight.cli.main import run
from trailsight.convert.records import CLOUDTRAIL_TABLE, record_identity, signed_identity
from trailsight.errors import TrailsightError
from trailsight.lake.ingest import ingest
from trailsight.lake.layout import FORMAT_KEY, partition_hashes
from trailsight.lake.migrate import migrate_lake

DELIVERED = datetime(2024, 5, 1, 10, 5)
PARTITION = (CLOUDTRAIL_TABLE, DELIVERED.date(), "111122223333")


def spellings(event: dict) -> list[bytes]:
    """One event written three ways: as given, keys reversed and spaced, its numbers spelt otherwise."""
    reordered = json.dumps(dict(reversed(list(event.items()))), indent=1).encode()
    respelt = json.dumps(event, separators=(",", ":")).replace('"count":100', '"count":1e2').encode()
    return [json.dumps(event).encode(), reordered, respelt]


def file_of(*records: bytes) -> bytes:
    return gzip.compress(b'{"Records":[' + b",".join(records) + b"]}", mtime=0)


def stored_events(lake: Path) -> list[dict]:
    return [row for path in sorted((lake / CLOUDTRAIL_TABLE).rglob("*.parquet"))
            for row in pq.read_table(path).to_pylist()]


def an_event(event_id: str = "11111111-2222-3333-4444-555555555555", **fields: object) -> dict:
    return make_event("2024-05-01T10:00:00Z", eventID=event_id,
                      requestParameters={"count": 100, "bucket": "b", "nested": {"a": 1, "b": [1.5, 2]}}, **fields)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_event_in_other_bytes_is_kept_once_within_a_file_and_across_files(
        write_log: WriteLog, tmp_path: Path, workers: int) -> None:
    first, reordered, respelt = spellings(an_event())
    other = json.dumps(an_event("99999999-2222-3333-4444-555555555555")).encode()
    write_log(log_key(DELIVERED, suffix="a"), raw=file_of(first, reordered))
    write_log(log_key(DELIVERED, suffix="b"), raw=file_of(respelt, other))
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=workers)
    assert (summary.events_read, summary.events_written, summary.duplicates) == (4, 2, 2)
    assert sorted(row["eventid"] for row in stored_events(tmp_path / "lake")) == [
        "11111111-2222-3333-4444-555555555555", "99999999-2222-3333-4444-555555555555"]


def test_an_event_in_other_bytes_is_a_duplicate_in_a_later_run_and_its_raw_bytes_are_known(
        write_log: WriteLog, tmp_path: Path) -> None:
    first, reordered, _ = spellings(an_event())
    write_log(log_key(DELIVERED, suffix="a"), raw=file_of(first))
    ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    write_log(log_key(DELIVERED, suffix="b"), raw=file_of(reordered))
    again = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    assert (again.events_written, again.duplicates) == (0, 2)
    assert len(stored_events(tmp_path / "lake")) == 1
    # The raw file's record counts as in the lake, so archiving can verify and remove it.
    from trailsight.storage.store import Storage
    known = partition_hashes(Storage(tmp_path / "lake"), PARTITION)
    assert signed_identity(record_identity(reordered)) in known.tolist()


def test_two_different_events_sharing_an_eventid_are_both_kept(write_log: WriteLog, tmp_path: Path) -> None:
    one = json.dumps(an_event()).encode()
    changed = json.dumps(an_event(sourceIPAddress="203.0.113.9")).encode()
    write_log(log_key(DELIVERED, suffix="a"), raw=file_of(one, changed))
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    assert (summary.events_written, summary.duplicates) == (2, 0)


def format_2_lake_with_a_copy(write_log: WriteLog, tmp_path: Path) -> Path:
    """A lake as format 2 left it: the same event stored twice, in two spellings."""
    first, reordered, _ = spellings(an_event())
    write_log(log_key(DELIVERED, suffix="a"), raw=file_of(first))
    lake = tmp_path / "lake"
    ingest(tmp_path / "source", lake, workers=1)
    copy, other_source = tmp_path / "copy", tmp_path / "other-source"
    (other_source / log_key(DELIVERED, suffix="b")).parent.mkdir(parents=True)
    (other_source / log_key(DELIVERED, suffix="b")).write_bytes(file_of(reordered))
    ingest(other_source, copy, workers=1)
    for path in (copy / CLOUDTRAIL_TABLE).rglob("*.parquet"):
        target = lake / path.relative_to(copy)
        if not target.exists():
            target.write_bytes(path.read_bytes())
    as_region_folders(lake, 2)
    assert len(stored_events(lake)) == 2
    return lake


def test_a_format_2_lake_is_refused_naming_the_migrate_command(write_log: WriteLog, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    lake = format_2_lake_with_a_copy(write_log, tmp_path)
    with pytest.raises(TrailsightError, match="trailsight migrate --lake"):
        ingest(tmp_path / "source", lake, workers=1)


def test_migrate_keeps_one_of_each_event_and_moves_the_lake_to_format_4(write_log: WriteLog,
                                                                       tmp_path: Path) -> None:
    lake = format_2_lake_with_a_copy(write_log, tmp_path)
    assert run(["migrate", "--lake", str(lake)]) == 0
    assert json.loads((lake / FORMAT_KEY).read_text())["format"] == 4
    assert len(stored_events(lake)) == 1
    again = ingest(tmp_path / "source", lake, workers=1)
    assert again.events_written == 0
    assert migrate_lake(lake).duplicates_removed == 0
    hashes = np.array([row["eventhash"] for row in stored_events(lake)])
    assert len(np.unique(hashes)) == len(hashes)
