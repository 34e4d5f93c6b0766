"""Archive runs paused, raced and killed with real processes: no raw file is ever lost.

A driver runs `archive_day` in its own process and, as told, stops itself (SIGSTOP) or dies (SIGKILL) right after
the first manifest is written, or meets a full disk while writing a bundle.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import tarfile
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import day_start, log_key, make_event

from trailsight.lake.ingest import ingest
from trailsight.retention.archive import archive_day
from trailsight.retention.restore import restore_day
from trailsight.storage.store import Storage, copy_objects

DAY = date(2024, 5, 1)
LATER = DAY + timedelta(days=60)

DRIVER = """
import errno, os, shutil, signal, sys
from datetime import date
from trailsight.errors import TrailsightError
from trailsight.retention import archive

source, lake, day, later, when, workdir = sys.argv[1:7]
# The manifest writer was archive._write_manifest before the split, archive.write_manifest since.
name = "write_manifest" if hasattr(archive, "write_manifest") else "_write_manifest"
real_write = getattr(archive, name)
written = 0

def write_then_stop(*args):
    global written
    real_write(*args)
    written += 1
    if written == 1 and when in ("stop", "kill"):
        os.kill(os.getpid(), signal.SIGSTOP if when == "stop" else signal.SIGKILL)

setattr(archive, name, write_then_stop)
if when == "disk-full":
    real_copy = shutil.copyfileobj

    def copy_until_full(source_file, target, length=0):
        target.write(source_file.read(4096))
        raise OSError(errno.ENOSPC, "No space left on device")

    shutil.copyfileobj = copy_until_full
try:
    result = archive.archive_day(source, lake, date.fromisoformat(day), today=date.fromisoformat(later),
                                 workdir=workdir or None)
except TrailsightError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
print(result.status, result.files_deleted)
"""


def driver(source: Storage, lake: Storage, when: str, workdir: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", DRIVER, source.url, lake.url, DAY.isoformat(), LATER.isoformat(),
                             when, str(workdir or "")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_stopped(process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("the archive never reached its first manifest")


def put_log(source: Storage, key: str, records: list[dict]) -> bytes:
    data = gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)
    source.write_bytes(key, data)
    return data


def write_day(source: Storage) -> dict[str, list[dict]]:
    """Three files in each of two regions; returns each file's records by key."""
    records = {}
    for region in ("eu-west-1", "us-west-2"):
        for number in range(3):
            when = day_start(2024, 5, 1).replace(hour=number * 5)
            events = [make_event(when + timedelta(seconds=i), awsRegion=region) for i in range(30)]
            key = log_key(when + timedelta(minutes=5), region=region, suffix=f"{number:016x}")
            put_log(source, key, events)
            records[key] = events
    return records


@pytest.fixture(params=["local", "s3"])
def places(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Storage, Storage, dict[str, list[dict]]]:
    """(raw archive, lake, records by key) with the day ingested."""
    if request.param == "local":
        source, lake = Storage(tmp_path / "source"), Storage(tmp_path / "lake")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        source, lake = Storage(f"{bucket}/cloudtrail"), Storage(f"{bucket}/lake")
    records = write_day(source)
    ingest(source, lake, workers=1)
    return source, lake, records


def raw_files(source: Storage) -> dict[str, bytes]:
    return {o.key: source.read_bytes(o.key) for o in source.list_files("AWSLogs")}


def restored(source: Storage, target: Path) -> dict[str, bytes]:
    result = restore_day(source, DAY, target=target)
    assert result.status == "restored", result
    return {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*.json.gz")}


def test_second_archive_of_a_delivery_day_is_refused_while_the_first_runs(places, tmp_path: Path) -> None:
    source, lake, records = places
    other_lake = Storage(f"{lake.url}-copy")
    copy_objects(lake, other_lake)
    first = driver(source, lake, "stop")
    wait_until_stopped(first)
    # A re-delivery lands after the first run listed the day: the same events, in a new file.
    region_key = next(k for k in records if "us-west-2" in k)
    late_key = region_key.replace("0000000000000000", "0000000000000009")
    late_bytes = put_log(source, late_key, records[region_key])
    delivered = {**raw_files(source)}

    second = driver(source, other_lake, "none")
    out, err = second.communicate(timeout=120)
    first.send_signal(signal.SIGCONT)
    _, first_err = first.communicate(timeout=120)

    assert second.returncode == 1, (out, err)
    assert f"delivery day {DAY} of {source.url} is being archived or restored by another run (archive {DAY}" in err
    assert f"pid {first.pid}" in err
    assert first.returncode == 0, first_err
    # The first run deleted only what it bundled; the late file waits for the next run.
    assert source.read_bytes(late_key) == late_bytes
    assert archive_day(source, lake, DAY, today=LATER).files_deleted == 1
    assert raw_files(source) == {}
    assert restored(source, tmp_path / "back") == delivered


def test_original_rewritten_after_verification_is_kept_and_bundled_by_the_next_run(places, tmp_path: Path) -> None:
    source, lake, records = places
    before = raw_files(source)
    run = driver(source, lake, "stop")
    wait_until_stopped(run)
    manifests = [o.key for o in source.list_files("trailsight-archive/manifests") if o.key.endswith(".json")]
    (group_manifest,) = manifests
    region = group_manifest.rsplit("/", 1)[1].removesuffix(".json")
    rewritten = next(k for k in records if f"/{region}/" in k)
    new_bytes = put_log(source, rewritten, list(reversed(records[rewritten])))  # same events, other bytes
    run.send_signal(signal.SIGCONT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err

    assert raw_files(source) == {rewritten: new_bytes}
    second = archive_day(source, lake, DAY, today=LATER)
    assert second.files_deleted == 1 and raw_files(source) == {}
    # Both versions are kept: the first bundle holds the bytes verified first, the second the rewrite;
    # a restore puts back the newest.
    assert restored(source, tmp_path / "back") == {**before, rewritten: new_bytes}
    first_bundle = next(o.key for o in source.list_files("trailsight-archive/bundles") if o.key.endswith(
        f"{region}.tar"))
    local_copy = tmp_path / "first.tar"
    local_copy.write_bytes(source.read_bytes(first_bundle))
    with tarfile.open(local_copy) as tar:
        member = tar.extractfile(rewritten)
        assert member is not None and member.read() == before[rewritten]


def test_killed_archive_leaves_no_copies_of_raw_files_after_the_next_run(tmp_path: Path) -> None:
    source, lake = Storage(tmp_path / "source"), Storage(tmp_path / "lake")
    write_day(source)
    ingest(source, lake, workers=1)
    work = tmp_path / "work"
    work.mkdir()
    killed = driver(source, lake, "kill", work)
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert list(work.glob("trailsight-archive-*/*/*")), "the killed run held copies of raw files"
    assert archive_day(source, lake, DAY, today=LATER, workdir=work).status == "archived"
    assert list(work.iterdir()) == []


def test_full_disk_while_writing_a_bundle_leaves_no_temporary_file(tmp_path: Path) -> None:
    source, lake = Storage(tmp_path / "source"), Storage(tmp_path / "lake")
    write_day(source)
    ingest(source, lake, workers=1)
    failed = driver(source, lake, "disk-full")
    _, err = failed.communicate(timeout=120)
    assert failed.returncode == 1
    assert err.strip().startswith("cannot write bundle ") and "No space left on device" in err, err
    assert archive_day(source, lake, DAY, today=LATER).status == "archived"
    assert [p for p in (tmp_path / "source").rglob("*") if p.name.endswith(".tmp")] == []
