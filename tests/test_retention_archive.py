"""Archive and restore of a delivery day, on a local folder and on S3 (moto over HTTP): same behaviour."""

from __future__ import annotations

import gzip
import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import day_start, log_key, make_event

from trailsight.errors import ArchiveError
from trailsight.lake.ingest import ingest
from trailsight.retention import archive, bundle_store
from trailsight.retention.archive import archive_day
from trailsight.retention.policy import Policy, policy_from_dict
from trailsight.retention.restore import restore_day
from trailsight.retention.verify import verify_day
from trailsight.storage.aws import client, split_s3_url
from trailsight.storage.store import Storage

DAY = date(2024, 5, 1)
LATER = DAY + timedelta(days=60)
ACCOUNT = "111122223333"
REGIONS = ("us-east-1", "eu-west-1")


def policy(storage_class: str = "GLACIER_IR", **bundles: Any) -> Policy:
    return policy_from_dict({"raw": {"keep_as_delivered_days": 30, "retain_days": 400},
                             "bundles": {"storage_class": storage_class, **bundles}})


@pytest.fixture(params=["local", "s3"])
def places(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Storage, Storage]:
    """(archive, lake): two local folders, or two prefixes of a fresh moto bucket."""
    if request.param == "local":
        return Storage(tmp_path / "source"), Storage(tmp_path / "lake")
    bucket = request.getfixturevalue("s3_bucket")
    return Storage(f"{bucket}/cloudtrail"), Storage(f"{bucket}/lake")


def put_log(source: Storage, key: str, records: list[Any]) -> bytes:
    data = gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)
    source.write_bytes(key, data)
    return data


def noisy_event(rng: random.Random, hour: int, minute: int, region: str) -> dict[str, Any]:
    """An event with a little incompressible content, so that a day's bundle is well above 128 KiB."""
    when = day_start(2024, 5, 1).replace(hour=hour, minute=minute)
    return make_event(when, awsRegion=region, requestParameters={"blob": rng.randbytes(600).hex()})


def write_day(source: Storage, files_per_region: int = 4, events_per_file: int = 20) -> dict[str, bytes]:
    """A delivery day of raw files for one account in two regions; returns their bytes by key."""
    rng = random.Random(7)
    originals = {}
    for region in REGIONS:
        for number in range(files_per_region):
            hour, minute = divmod(number * 115, 60)
            delivered = day_start(2024, 5, 1).replace(hour=hour % 24, minute=minute)
            key = log_key(delivered + timedelta(minutes=5), region=region, suffix=f"{number:016x}")
            records = [noisy_event(rng, hour % 24, minute, region) for _ in range(events_per_file)]
            originals[key] = put_log(source, key, records)
    return originals


def raw_keys(source: Storage) -> list[str]:
    return [o.key for o in source.list_files("AWSLogs")]


def archive_objects(source: Storage) -> list[str]:
    return [o.key for o in source.list_files("trailsight-archive")]


@pytest.fixture
def ingested(places: tuple[Storage, Storage]) -> tuple[Storage, Storage, dict[str, bytes]]:
    source, lake = places
    originals = write_day(source)
    ingest(source, lake, DAY, DAY, workers=1)
    return source, lake, originals


def test_archived_day_is_one_bundle_per_account_and_region_and_originals_are_gone(places) -> None:
    source, lake = places
    originals = write_day(source, files_per_region=12)
    ingest(source, lake, DAY, DAY, workers=1)
    result = archive_day(source, lake, DAY, policy(), today=LATER)
    assert result.status == "archived" and result.ok
    assert [g.group for g in result.groups] == [f"{ACCOUNT}/eu-west-1", f"{ACCOUNT}/us-east-1"]
    assert raw_keys(source) == []
    bundles = [o for o in source.list_files("trailsight-archive/bundles")]
    assert [b.key for b in bundles] == [f"trailsight-archive/bundles/2024/05/01/{ACCOUNT}/{r}.tar"
                                        for r in sorted(REGIONS)]
    assert all(b.size > 128 * 1024 for b in bundles)
    assert result.files_deleted == len(originals) and result.bundles_written == 2
    assert sum(g.records for g in result.groups) == sum(g.in_lake for g in result.groups) == 24 * 20


def test_restore_puts_every_original_back_byte_for_byte(ingested) -> None:
    source, lake, originals = ingested
    archive_day(source, lake, DAY, policy(), today=LATER)
    restored = restore_day(source, DAY, policy())
    assert restored.status == "restored" and restored.files_written == len(originals)
    assert {k: source.read_bytes(k) for k in raw_keys(source)} == originals
    again = restore_day(source, DAY, policy())
    assert (again.files_written, again.files_present) == (0, len(originals))


def test_restore_into_another_location_leaves_the_archive_as_it_is(ingested, tmp_path: Path) -> None:
    source, lake, originals = ingested
    archive_day(source, lake, DAY, policy(), today=LATER)
    result = restore_day(source, DAY, policy(), target=tmp_path / "elsewhere", regions=["us-east-1"])
    elsewhere = Storage(tmp_path / "elsewhere")
    assert result.status == "restored"
    assert {o.key: elsewhere.read_bytes(o.key) for o in elsewhere.list_files()} == {
        k: v for k, v in originals.items() if "/us-east-1/" in k}
    assert raw_keys(source) == []


def test_bundle_holds_an_index_and_the_originals_under_their_keys(ingested, tmp_path: Path) -> None:
    source, lake, originals = ingested
    archive_day(source, lake, DAY, policy(), today=LATER)
    key = f"trailsight-archive/bundles/2024/05/01/{ACCOUNT}/us-east-1.tar"
    local = tmp_path / "b.tar"
    local.write_bytes(source.read_bytes(key))
    import tarfile

    with tarfile.open(local) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile(names[0]).read())  # type: ignore[union-attr]
        assert names[0] == "trailsight-index.json"
        assert names[1:] == sorted(k for k in originals if "/us-east-1/" in k)
        assert all(tar.extractfile(n).read() == originals[n] for n in names[1:])  # type: ignore[union-attr]
    assert [f["key"] for f in index["files"]] == names[1:]


def test_rerunning_an_archived_day_changes_nothing(ingested) -> None:
    source, lake, _ = ingested
    archive_day(source, lake, DAY, policy(), today=LATER)
    before = {o.key: o.size for o in source.list_files()}
    again = archive_day(source, lake, DAY, policy(), today=LATER)
    assert again.status == "already archived" and again.bundles_written == 0 and again.files_deleted == 0
    assert {o.key: o.size for o in source.list_files()} == before


def test_day_with_events_missing_from_the_lake_is_not_touched_and_reported(ingested) -> None:
    source, lake, originals = ingested
    late_key = log_key(day_start(2024, 5, 1).replace(hour=22), region="eu-west-1", suffix="f" * 16)
    missing = make_event(day_start(2024, 5, 1).replace(hour=21, minute=59), awsRegion="eu-west-1")
    put_log(source, late_key, [missing])
    result = archive_day(source, lake, DAY, policy(), today=LATER)
    assert result.status == "unverified" and not result.ok
    assert len(result.problems) == 1
    assert late_key in result.problems[0] and missing["eventID"] in result.problems[0]
    assert "trailsight ingest --date 2024-05-01" in result.problems[0]
    assert archive_objects(source) == []
    assert sorted(raw_keys(source)) == sorted([*originals, late_key])
    assert {g.status for g in result.groups} == {"unverified", "not touched"}


def test_quarantined_records_are_counted_and_do_not_block_archiving(places) -> None:
    source, lake = places
    when = day_start(2024, 5, 1).replace(hour=3)
    key = log_key(when)
    put_log(source, key, [make_event(when), "not an event", make_event(when)])
    broken_key = log_key(when, suffix="b" * 16)
    source.write_bytes(broken_key, b"not gzip at all")
    ingest(source, lake, DAY, DAY, workers=1)
    check = verify_day(source, lake, DAY, policy())
    files = {f.key: (f.records, f.in_lake, f.quarantined, f.missing, f.whole_file_quarantined)
             for f in check.groups[0].files}
    assert check.ok and files == {key: (3, 2, 1, 0, False), broken_key: (0, 0, 0, 0, True)}
    strict = archive_day(source, lake, DAY, policy(allow_quarantined_records=False), today=LATER)
    assert strict.status == "unverified" and "allow_quarantined_records" in strict.problems[0]
    assert archive_day(source, lake, DAY, policy(), today=LATER).status == "archived"
    assert raw_keys(source) == []
    restore_day(source, DAY, policy())
    assert source.read_bytes(broken_key) == b"not gzip at all"


def test_verification_records_counts_and_event_ids(ingested) -> None:
    source, lake, originals = ingested
    archive_day(source, lake, DAY, policy(), today=LATER)
    key = f"trailsight-archive/manifests/2024/05/01/{ACCOUNT}/us-east-1.1.verification.json.gz"
    record = json.loads(gzip.decompress(source.read_bytes(key)))
    assert record["totals"] == {"records": 80, "in_lake": 80, "quarantined": 0, "missing": 0, "files": 4,
                                "files_quarantined": 0}
    ids = {i for f in record["files"] for i in f["event_ids"]}
    expected = {e["eventID"] for k, v in originals.items() if "/us-east-1/" in k
                for e in json.loads(gzip.decompress(v))["Records"]}
    assert ids == expected


def test_day_inside_the_as_delivered_period_is_refused(ingested) -> None:
    source, lake, _ = ingested
    with pytest.raises(ArchiveError, match="archive it on or after 2024-05-31"):
        archive_day(source, lake, DAY, policy(), today=DAY + timedelta(days=5))
    assert archive_objects(source) == []


class Crash(Exception):
    """Stands for the process being killed."""


def count_puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = bundle_store.BundleStore.put

    def put(self: Any, key: str, *args: Any) -> str:
        calls.append(key)
        return original(self, key, *args)

    monkeypatch.setattr(bundle_store.BundleStore, "put", put)
    return calls


def test_crash_while_deleting_originals_resumes_without_writing_the_bundle_again(ingested, monkeypatch) -> None:
    source, lake, originals = ingested
    puts = count_puts(monkeypatch)
    real_delete = Storage.delete_if

    def delete_some_then_crash(storage: Storage, tags: dict[str, str]) -> list[str]:
        real_delete(storage, dict(list(tags.items())[:3]))
        raise Crash

    monkeypatch.setattr(Storage, "delete_if", delete_some_then_crash)
    with pytest.raises(Crash):
        archive_day(source, lake, DAY, policy(), today=LATER)
    assert len(raw_keys(source)) == len(originals) - 3
    monkeypatch.setattr(Storage, "delete_if", real_delete)
    result = archive_day(source, lake, DAY, policy(), today=LATER)
    assert result.status == "archived" and raw_keys(source) == []
    assert sorted(puts) == sorted(set(puts)) and len(puts) == 2
    restore_day(source, DAY, policy())
    assert {k: source.read_bytes(k) for k in raw_keys(source)} == originals


def test_crash_after_the_bundle_is_written_does_not_write_it_twice(ingested, monkeypatch) -> None:
    source, lake, originals = ingested
    puts = count_puts(monkeypatch)
    real_write = archive.write_manifest

    def crash_when_uploaded(storage: Storage, key: str, manifest: archive.Manifest) -> None:
        if any(b.phase == "uploaded" for b in manifest.bundles):
            raise Crash
        real_write(storage, key, manifest)

    monkeypatch.setattr(archive, "write_manifest", crash_when_uploaded)
    with pytest.raises(Crash):
        archive_day(source, lake, DAY, policy(), today=LATER)
    assert len(puts) == 1 and sorted(raw_keys(source)) == sorted(originals)
    monkeypatch.setattr(archive, "write_manifest", real_write)
    result = archive_day(source, lake, DAY, policy(), today=LATER)
    assert result.status == "archived" and len(puts) == 2
    assert any("already written" in step for g in result.groups for step in g.steps)
    restore_day(source, DAY, policy())
    assert {k: source.read_bytes(k) for k in raw_keys(source)} == originals


def test_crash_before_the_bundle_is_written_rebuilds_the_same_bundle(ingested, monkeypatch) -> None:
    source, lake, originals = ingested
    monkeypatch.setattr(bundle_store.BundleStore, "put", lambda *a: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        archive_day(source, lake, DAY, policy(), today=LATER)
    manifest_key = f"trailsight-archive/manifests/2024/05/01/{ACCOUNT}/eu-west-1.json"
    recorded = json.loads(source.read_bytes(manifest_key))["bundles"][0]
    assert recorded["phase"] == "verified"
    monkeypatch.undo()
    result = archive_day(source, lake, DAY, policy(), today=LATER)
    assert result.status == "archived" and raw_keys(source) == []
    assert json.loads(source.read_bytes(manifest_key))["bundles"][0]["sha256"] == recorded["sha256"]
    restore_day(source, DAY, policy())
    assert {k: source.read_bytes(k) for k in raw_keys(source)} == originals


def test_original_rewritten_before_its_unwritten_bundle_is_rebuilt_is_verified_afresh(ingested, monkeypatch) -> None:
    source, lake, originals = ingested
    monkeypatch.setattr(bundle_store.BundleStore, "put", lambda *a: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        archive_day(source, lake, DAY, policy(), today=LATER)
    monkeypatch.undo()
    rewritten = next(k for k in originals if "/eu-west-1/" in k)
    records = json.loads(gzip.decompress(originals[rewritten]))["Records"]
    new_bytes = put_log(source, rewritten, list(reversed(records)))
    result = archive_day(source, lake, DAY, policy(), today=LATER)
    assert result.status == "archived" and raw_keys(source) == []
    assert any(step.startswith("dropped bundle") for g in result.groups for step in g.steps)
    restore_day(source, DAY, policy())
    assert {k: source.read_bytes(k) for k in raw_keys(source)} == {**originals, rewritten: new_bytes}


def test_files_delivered_after_archiving_go_into_a_second_bundle(ingested) -> None:
    source, lake, originals = ingested
    archive_day(source, lake, DAY, policy(), today=LATER)
    when = day_start(2024, 5, 1).replace(hour=23, minute=50)
    late_key = log_key(when, suffix="e" * 16)
    late = put_log(source, late_key, [make_event(when)])
    ingest(source, lake, DAY, DAY, workers=1)
    result = archive_day(source, lake, DAY, policy(), today=LATER)
    assert result.status == "archived" and result.files_deleted == 1
    group = next(g for g in result.groups if g.region == "us-east-1")
    assert group.bundles[-1].endswith("/us-east-1.2.tar")
    restore_day(source, DAY, policy())
    assert {k: source.read_bytes(k) for k in raw_keys(source)} == {**originals, late_key: late}


def test_restored_originals_are_removed_again_by_the_next_archive_run(ingested) -> None:
    source, lake, originals = ingested
    archive_day(source, lake, DAY, policy(), today=LATER)
    restore_day(source, DAY, policy())
    result = archive_day(source, lake, DAY, policy(), today=LATER)
    assert result.files_deleted == len(originals) and result.bundles_written == 0
    assert raw_keys(source) == []


def test_damaged_bundle_is_reported_and_nothing_is_restored(tmp_path: Path) -> None:
    source, lake = Storage(tmp_path / "source"), Storage(tmp_path / "lake")
    write_day(source, files_per_region=3)
    ingest(source, lake, DAY, DAY, workers=1)
    archive_day(source, lake, DAY, policy(), today=LATER)
    key = f"trailsight-archive/bundles/2024/05/01/{ACCOUNT}/us-east-1.tar"
    data = bytearray(source.read_bytes(key))
    data[4000] ^= 0xFF
    source.write_bytes(key, bytes(data))
    result = restore_day(source, DAY, policy(), regions=["us-east-1"])
    assert result.status == "failed" and "damaged" in result.bundles[0].detail
    assert raw_keys(source) == []


def s3_head(source: Storage, key: str) -> dict[str, Any]:
    bucket, prefix = split_s3_url(source.url)
    return client("s3").head_object(Bucket=bucket, Key=f"{prefix}/{key}")


@pytest.mark.parametrize("storage_class", ["GLACIER_IR", "STANDARD_IA", "STANDARD"])
def test_bundles_on_s3_are_stored_in_the_policy_storage_class(s3_bucket: str, storage_class: str) -> None:
    source, lake = Storage(f"{s3_bucket}/cloudtrail"), Storage(f"{s3_bucket}/lake")
    write_day(source, files_per_region=2)
    ingest(source, lake, DAY, DAY, workers=1)
    result = archive_day(source, lake, DAY, policy(storage_class), today=LATER)
    assert {g.storage_class for g in result.groups} == {storage_class}
    for group in result.groups:
        head = s3_head(source, group.bundles[0])
        assert head.get("StorageClass", "STANDARD") == storage_class
        assert head["Metadata"]["trailsight-sha256"] == json.loads(source.read_bytes(
            f"trailsight-archive/manifests/2024/05/01/{group.group}.json"))["bundles"][0]["sha256"]


def test_restore_of_a_deep_archive_bundle_is_pending_until_s3_has_restored_it(s3_bucket: str) -> None:
    source, lake = Storage(f"{s3_bucket}/cloudtrail"), Storage(f"{s3_bucket}/lake")
    originals = write_day(source, files_per_region=3)
    ingest(source, lake, DAY, DAY, workers=1)
    deep = policy("DEEP_ARCHIVE", restore_tier="Bulk")
    result = archive_day(source, lake, DAY, deep, today=LATER)
    assert result.status == "archived" and raw_keys(source) == []
    assert s3_head(source, result.groups[0].bundles[0])["StorageClass"] == "DEEP_ARCHIVE"
    first = restore_day(source, DAY, deep)
    assert first.status == "pending" and first.files_written == 0
    assert all("restore requested (Bulk tier" in b.detail for b in first.bundles)
    second = restore_day(source, DAY, deep)  # moto finishes restores at once; S3 takes hours
    assert second.status == "restored"
    assert {k: source.read_bytes(k) for k in raw_keys(source)} == originals


def test_nothing_to_archive_on_an_empty_day(places) -> None:
    source, lake = places
    source.write_bytes("AWSLogs/README", b"x")
    result = archive_day(source, lake, DAY, policy(), today=LATER)
    assert result.status == "nothing to archive" and result.groups == []
    assert restore_day(source, DAY, policy()).status == "nothing to restore"
