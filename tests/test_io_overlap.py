"""Overlapped I/O: reads running ahead from S3, listings level by level at once, writes together."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from conftest import WriteLog, day_start, log_key, make_event

import trailsight.storage.store as store
from trailsight.errors import StorageError
from trailsight.source.discovery import discover
from trailsight.storage.store import Storage, copy_objects, read_objects, write_objects


def test_reads_from_s3_come_back_in_order_with_a_missing_object_as_its_error(s3_bucket: str) -> None:
    storage = Storage(f"{s3_bucket}/objects")
    write_objects(storage, [(f"k{n:03d}", f"body {n}".encode()) for n in range(40)])
    wanted = [(f"k{n:03d}", 6) for n in range(40)]
    wanted.insert(7, ("missing", 10))
    results = list(read_objects(storage, wanted, max_in_flight=8, max_bytes=30))
    assert [key for key, _ in results] == [key for key, _ in wanted]
    assert isinstance(results[7][1], StorageError)
    assert [body for key, body in results if key != "missing"] == [f"body {n}".encode() for n in range(40)]


def test_reads_in_flight_stay_within_the_count_and_bytes_given(s3_bucket: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    storage = Storage(f"{s3_bucket}/objects")
    write_objects(storage, [(f"k{n:03d}", b"x" * 100) for n in range(30)])
    submitted = []
    original = store._read_or_error

    def counted(storage: Storage, key: str) -> bytes | StorageError:
        submitted.append(key)
        return original(storage, key)

    monkeypatch.setattr(store, "_read_or_error", counted)
    reader = read_objects(storage, [(f"k{n:03d}", 100) for n in range(30)], max_in_flight=4, max_bytes=250)
    next(reader)
    assert len(submitted) <= 3  # 250 bytes allow three objects of 100 ahead, fewer than the count of four
    rest = list(reader)
    assert len(rest) == 29 and len(submitted) == 30


def test_listing_an_organisation_trail_on_s3_finds_what_the_local_listing_finds(
        tmp_path: Path, write_log: WriteLog, s3_bucket: str) -> None:
    when = day_start(2024, 5, 2).replace(hour=3)
    for account in ("111111111111", "222222222222", "333333333333"):
        for region in ("us-east-1", "eu-west-1"):
            write_log(log_key(when, account=account, region=region, org="o-abcdefghij"), [make_event(when)])
    write_log(log_key(day_start(2024, 5, 4), org="o-abcdefghij"), [make_event(when)])  # outside the dates
    copy_objects(Storage(tmp_path / "source"), Storage(f"{s3_bucket}/trail"))
    local = discover(Storage(tmp_path / "source"), date(2024, 5, 1), date(2024, 5, 3))
    remote = discover(Storage(f"{s3_bucket}/trail"), date(2024, 5, 1), date(2024, 5, 3))
    assert len(local.event_files) == 6
    assert [(o.key, o.account, o.region, o.organization) for o in remote.event_files] == [
        (o.key, o.account, o.region, o.organization) for o in local.event_files]
