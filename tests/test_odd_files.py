"""Odd things in a local source folder: names that are not UTF-8, symbolic link loops and links out of the tree,
files whose names start with a dot. Each is ingested, or accounted for with a reason; nothing hangs or aborts."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from conftest import ACCOUNT, REGION, make_event

from trailsight.lake.ingest import ingest
from trailsight.retention.archive import archive_day
from trailsight.retention.policy import policy_from_dict
from trailsight.source.discovery import discover
from trailsight.storage.store import Storage

DAY = date(2024, 5, 1)
FOLDER = f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2024/05/01"


def log_bytes(*events: dict) -> bytes:
    return gzip.compress(json.dumps({"Records": list(events)}).encode(), mtime=0)


def name(stamp: str, suffix: str) -> str:
    return f"{ACCOUNT}_CloudTrail_{REGION}_20240501T{stamp}Z_{suffix}.json.gz"


def day_folder(source: Path) -> Path:
    folder = source / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    folder.joinpath(name("1005", "good")).write_bytes(log_bytes(make_event("2024-05-01T10:00:00Z")))
    return folder


def policy():
    return policy_from_dict({"raw": {"keep_as_delivered_days": 30, "retain_days": 400},
                             "bundles": {"storage_class": "GLACIER_IR"}})


def test_a_name_that_is_not_utf8_is_quarantined_with_its_reason_and_the_day_lands(tmp_path: Path) -> None:
    folder = day_folder(tmp_path / "source")
    bad = os.fsencode(folder) + b"/" + name("1010", "bad").encode().replace(b"_bad", b"_bad\xff")
    Path(os.fsdecode(bad)).write_bytes(log_bytes(make_event("2024-05-01T10:05:00Z")))
    summary = ingest(tmp_path / "source", tmp_path / "lake", DAY, DAY, workers=1)
    assert summary.events_written == 1
    assert summary.files_found == 2 and summary.files_quarantined == 1
    (entry,) = [json.loads(p.read_bytes()) for p in (tmp_path / "lake" / "_quarantine").rglob("*.json")]
    assert "UTF-8" in entry["reason"] and "\\xff" in entry["source"]
    # The archive of the day neither fails nor removes the file it cannot name.
    result = archive_day(Storage(tmp_path / "source"), Storage(tmp_path / "lake"), DAY, policy(),
                         today=DAY + timedelta(days=60))
    assert result is not None
    assert os.path.exists(bad)


def test_a_symlink_loop_and_links_out_of_the_tree_are_not_followed(tmp_path: Path) -> None:
    folder = day_folder(tmp_path / "source")
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.joinpath(name("1200", "outside")).write_bytes(log_bytes(make_event("2024-05-01T11:00:00Z")))
    (folder / "loop").symlink_to(tmp_path / "source" / "AWSLogs")
    (folder / "back").symlink_to(folder)
    (folder / "out").symlink_to(outside)
    (folder / name("1300", "linked")).symlink_to(outside / name("1200", "outside"))
    # In a child process, so that a listing that never ends fails the test instead of hanging it.
    code = ("from trailsight.lake.ingest import ingest; import sys; "
            f"s = ingest({str(tmp_path / 'source')!r}, {str(tmp_path / 'lake')!r}, workers=1); "
            "print(s.files_found, s.events_written)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]


def test_files_named_with_a_leading_dot_are_ingested_or_counted(tmp_path: Path) -> None:
    folder = day_folder(tmp_path / "source")
    folder.joinpath("." + name("1010", "hidden")).write_bytes(log_bytes(make_event("2024-05-01T10:05:00Z")))
    folder.joinpath(".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    found = discover(Storage(tmp_path / "source"))
    assert sorted(Path(o.key).name for o in found.event_files) == ["." + name("1010", "hidden"), name("1005", "good")]
    assert [Path(o.key).name for o in found.others] == [".DS_Store"]
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    assert (summary.files_found, summary.events_written, summary.other_objects) == (2, 2, 1)


def test_the_archive_bundles_files_named_with_a_leading_dot(tmp_path: Path) -> None:
    folder = day_folder(tmp_path / "source")
    hidden = folder.joinpath("." + name("1010", "hidden"))
    hidden.write_bytes(log_bytes(make_event("2024-05-01T10:05:00Z")))
    ingest(tmp_path / "source", tmp_path / "lake", DAY, DAY, workers=1)
    result = archive_day(Storage(tmp_path / "source"), Storage(tmp_path / "lake"), DAY, policy(),
                         today=DAY + timedelta(days=60))
    (group,) = result.groups
    assert group.files == 2 and group.status == "archived"
    assert not hidden.exists()


def test_the_writers_own_temporary_files_stay_unlisted(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.write_bytes("a/b.json", b"{}")
    (tmp_path / "a" / f".b.json.{'0' * 32}.tmp").write_bytes(b"{")
    assert [o.key for o in storage.list_files("a")] == ["a/b.json"]
