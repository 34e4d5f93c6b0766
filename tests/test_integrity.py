"""Digest verification end to end on generated, signed archives: clean days pass, each kind of damage is named."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from datetime import date
from pathlib import Path

import orjson
import pytest

from trailsight.errors import UsageError
from trailsight.integrity.digests import ProblemKind, signing_string, verify_digests
from trailsight.source.discovery import discover
from trailsight.storage.aws import client
from trailsight.storage.store import Storage
from trailsight.synth.generate import generate_archive

FIXTURES = Path(__file__).parent / "fixtures"
SIGNING_KEY = FIXTURES / "digest-signing-key.pem"
PUBLIC_KEYS = FIXTURES / "digest-public-keys.json"
DAY = date(2024, 5, 2)
NEXT_DAY = date(2024, 5, 3)


@pytest.fixture(scope="module")
def signed_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two signed days; tests verify the second, whose first digest links back into the first day."""
    root = tmp_path_factory.mktemp("signed") / "archive"
    generate_archive(root, days=2, end=DAY, events_per_day=300, signing_key=SIGNING_KEY)
    return root


@pytest.fixture
def archive(signed_archive: Path, tmp_path: Path) -> Path:
    """A private copy of the signed archive that a test may damage."""
    return Path(shutil.copytree(signed_archive, tmp_path / "archive"))


def keys_of(root: Path, pattern: str) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(pattern))


def log_keys(root: Path, day: date) -> list[str]:
    return [k for k in keys_of(root, "*.json.gz") if "/CloudTrail/" in k and f"/{day:%Y/%m/%d}/" in k]


def digest_chain(root: Path, day: date, account_region: str = "us-east-1") -> list[str]:
    """The digest keys of one chain delivered on `day`, in time order (the org trail's first account)."""
    keys = [k for k in keys_of(root, "*.json.gz")
            if f"/CloudTrail-Digest/{account_region}/{day:%Y/%m/%d}/" in k and "/o-" in k]
    first_account = keys[0].split("/")[2]
    return [k for k in keys if k.split("/")[2] == first_account]


def read_doc(root: Path, key: str) -> dict:
    return json.loads(gzip.decompress((root / key).read_bytes()))


def problems(result) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(p.kind.value, p.key) for p in result.problems]


def test_clean_signed_day_verifies(archive: Path) -> None:
    result = verify_digests(archive, DAY, public_keys=PUBLIC_KEYS)
    assert result.ok, result.problems[:3]
    assert result.signatures_checked and result.signatures_valid == result.digests
    assert result.digests >= 16 * 24 and result.chains == 16
    assert result.log_files_listed == result.log_files_valid >= result.log_files_in_folders == len(log_keys(archive,
                                                                                                            DAY))
    assert result.as_dict()["ok"] is True and result.as_dict()["problem_counts"] == {}


def test_without_public_keys_signatures_are_not_checked(archive: Path) -> None:
    for sidecar in archive.rglob("*.signature"):
        sidecar.write_text("0" * 512)  # every signature wrong: only a check would notice
    result = verify_digests(archive, DAY)
    assert result.ok and not result.signatures_checked and result.signatures_valid == 0
    assert not verify_digests(archive, DAY, public_keys=PUBLIC_KEYS).ok


def test_recompressed_log_file_still_verifies_because_hashes_cover_uncompressed_bytes(archive: Path) -> None:
    path = archive / log_keys(archive, DAY)[0]
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=9))
    assert verify_digests(archive, DAY, public_keys=PUBLIC_KEYS).ok


def test_tampered_log_file_is_reported_as_a_hash_mismatch(archive: Path) -> None:
    key = log_keys(archive, DAY)[5]
    doc = json.loads(gzip.decompress((archive / key).read_bytes()))
    doc["Records"][0]["sourceIPAddress"] = "203.0.113.66"
    (archive / key).write_bytes(gzip.compress(json.dumps(doc).encode()))
    result = verify_digests(archive, DAY, public_keys=PUBLIC_KEYS)
    assert problems(result) == [("hash-mismatch", key)]
    assert "the file was changed" in result.problems[0].detail
    assert result.log_files_valid == result.log_files_listed - 1


def test_deleted_log_file_is_reported_missing(archive: Path) -> None:
    key = log_keys(archive, DAY)[7]
    (archive / key).unlink()
    result = verify_digests(archive, DAY, public_keys=PUBLIC_KEYS)
    assert problems(result) == [("missing-log", key)]
    assert "CloudTrail-Digest" in result.problems[0].detail  # names the digest that lists it


def test_truncated_log_file_is_reported_unreadable(archive: Path) -> None:
    key = log_keys(archive, DAY)[2]
    (archive / key).write_bytes((archive / key).read_bytes()[:-40])
    result = verify_digests(archive, DAY, public_keys=PUBLIC_KEYS)
    assert problems(result) == [("unreadable-log", key)]
    assert "truncated" in result.problems[0].detail


def test_extra_file_in_a_log_folder_is_reported_unlisted(archive: Path) -> None:
    real = log_keys(archive, DAY)[3]
    extra = real.replace(".json.gz", "").rsplit("_", 1)[0] + "_AAAAAAAAAAAAAAAA.json.gz"
    shutil.copyfile(archive / real, archive / extra)
    stray = real.rsplit("/", 1)[0] + "/notes.txt"
    (archive / stray).write_text("dropped here by hand")
    result = verify_digests(archive, DAY, public_keys=PUBLIC_KEYS)
    assert problems(result) == sorted([("unlisted-log", extra), ("unlisted-log", stray)])


@pytest.mark.parametrize("position", ["first", "middle", "after-midnight"])
def test_removed_digest_is_a_chain_gap(archive: Path, position: str) -> None:
    chain = digest_chain(archive, DAY)
    following = digest_chain(archive, NEXT_DAY)
    removed = {"first": chain[0], "middle": chain[10], "after-midnight": following[0]}[position]
    orphans = {f["s3Object"] for f in read_doc(archive, removed)["logFiles"]}
    (archive / removed).unlink()
    result = verify_digests(archive, DAY, public_keys=PUBLIC_KEYS)
    gaps = [p for p in result.problems if p.kind is ProblemKind.CHAIN_GAP]
    assert len(gaps) == 1 and removed in gaps[0].detail
    others = {(p.kind, p.key) for p in result.problems if p.kind is not ProblemKind.CHAIN_GAP}
    # Nothing proves the files the removed digest listed: each is named, and nothing else is reported.
    day_folder = f"/{DAY:%Y/%m/%d}/"
    assert others == {(ProblemKind.UNLISTED_LOG, k) for k in orphans if day_folder in k}


def test_digest_edited_after_delivery_breaks_the_chain_and_its_signature(archive: Path) -> None:
    chain = digest_chain(archive, DAY)
    edited = next(k for k in chain[1:-1] if read_doc(archive, k)["logFiles"])
    doc = read_doc(archive, edited)
    hidden = doc["logFiles"].pop()["s3Object"]  # hide a log file from the record
    (archive / edited).write_bytes(gzip.compress(orjson.dumps(doc)))
    (archive / hidden).unlink()
    unsigned = verify_digests(archive, DAY)
    assert problems(unsigned) == [("chain-mismatch", edited)]
    signed = verify_digests(archive, DAY, public_keys=PUBLIC_KEYS)
    assert problems(signed) == sorted([("bad-signature", edited), ("chain-mismatch", edited)])


def test_edit_to_the_digest_covering_the_last_hour_is_caught_by_the_next_days_chain(archive: Path) -> None:
    last_hour = digest_chain(archive, NEXT_DAY)[0]
    doc = read_doc(archive, last_hour)
    doc["logFiles"] = []
    (archive / last_hour).write_bytes(gzip.compress(orjson.dumps(doc)))
    assert ("chain-mismatch", last_hour) in problems(verify_digests(archive, DAY))


def test_unreadable_digest_is_reported_not_raised(archive: Path) -> None:
    chain = digest_chain(archive, DAY)
    broken = next(k for k in chain[1:-1] if not read_doc(archive, k)["logFiles"])
    (archive / broken).write_bytes(b"\x1f\x8b\x08 definitely not a digest")
    result = verify_digests(archive, DAY, public_keys=PUBLIC_KEYS)
    assert problems(result) == [("unreadable-digest", broken)]
    assert "gzip" in result.problems[0].detail


def test_wrong_signature_is_reported_on_that_digest(archive: Path) -> None:
    chain = digest_chain(archive, DAY)
    sidecar = archive / f"{chain[4]}.signature"
    signature = sidecar.read_text()
    sidecar.write_text(("0" if signature[0] != "0" else "1") + signature[1:])
    result = verify_digests(archive, DAY, public_keys=PUBLIC_KEYS)
    # The next digest recorded the real signature, so the link to it is broken too.
    assert problems(result) == sorted([("bad-signature", chain[4]), ("chain-mismatch", chain[4])])


def test_missing_signature_is_reported(archive: Path) -> None:
    chain = digest_chain(archive, DAY)
    (archive / f"{chain[2]}.signature").unlink()
    assert problems(verify_digests(archive, DAY, public_keys=PUBLIC_KEYS)) == [("missing-signature", chain[2])]


def test_signatures_checked_with_another_key_all_fail(archive: Path, tmp_path: Path) -> None:
    fingerprint = next(iter(json.loads(PUBLIC_KEYS.read_text())))
    wrong = tmp_path / "wrong-keys.json"
    wrong.write_text(json.dumps({fingerprint: (FIXTURES / "other-public-key.pem").read_text()}))
    result = verify_digests(archive, DAY, public_keys=wrong)
    assert result.signatures_valid == 0 and {p.kind for p in result.problems} == {ProblemKind.BAD_SIGNATURE}
    assert len(result.problems) == result.digests


def test_digest_whose_key_is_not_among_the_public_keys_is_reported(archive: Path) -> None:
    result = verify_digests(archive, DAY, public_keys={"0" * 32: (FIXTURES / "other-public-key.pem").read_text()})
    assert {p.kind for p in result.problems} == {ProblemKind.UNKNOWN_KEY}
    assert "no public key given for fingerprint" in result.problems[0].detail


def test_unusable_public_keys_file_is_a_usage_error(tmp_path: Path, archive: Path) -> None:
    bad = tmp_path / "keys.json"
    bad.write_text('{"abc": "not a key"}')
    with pytest.raises(UsageError, match="not an RSA public key"):
        verify_digests(archive, DAY, public_keys=bad)
    with pytest.raises(UsageError, match="cannot read public keys file"):
        verify_digests(archive, DAY, public_keys=tmp_path / "absent.json")


def test_log_key_that_would_leave_the_source_is_refused(tmp_path: Path) -> None:
    key = ("AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/05/02/"
           "111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240502T000131Z.json.gz")
    doc = {"digestS3Bucket": "b", "digestS3Object": key, "digestStartTime": "2024-05-01T23:01:31Z",
           "digestEndTime": "2024-05-02T00:01:31Z", "previousDigestS3Object": None,
           "logFiles": [{"s3Object": "../../etc/passwd", "hashValue": "00"}]}
    (tmp_path / key).parent.mkdir(parents=True)
    (tmp_path / key).write_bytes(gzip.compress(orjson.dumps(doc)))
    result = verify_digests(tmp_path, DAY)
    (refused,) = [p for p in result.problems if p.kind is ProblemKind.MISSING_LOG]
    assert refused.key == "../../etc/passwd" and "would leave the source" in refused.detail


def test_prefixed_archive_verifies_from_the_prefix_folder(tmp_path: Path) -> None:
    generate_archive(tmp_path, days=1, end=DAY, events_per_day=60, prefix="team/trails", signing_key=SIGNING_KEY)
    for root in (tmp_path, tmp_path / "team" / "trails"):
        result = verify_digests(root, DAY, public_keys=PUBLIC_KEYS)
        assert result.ok and result.log_files_valid > 0, (root, result.problems[:2])


def test_signing_string_is_the_documented_one() -> None:
    doc = {"digestEndTime": "2024-05-02T01:01:31Z", "digestS3Bucket": "bucket", "digestS3Object": "AWSLogs/x.json.gz",
           "previousDigestSignature": None}
    raw = b'{"a":1}'
    assert signing_string(doc, raw).decode().split("\n") == [
        "2024-05-02T01:01:31Z", "bucket/AWSLogs/x.json.gz", hashlib.sha256(raw).hexdigest(), "null"]
    assert signing_string({**doc, "previousDigestSignature": "ab12"}, raw).endswith(b"\nab12")


def test_generator_without_a_key_writes_the_same_logs_and_no_signatures(tmp_path: Path) -> None:
    plain = generate_archive(tmp_path / "plain", days=1, end=DAY, events_per_day=80)
    signed = generate_archive(tmp_path / "signed", days=1, end=DAY, events_per_day=80, signing_key=SIGNING_KEY)
    assert not keys_of(tmp_path / "plain", "*.signature")
    assert len(keys_of(tmp_path / "signed", "*.signature")) == signed.digest_files == plain.digest_files
    plain_logs, signed_logs = log_keys(tmp_path / "plain", DAY), log_keys(tmp_path / "signed", DAY)
    assert plain_logs == signed_logs
    assert all((tmp_path / "plain" / k).read_bytes() == (tmp_path / "signed" / k).read_bytes() for k in plain_logs)
    first = digest_chain(tmp_path / "plain", DAY)[3]
    unsigned_doc, signed_doc = read_doc(tmp_path / "plain", first), read_doc(tmp_path / "signed", first)
    assert unsigned_doc["previousDigestSignature"] == "" and len(signed_doc["previousDigestSignature"]) == 512
    assert {k for k in unsigned_doc if unsigned_doc[k] != signed_doc[k]} == {
        "digestPublicKeyFingerprint", "previousDigestSignature", "previousDigestHashValue"}


def test_signature_sidecars_are_not_taken_for_digests(archive: Path) -> None:
    found = discover(Storage(archive), DAY, DAY)
    assert found.digests and all(d.key.endswith(".json.gz") for d in found.digests)


def upload_with_signature_metadata(root: Path, bucket: str, account: str) -> None:
    """Copy one account's objects to S3 the way CloudTrail stores them: the signature in object metadata."""
    s3 = client("s3")
    for path in sorted(root.rglob("*.json.gz")):
        key = path.relative_to(root).as_posix()
        if f"/{account}/" not in key:
            continue
        sidecar = path.with_name(path.name + ".signature")
        metadata = ({"signature": sidecar.read_text(), "signature-algorithm": "SHA256withRSA"}
                    if sidecar.exists() else {})
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), Metadata=metadata)


def test_s3_source_reads_signatures_from_object_metadata(s3_bucket: str, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    generate_archive(root, days=1, end=DAY, events_per_day=100, signing_key=SIGNING_KEY)
    account = digest_chain(root, DAY)[0].split("/")[2]
    bucket = s3_bucket.removeprefix("s3://")
    upload_with_signature_metadata(root, bucket, account)
    result = verify_digests(s3_bucket, DAY, accounts=[account], public_keys=PUBLIC_KEYS)
    assert result.ok and result.signatures_valid == result.digests > 0, result.problems[:3]

    victim = digest_chain(root, DAY)[-1]
    s3 = client("s3")
    body = s3.get_object(Bucket=bucket, Key=victim)["Body"].read()
    s3.put_object(Bucket=bucket, Key=victim, Body=body, Metadata={"signature": "00" * 256})
    tampered = verify_digests(s3_bucket, DAY, accounts=[account], public_keys=PUBLIC_KEYS)
    assert ("bad-signature", victim) in problems(tampered)
    assert {p.kind for p in tampered.problems} <= {ProblemKind.BAD_SIGNATURE, ProblemKind.CHAIN_MISMATCH}


def test_account_and_region_without_any_digest_is_one_finding_not_one_per_file(archive: Path) -> None:
    digests = archive / digest_chain(archive, DAY)[0].rsplit("/", 4)[0]  # the chain's region folder
    shutil.rmtree(digests)
    result = verify_digests(archive, DAY)
    region_logs = digests.relative_to(archive).as_posix().replace("/CloudTrail-Digest/", "/CloudTrail/")
    assert problems(result) == [("no-digests", f"{region_logs}/{DAY:%Y/%m/%d}")]
    count = len([k for k in log_keys(archive, DAY) if k.startswith(region_logs)])
    assert count > 0 and result.problems[0].detail.startswith(f"{count} file(s) delivered but no digest")


def test_digest_copied_to_another_place_is_reported_moved(archive: Path) -> None:
    chain = digest_chain(archive, DAY)
    elsewhere = chain[6].replace("/CloudTrail-Digest/us-east-1/", "/CloudTrail-Digest/eu-west-1/")
    shutil.copyfile(archive / chain[6], archive / elsewhere)
    result = verify_digests(archive, DAY, regions=["eu-west-1"])
    assert ("moved-digest", elsewhere) in problems(result)
    assert f"it names {chain[6]} as its location" in next(p.detail for p in result.problems if p.key == elsewhere)
