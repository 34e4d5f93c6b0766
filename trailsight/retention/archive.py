"""Archive a delivery day (verify against the lake, compact, then delete the originals) and restore it.

Layout beside `AWSLogs/` under the archive root, with `<prefix>` from the policy (default `trailsight-archive/`):

  <prefix>bundles/YYYY/MM/DD/<group>.tar                           one bundle per delivery day, account and region
  <prefix>manifests/YYYY/MM/DD/<group>.json                        the group's state: bundles, files, checksums, phase
  <prefix>manifests/YYYY/MM/DD/<group>.<n>.verification.json.gz    per file: counts and the eventIDs found in the lake

`<group>` is `[user prefix/][o-org/]ACCOUNT/REGION`. Files that arrive after a group was archived go into
`<group>.2.tar` and so on. A bundle is a plain tar whose first member, `trailsight-index.json`, lists every
original (key, size, SHA-256); the originals follow byte for byte under their own keys, so `tar -xf` rebuilds
the archive's tree too.

Each group moves through phases recorded in its manifest before the next step starts:
verified (files checked against the lake, bundle checksum known) -> uploaded (bundle written, read back and
its checksum matched) -> done (originals deleted). A run that stops anywhere resumes from the recorded phase:
an uploaded bundle is never written twice, an original is deleted only once its bundle is confirmed, and a
day with any file failing verification is left exactly as it was.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
from botocore.exceptions import ClientError

from trailsight.convert.records import Partition, convert_object, signed_identity
from trailsight.errors import ArchiveError, StorageError
from trailsight.lake.layout import QUARANTINE_PREFIX, check_lake_format, partition_hashes, partition_key
from trailsight.lake.lock import lake_lock
from trailsight.retention.policy import ARCHIVE_CLASSES, Policy, load_policy
from trailsight.source.discovery import LogObject, discover
from trailsight.storage.aws import client
from trailsight.storage.store import Storage, as_storage

INDEX_MEMBER = "trailsight-index.json"
BUNDLE_FORMAT = "trailsight-bundle/1"
MANIFEST_FORMAT = 1
MIN_BILLABLE_BYTES = 128 * 1024
MAX_SINGLE_REQUEST_BYTES = 5 * 2**30
READ_AHEAD = 8
SHA_METADATA = "trailsight-sha256"
TAR_BLOCK = 512
TAR_RECORD = 20 * TAR_BLOCK


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _day_path(day: date) -> str:
    return f"{day:%Y/%m/%d}"


# --- groups ------------------------------------------------------------------------------------------------


def group_of(obj: LogObject) -> str:
    """`[user prefix/][o-org/]ACCOUNT/REGION` of a raw file: the unit that gets one bundle per day."""
    root = obj.key.split("AWSLogs/", 1)[0]
    org = f"{obj.organization}/" if obj.organization else ""
    return f"{root}{org}{obj.account}/{obj.region}"


def _group_parts(group: str) -> tuple[str, str]:
    """(account, region) of a group path."""
    parts = group.split("/")
    return parts[-2], parts[-1]


def bundle_key(policy: Policy, day: date, group: str, number: int = 1) -> str:
    suffix = "" if number == 1 else f".{number}"
    return f"{policy.bundles_prefix}{_day_path(day)}/{group}{suffix}.tar"


def manifest_key(policy: Policy, day: date, group: str) -> str:
    return f"{policy.manifests_prefix}{_day_path(day)}/{group}.json"


def verification_key(policy: Policy, day: date, group: str, number: int) -> str:
    return f"{policy.manifests_prefix}{_day_path(day)}/{group}.{number}.verification.json.gz"


_BUNDLE_NAME = re.compile(r"^(?P<group>.+?)(?:\.(?P<number>\d+))?\.tar$")


def _bundle_group(policy: Policy, day: date, key: str) -> tuple[str, int]:
    rest = key[len(f"{policy.bundles_prefix}{_day_path(day)}/"):]
    match = _BUNDLE_NAME.match(rest)
    if not match:
        raise ArchiveError(f"unexpected object {key} among the bundles; move it out of {policy.bundles_prefix}")
    return match["group"], int(match["number"] or 1)


# --- the bundle format -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One original inside a bundle."""

    key: str
    size: int
    sha256: str
    mtime: int = 0


def _tar_format(names: Iterable[str]) -> int:
    """USTAR (one 512-byte header per member) when every name fits its 255 characters, else PAX."""
    for name in names:
        try:
            tarfile.TarInfo(name).tobuf(tarfile.USTAR_FORMAT)
        except ValueError:
            return tarfile.PAX_FORMAT
    return tarfile.USTAR_FORMAT


def _tar_info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, mtime, 0o644, 0, 0, "", ""
    return info


def index_bytes(members: list[Member], header: dict[str, Any]) -> bytes:
    files = [{"key": m.key, "size": m.size, "sha256": m.sha256} for m in members]
    return orjson.dumps({"format": BUNDLE_FORMAT, **header, "files": files}, option=orjson.OPT_SORT_KEYS) + b"\n"


def estimated_bundle_size(sizes: Iterable[int], index_size: int) -> int:
    """Bytes of a bundle holding originals of these sizes (USTAR headers, 512-byte padding, 10 KiB records)."""
    body = TAR_BLOCK + index_size + (-index_size) % TAR_BLOCK
    for size in sizes:
        body += TAR_BLOCK + size + (-size) % TAR_BLOCK
    body += 2 * TAR_BLOCK
    return body + (-body) % TAR_RECORD


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target, self.digest, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.target.write(view)
        self.digest.update(view)
        self.size += len(view)
        return len(view)


def write_bundle(out: IO[bytes], members: list[Member], read: Callable[[Member], bytes],
                 header: dict[str, Any]) -> tuple[str, int]:
    """Write the tar (index first, then each original in order); returns its SHA-256 and size.

    The bytes depend only on the members, so rebuilding a bundle after a crash gives the same checksum.
    """
    writer = _HashingWriter(out)
    index = index_bytes(members, header)
    with tarfile.open(fileobj=writer, mode="w|", format=_tar_format(m.key for m in members)) as tar:
        tar.addfile(_tar_info(INDEX_MEMBER, len(index), 0), io.BytesIO(index))
        for member in members:
            data = read(member)
            if len(data) != member.size or hashlib.sha256(data).hexdigest() != member.sha256:
                raise ArchiveError(f"{member.key} changed since it was verified; nothing was deleted, "
                                   "run the archive again to verify the day afresh")
            tar.addfile(_tar_info(member.key, member.size, member.mtime), io.BytesIO(data))
    return writer.digest.hexdigest(), writer.size


def read_bundle(stream: IO[bytes], name: str, on_member: Callable[[Member, bytes], None] | None = None,
                ) -> tuple[dict[str, Any], list[Member]]:
    """Read a bundle front to back, checking every original against the index; a damaged bundle raises."""
    damaged = f"bundle {name} is damaged"
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            first = tar.next()
            if first is None or first.name != INDEX_MEMBER:
                raise ArchiveError(f"{damaged}: its first member is not {INDEX_MEMBER}; keep the originals")
            index = orjson.loads(_member_bytes(tar, first))
            members = [Member(f["key"], f["size"], f["sha256"]) for f in index.get("files", [])]
            expected = {m.key: m for m in members}
            seen: set[str] = set()
            while (info := tar.next()) is not None:
                member = expected.get(info.name)
                if member is None or info.name in seen or not info.isfile():
                    raise ArchiveError(f"{damaged}: unexpected member {info.name}; keep the originals")
                data = _member_bytes(tar, info)
                if len(data) != member.size or hashlib.sha256(data).hexdigest() != member.sha256:
                    raise ArchiveError(f"{damaged}: {info.name} does not match its checksum; keep the originals")
                seen.add(info.name)
                if on_member:
                    on_member(member, data)
    except (tarfile.TarError, orjson.JSONDecodeError, KeyError, TypeError, EOFError) as exc:
        raise ArchiveError(f"{damaged} ({exc}); keep the originals and archive the day again") from None
    if len(seen) != len(members):
        raise ArchiveError(f"{damaged}: {len(members) - len(seen)} listed originals are missing; keep the originals")
    return index, members


def _member_bytes(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    if handle is None:
        raise ArchiveError(f"bundle member {info.name} is not a regular file")
    return handle.read()


# --- bundle objects: written with a storage class and a checksum, read back, restored ---------------------


@dataclass(frozen=True)
class BundleObject:
    """What the store says about a bundle object."""

    size: int
    sha256: str | None
    storage_class: str | None
    restore: str  # "none", "ongoing" or "ready" (a restored copy of an archived object can be read)

    @property
    def readable(self) -> bool:
        return self.storage_class not in ARCHIVE_CLASSES or self.restore == "ready"


class _LocalBundles:
    """Bundles in a local folder: storage classes do not apply; the file is read back to verify it."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, key: str, path: Path, sha256: str, storage_class: str) -> str:
        target = self.storage.path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        temp = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
        with open(path, "rb") as source, open(temp, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
        return self.confirm(key, sha256, os.path.getsize(path), storage_class)

    def head(self, key: str) -> BundleObject | None:
        """Size and checksum (hashed here: a local file carries no metadata; reading it is cheap)."""
        path = self.storage.path(key)
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as stream:
            return BundleObject(os.path.getsize(path), _sha256_stream(stream), None, "none")

    def confirm(self, key: str, sha256: str, size: int, storage_class: str) -> str:
        """Read the whole bundle back and compare its checksum; returns how it was verified."""
        with self.open(key) as stream:
            digest = _sha256_stream(stream)
        if digest != sha256:
            raise ArchiveError(f"bundle {key} reads back with checksum {digest}, not {sha256}; nothing was deleted, "
                               "run the archive again")
        return "read back, SHA-256 matched"

    @contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        with open(self.storage.path(key), "rb") as stream:
            yield stream

    def request_restore(self, key: str, days: int, tier: str) -> None:  # pragma: no cover - never archived
        raise ArchiveError(f"{key} is a local file; it needs no restore")


class _S3Bundles:
    """Bundles on S3: written in STANDARD with a SHA-256 checksum, read back and compared, then copied into
    the policy's storage class (a server-side copy), so even archive classes are verified before deletion."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.s3 = client("s3")

    def _where(self, key: str) -> tuple[str, str]:
        bucket, _, object_key = self.storage.path(key).partition("/")
        return bucket, object_key

    def put(self, key: str, path: Path, sha256: str, storage_class: str) -> str:
        bucket, object_key = self._where(key)
        size = os.path.getsize(path)
        if size > MAX_SINGLE_REQUEST_BYTES:
            raise ArchiveError(f"bundle {key} would be {size / 2**30:.1f} GiB, over S3's 5 GiB limit for one PUT or "
                               "COPY; nothing was deleted (bundles this large are not supported yet)")
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        try:
            with open(path, "rb") as body:
                response = self.s3.put_object(Bucket=bucket, Key=object_key, Body=body, ChecksumSHA256=checksum,
                                              Metadata={SHA_METADATA: sha256}, ContentType="application/x-tar")
        except ClientError as exc:
            raise ArchiveError(f"cannot write bundle s3://{bucket}/{object_key} "
                               f"({_code(exc)}); nothing was deleted, run the archive again") from None
        return self._finish(key, sha256, size, storage_class, response.get("VersionId"))

    def _finish(self, key: str, sha256: str, size: int, storage_class: str, staging_version: str | None = None,
                ) -> str:
        """Read the STANDARD copy back, then move it into its storage class and confirm the class."""
        with self.open(key) as stream:
            digest = _sha256_stream(stream)
        if digest != sha256:
            raise ArchiveError(f"bundle {key} reads back with checksum {digest}, not {sha256}; nothing was deleted, "
                               "run the archive again")
        if storage_class != "STANDARD":
            bucket, object_key = self._where(key)
            try:
                self.s3.copy_object(Bucket=bucket, Key=object_key, CopySource={"Bucket": bucket, "Key": object_key},
                                    StorageClass=storage_class, MetadataDirective="COPY", ChecksumAlgorithm="SHA256")
            except ClientError as exc:
                raise ArchiveError(f"cannot move bundle {key} to {storage_class} ({_code(exc)}); nothing was "
                                   "deleted, run the archive again") from None
            if staging_version and staging_version != "null":
                # In a versioned bucket the STANDARD copy would linger as a noncurrent version.
                self.s3.delete_object(Bucket=bucket, Key=object_key, VersionId=staging_version)
        self._check_head(key, sha256, size, storage_class)
        return f"read back, SHA-256 matched; stored as {storage_class}"

    def _check_head(self, key: str, sha256: str, size: int, storage_class: str) -> BundleObject:
        found = self.head(key)
        if found is None or found.size != size or found.sha256 != sha256:
            raise ArchiveError(f"bundle {key} is missing or differs from the one verified; nothing was deleted, "
                               "run the archive again")
        if (found.storage_class or "STANDARD") != storage_class:
            raise ArchiveError(f"bundle {key} is stored as {found.storage_class or 'STANDARD'}, not "
                               f"{storage_class}; nothing was deleted, run the archive again")
        return found

    def head(self, key: str) -> BundleObject | None:
        bucket, object_key = self._where(key)
        try:
            response = self.s3.head_object(Bucket=bucket, Key=object_key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise ArchiveError(f"cannot read s3://{bucket}/{object_key} ({_code(exc)})") from None
        restore_header = response.get("Restore") or ""
        restore = ("ongoing" if 'ongoing-request="true"' in restore_header
                   else "ready" if 'ongoing-request="false"' in restore_header else "none")
        sha = (response.get("Metadata") or {}).get(SHA_METADATA)
        checksum = response.get("ChecksumSHA256")
        if sha and checksum and "-" not in checksum and base64.b64decode(checksum).hex() != sha:
            sha = f"mismatch:{base64.b64decode(checksum).hex()}"
        return BundleObject(response["ContentLength"], sha, response.get("StorageClass") or "STANDARD", restore)

    def confirm(self, key: str, sha256: str, size: int, storage_class: str) -> str:
        """Before deleting originals: the bundle is there, with the checksum, size and class recorded.

        A bundle still in STANDARD when another class is wanted (a crash between write and copy) is read back
        and moved now.
        """
        found = self.head(key)
        matches = found is not None and found.sha256 == sha256 and found.size == size
        if matches and found.storage_class == "STANDARD" and storage_class != "STANDARD":
            return self._finish(key, sha256, size, storage_class)
        self._check_head(key, sha256, size, storage_class)
        return f"checksum, size and storage class {storage_class} confirmed"

    @contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        bucket, object_key = self._where(key)
        try:
            body = self.s3.get_object(Bucket=bucket, Key=object_key)["Body"]
        except ClientError as exc:
            if _code(exc) == "InvalidObjectState":
                raise _NotRestored(key) from None
            raise ArchiveError(f"cannot read s3://{bucket}/{object_key} ({_code(exc)})") from None
        try:
            yield body
        finally:
            body.close()

    def request_restore(self, key: str, days: int, tier: str) -> None:
        bucket, object_key = self._where(key)
        try:
            self.s3.restore_object(Bucket=bucket, Key=object_key,
                                   RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}})
        except ClientError as exc:
            if _code(exc) != "RestoreAlreadyInProgress":
                raise ArchiveError(f"cannot start the restore of s3://{bucket}/{object_key} ({_code(exc)}); "
                                   "check the s3:RestoreObject permission and try again") from None


class _NotRestored(Exception):
    """An archived object was read before its restore finished."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or str(exc)


def _sha256_stream(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _bundles(storage: Storage) -> _LocalBundles | _S3Bundles:
    return _LocalBundles(storage) if storage.is_local else _S3Bundles(storage)


# --- verification against the lake -----------------------------------------------------------------------


class LakeIndex:
    """The eventhash values of the lake's partitions, read once each, and its quarantine entries."""

    def __init__(self, lake: Storage) -> None:
        check_lake_format(lake)
        self.lake = lake
        self.known: dict[Partition, np.ndarray] = {}

    def present(self, partition: Partition, hashes: np.ndarray) -> np.ndarray:
        known = self.known.get(partition)
        if known is None:
            known = self.known[partition] = partition_hashes(self.lake, partition)
        if not len(known):
            return np.zeros(len(hashes), dtype=bool)
        at = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
        return known[at] == hashes

    def quarantine(self, source_key: str) -> dict[str, Any] | None:
        key = f"{QUARANTINE_PREFIX}/{source_key}.quarantine.json"
        if not self.lake.exists(key):
            return None
        try:
            return orjson.loads(self.lake.read_bytes(key))
        except orjson.JSONDecodeError:
            return {"reason": "unreadable quarantine entry", "records": []}


@dataclass
class FileVerification:
    """One raw file checked against the lake: every record is in the lake, in quarantine, or missing."""

    key: str
    size: int
    sha256: str
    records: int = 0
    in_lake: int = 0
    quarantined: int = 0
    missing: int = 0
    whole_file_quarantined: bool = False
    problem: str | None = None
    event_ids: list[str] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_file(obj: LogObject, data: bytes, lake: LakeIndex, policy: Policy) -> FileVerification:
    """Convert the file as ingest does and look up each accepted event's eventhash in its lake partition."""
    day = obj.delivery_date
    ingest_hint = f"run `trailsight ingest --date {day}` and archive again"
    result = FileVerification(obj.key, len(data), hashlib.sha256(data).hexdigest())
    converted = convert_object(obj.key, data, obj.account, obj.region)
    entry = lake.quarantine(obj.key)
    result.records = converted.records_read
    if converted.file_error is not None:
        result.whole_file_quarantined = bool(entry and entry.get("reason"))
        if not result.whole_file_quarantined:
            result.problem = (f"{obj.key} cannot be converted ({converted.file_error}) and the lake has no "
                              f"quarantine entry for it; {ingest_hint}")
        elif not policy.allow_quarantined_records:
            result.problem = (f"{obj.key} is in the lake's quarantine and the policy does not allow archiving "
                              "quarantined records; fix it or set allow_quarantined_records = true")
        return result
    records = (entry or {}).get("records") or []
    excused_indexes = {r.get("index") for r in records}
    excused = np.array(sorted({signed_identity(converted.identities[i]) for i in excused_indexes
                               if isinstance(i, int) and 0 <= i < len(converted.identities)}),
                       dtype=np.int64)
    unexplained = [q.index for q in converted.quarantined if q.index not in excused_indexes]
    examples: list[str] = []
    for partition, table in sorted(converted.tables.items()):
        hashes = table.column("eventhash").to_numpy()
        found = lake.present(partition, hashes)
        set_aside = ~found & np.isin(hashes, excused)
        lost = ~found & ~set_aside
        event_ids = table.column("eventid").to_pylist()
        result.in_lake += int(found.sum())
        result.quarantined += int(set_aside.sum())
        result.missing += int(lost.sum())
        result.event_ids += [event_ids[i] for i in np.flatnonzero(found)]
        examples += [f"{event_ids[i]} in {partition_key(partition)}" for i in np.flatnonzero(lost)[:2]]
    result.quarantined += len(converted.quarantined) - len(unexplained)
    result.missing += len(unexplained)
    if result.missing:
        detail = f"e.g. eventID {examples[0]}" if examples else f"records {unexplained[:3]} are rejected now"
        result.problem = (f"{obj.key}: {result.missing} of {result.records} events are neither in the lake nor in "
                          f"its quarantine ({detail}); {ingest_hint}")
    elif result.quarantined and not policy.allow_quarantined_records:
        result.problem = (f"{obj.key}: {result.quarantined} records are in the lake's quarantine and the policy does "
                          "not allow archiving them; fix them or set allow_quarantined_records = true")
    return result


def _read_in_order(storage: Storage, keys: list[str]) -> Iterator[tuple[str, bytes]]:
    """Read objects in order with a few reads in flight (latency, not bandwidth, bounds S3 reads)."""
    with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
        in_flight: deque[Future[bytes]] = deque(pool.submit(storage.read_bytes, k) for k in keys[:READ_AHEAD])
        for position, key in enumerate(keys):
            data = in_flight.popleft().result()
            if position + READ_AHEAD < len(keys):
                in_flight.append(pool.submit(storage.read_bytes, keys[position + READ_AHEAD]))
            yield key, data


@dataclass
class GroupVerification:
    group: str
    account: str
    region: str
    files: list[FileVerification]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    def totals(self) -> dict[str, int]:
        counts = {name: sum(getattr(f, name) for f in self.files)
                  for name in ("records", "in_lake", "quarantined", "missing")}
        return {**counts, "files": len(self.files),
                "files_quarantined": sum(f.whole_file_quarantined for f in self.files)}


@dataclass
class DayVerification:
    """Whether every event of every raw file delivered on `day` is in the lake (read only; nothing is written)."""

    day: date
    source: str
    lake: str
    groups: list[GroupVerification]

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.groups)

    @property
    def problems(self) -> list[str]:
        return [f.problem for g in self.groups for f in g.files if f.problem]


def _verify_group(source: Storage, lake: LakeIndex, policy: Policy, group: str, files: list[LogObject],
                  keep_in: Path | None = None) -> GroupVerification:
    account, region = _group_parts(group)
    checks = []
    objects = {o.key: o for o in files}
    for number, (key, data) in enumerate(_read_in_order(source, sorted(objects))):
        checks.append(verify_file(objects[key], data, lake, policy))
        if keep_in is not None:
            (keep_in / str(number)).write_bytes(data)
    return GroupVerification(group, account, region, checks)


def _group_files(files: Iterable[LogObject], accounts: Iterable[str] = (), regions: Iterable[str] = (),
                 ) -> dict[str, list[LogObject]]:
    wanted_accounts, wanted_regions = set(accounts), set(regions)
    groups: dict[str, list[LogObject]] = {}
    for obj in files:
        if (wanted_accounts and obj.account not in wanted_accounts) or (wanted_regions and obj.region not in
                                                                        wanted_regions):
            continue
        groups.setdefault(group_of(obj), []).append(obj)
    return groups


def verify_day(source: str | Path | Storage, lake: str | Path | Storage, day: date, policy: Policy | None = None,
               accounts: Iterable[str] = (), regions: Iterable[str] = ()) -> DayVerification:
    """Check every raw event file delivered on `day` against the lake, without changing anything."""
    policy = policy or load_policy()
    source, lake = as_storage(source), as_storage(lake)
    found = discover(source, day, day, accounts, regions)
    index = LakeIndex(lake)
    groups = [_verify_group(source, index, policy, group, files)
              for group, files in sorted(_group_files(found.event_files).items())]
    return DayVerification(day, source.url, lake.url, groups)


# --- manifests ---------------------------------------------------------------------------------------------


@dataclass
class BundleState:
    """One bundle of a group, as recorded in the group's manifest."""

    number: int
    key: str
    phase: str  # verified | uploaded | done
    storage_class: str
    sha256: str
    size: int
    files: list[Member]
    events: dict[str, int]
    verification: str
    times: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "files": [asdict(m) for m in self.files]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleState:
        return cls(**{**data, "files": [Member(**m) for m in data["files"]]})


@dataclass
class Manifest:
    day: str
    group: str
    bundles: list[BundleState] = field(default_factory=list)

    def as_bytes(self) -> bytes:
        body = {"format": MANIFEST_FORMAT, "day": self.day, "group": self.group,
                "bundles": [b.as_dict() for b in self.bundles]}
        return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> Manifest:
        try:
            body = orjson.loads(data)
            return cls(body["day"], body["group"], [BundleState.from_dict(b) for b in body["bundles"]])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ArchiveError(f"manifest {key} is unreadable ({exc}); restore it from a backup or move it away "
                               "(its bundles stay listed under bundles/)") from None


def _write_manifest(source: Storage, key: str, manifest: Manifest) -> None:
    source.write_bytes(key, manifest.as_bytes())


DELETE_BATCH = 1000


def _delete_originals(source: Storage, keys: list[str]) -> None:
    for start in range(0, len(keys), DELETE_BATCH):
        _delete_batch(source, keys[start:start + DELETE_BATCH])


def _delete_batch(source: Storage, keys: list[str]) -> None:
    """Delete up to 1,000 objects: one DeleteObjects request on S3 (DELETE requests are free, but not instant)."""
    if source.is_local:
        for key in keys:
            source.delete(key)
        return
    bucket = source.root.partition("/")[0]
    objects = [{"Key": source.path(key).partition("/")[2]} for key in keys]
    try:
        response = client("s3").delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    except ClientError as exc:
        raise StorageError(f"cannot delete originals under s3://{source.root} ({_code(exc)}); the bundle is safe, "
                           "run the archive again to finish") from None
    if response.get("Errors"):
        first = response["Errors"][0]
        raise StorageError(f"cannot delete s3://{bucket}/{first.get('Key')} ({first.get('Code')}); the bundle is "
                           "safe, run the archive again to finish")


def _load_manifests(source: Storage, policy: Policy, day: date) -> dict[str, Manifest]:
    folder = f"{policy.manifests_prefix}{_day_path(day)}"
    manifests = {}
    for obj in source.list_files(folder):
        if obj.key.endswith(".json"):
            manifest = Manifest.from_bytes(source.read_bytes(obj.key), obj.key)
            manifests[manifest.group] = manifest
    return manifests


# --- archive -----------------------------------------------------------------------------------------------


@dataclass
class GroupArchive:
    """What happened to one (account, region) of the day."""

    group: str
    account: str
    region: str
    status: str  # archived | already archived | unverified | not touched
    files: int = 0
    bytes: int = 0
    records: int = 0
    in_lake: int = 0
    quarantined: int = 0
    bundles: list[str] = field(default_factory=list)
    bundle_bytes: int = 0
    storage_class: str | None = None
    files_deleted: int = 0
    steps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class ArchiveResult:
    """One day's archive run. `status` is archived, already archived, unverified or nothing to archive."""

    day: date
    source: str
    lake: str
    policy: str
    status: str
    groups: list[GroupArchive]

    @property
    def ok(self) -> bool:
        return self.status != "unverified"

    @property
    def files_deleted(self) -> int:
        return sum(g.files_deleted for g in self.groups)

    @property
    def bundles_written(self) -> int:
        return sum(1 for g in self.groups for step in g.steps if step.startswith("wrote bundle"))

    @property
    def problems(self) -> list[str]:
        return [p for g in self.groups for p in g.problems]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat(), "ok": self.ok, "files_deleted": self.files_deleted,
                "bundles_written": self.bundles_written}


def archive_day(source: str | Path | Storage, lake: str | Path | Storage, day: date, policy: Policy | None = None,
                *, today: date | None = None, force: bool = False, workdir: str | Path | None = None,
                ) -> ArchiveResult:
    """Verify the day's raw files against the lake, bundle them per account and region, then delete them.

    Refuses days still inside the policy's as-delivered period unless `force`. Holds the lake's lock, so no
    ingest changes the lake while it is being checked. Safe to run again at any time.
    """
    policy = policy or load_policy()
    source, lake = as_storage(source), as_storage(lake)
    today = today or datetime.now(UTC).date()
    earliest = policy.earliest_archive_date(day)
    if today < earliest and not force:
        raise ArchiveError(f"{day} is inside the policy's {policy.keep_as_delivered_days} days as delivered; "
                           f"archive it on or after {earliest} (or pass --force)")
    with lake_lock(lake, f"archive {day} of {source.url}"), \
            tempfile.TemporaryDirectory(prefix="trailsight-archive-", dir=workdir) as temp:
        return _Archive(source, lake, day, policy, Path(temp)).run()


class _Archive:
    """One archive run over one delivery day."""

    def __init__(self, source: Storage, lake: Storage, day: date, policy: Policy, temp: Path) -> None:
        self.source, self.lake, self.day, self.policy, self.temp = source, lake, day, policy, temp
        self.bundles = _bundles(source)
        self.tar_paths: dict[str, Path] = {}

    def run(self) -> ArchiveResult:
        found = discover(self.source, self.day, self.day)
        present = _group_files(found.event_files)
        manifests = _load_manifests(self.source, self.policy, self.day)
        results: dict[str, GroupArchive] = {}
        new_files: dict[str, list[LogObject]] = {}
        for group in sorted(set(present) | set(manifests)):
            account, region = _group_parts(group)
            results[group] = GroupArchive(group, account, region, "not touched")
            recorded = {m.key: m for b in manifests.get(group, Manifest("", group)).bundles for m in b.files}
            fresh = []
            for obj in present.get(group, []):
                member = recorded.get(obj.key)
                if member is None:
                    fresh.append(obj)
                elif member.size != obj.size:
                    results[group].problems.append(
                        f"{obj.key} is {obj.size} bytes but its bundle holds {member.size}; move one of them away "
                        "and archive again")
            if fresh:
                new_files[group] = fresh

        # 1. Verify every new file of the day before anything is written: a failing day stays as it is.
        checks: dict[str, GroupVerification] = {}
        folders: dict[str, Path] = {}
        index = LakeIndex(self.lake)
        for number, (group, files) in enumerate(sorted(new_files.items())):
            folders[group] = self.temp / str(number)
            folders[group].mkdir()
            checks[group] = _verify_group(self.source, index, self.policy, group, files, keep_in=folders[group])
            results[group].problems += [f.problem for f in checks[group].files if f.problem]
        if any(r.problems for r in results.values()):
            for result in results.values():
                result.status = "unverified" if result.problems else "not touched"
            return self._result("unverified", results)

        # 2. Finish what earlier runs started, then bundle the new files, group by group.
        for group, result in results.items():
            manifest = manifests.get(group) or Manifest(self.day.isoformat(), group)
            on_disk = {o.key: o for o in present.get(group, [])}
            for state in manifest.bundles:
                self._finish(manifest, state, on_disk, result)
            if group in checks:
                state = self._new_bundle(manifest, checks[group], new_files[group], folders[group], result)
                self._finish(manifest, state, on_disk, result)
            self._describe(manifest, result)
        if not new_files and not any(g.steps for g in results.values()):
            status = "already archived" if results else "nothing to archive"
        else:
            status = "archived"
        return self._result(status, results)

    def _result(self, status: str, results: dict[str, GroupArchive]) -> ArchiveResult:
        return ArchiveResult(self.day, self.source.url, self.lake.url, self.policy.path, status,
                             [results[g] for g in sorted(results)])

    def _manifest_key(self, manifest: Manifest) -> str:
        return manifest_key(self.policy, self.day, manifest.group)

    def _new_bundle(self, manifest: Manifest, check: GroupVerification, files: list[LogObject], folder: Path,
                    result: GroupArchive) -> BundleState:
        """Build the bundle from the verified bytes, record it (phase verified) and its verification."""
        number = len(manifest.bundles) + 1
        ordered = sorted(files, key=lambda o: o.key)
        members = [Member(f.key, f.size, f.sha256, int(o.delivered_at.timestamp()) if o.delivered_at else 0)
                   for f, o in zip(check.files, ordered, strict=True)]
        paths = {m.key: folder / str(i) for i, m in enumerate(members)}
        tar_path = folder / "bundle.tar"
        with open(tar_path, "wb") as out:
            sha, size = write_bundle(out, members, lambda m: paths[m.key].read_bytes(), self._header(manifest))
        state = BundleState(number, bundle_key(self.policy, self.day, manifest.group, number), "verified",
                            self.policy.bundle_storage_class, sha, size, members, check.totals(),
                            verification_key(self.policy, self.day, manifest.group, number), {"verified": _now()})
        record = {"format": MANIFEST_FORMAT, "day": self.day.isoformat(), "group": manifest.group,
                  "bundle": state.key, "lake": self.lake.url, "verified_at": state.times["verified"],
                  "totals": state.events, "files": [asdict(f) for f in check.files]}
        self.source.write_bytes(state.verification, _gzip(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)))
        manifest.bundles.append(state)
        _write_manifest(self.source, self._manifest_key(manifest), manifest)
        result.steps.append(f"verified {len(members)} files ({state.events['in_lake']:,} events in the lake, "
                            f"{state.events['quarantined']:,} in quarantine)")
        self.tar_paths[state.key] = tar_path
        return state

    def _header(self, manifest: Manifest) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "group": manifest.group}

    def _finish(self, manifest: Manifest, state: BundleState, on_disk: dict[str, LogObject],
                result: GroupArchive) -> None:
        """Take one bundle from its recorded phase to done; each phase is recorded before the next starts."""
        if state.phase == "verified":
            found = self.bundles.head(state.key)
            if found is not None and found.sha256 == state.sha256 and found.size == state.size:
                how = self.bundles.confirm(state.key, state.sha256, state.size, state.storage_class)
                result.steps.append(f"found bundle {state.key} already written ({how})")
            else:
                tar_path = self.tar_paths.get(state.key) or self._rebuild(manifest, state)
                how = self.bundles.put(state.key, tar_path, state.sha256, state.storage_class)
                result.steps.append(f"wrote bundle {state.key} ({state.size:,} bytes; {how})")
            state.phase, state.times["uploaded"] = "uploaded", _now()
            _write_manifest(self.source, self._manifest_key(manifest), manifest)
        leftovers = [m for m in state.files if m.key in on_disk and on_disk[m.key].size == m.size]
        if state.phase == "done" and leftovers:
            # Originals back after a restore: delete them again only if they are the bytes the bundle holds.
            expected = {m.key: m.sha256 for m in leftovers}
            same = {key for key, data in _read_in_order(self.source, list(expected))
                    if hashlib.sha256(data).hexdigest() == expected[key]}
            if len(same) < len(leftovers):
                result.steps.append(f"left {len(leftovers) - len(same)} files that differ from {state.key} as "
                                    "they are")
            leftovers = [m for m in leftovers if m.key in same]
        if state.phase == "uploaded" or leftovers:
            if leftovers:
                how = self.bundles.confirm(state.key, state.sha256, state.size, state.storage_class)
                _delete_originals(self.source, [m.key for m in leftovers])
                for member in leftovers:
                    on_disk.pop(member.key)
                result.files_deleted += len(leftovers)
                word = "deleted" if state.phase == "uploaded" else "deleted again (restored earlier)"
                result.steps.append(f"{word} {len(leftovers)} originals of {state.key} (bundle {how})")
            if state.phase != "done":
                state.phase, state.times["done"] = "done", _now()
                _write_manifest(self.source, self._manifest_key(manifest), manifest)

    def _rebuild(self, manifest: Manifest, state: BundleState) -> Path:
        """Rebuild a bundle recorded as verified but never written (the run stopped); same bytes, same checksum."""
        tar_path = self.temp / f"rebuild-{state.number}-{uuid.uuid4().hex}.tar"
        try:
            contents = dict(_read_in_order(self.source, [m.key for m in state.files]))
        except StorageError as exc:
            raise ArchiveError(f"an original of {state.key} (verified, not yet written) cannot be read ({exc}); put "
                               f"it back, or move {self._manifest_key(manifest)} away and archive again") from None
        with open(tar_path, "wb") as out:
            sha, size = write_bundle(out, state.files, lambda m: contents[m.key], self._header(manifest))
        if (sha, size) != (state.sha256, state.size):
            raise ArchiveError(f"rebuilt bundle {state.key} differs from the one verified; nothing was deleted, "
                               f"move {self._manifest_key(manifest)} away and archive the day again")
        return tar_path

    def _describe(self, manifest: Manifest, result: GroupArchive) -> None:
        result.bundles = [b.key for b in manifest.bundles]
        result.files = sum(len(b.files) for b in manifest.bundles)
        result.bytes = sum(m.size for b in manifest.bundles for m in b.files)
        result.bundle_bytes = sum(b.size for b in manifest.bundles)
        for name in ("records", "in_lake", "quarantined"):
            setattr(result, name, sum(b.events.get(name, 0) for b in manifest.bundles))
        result.storage_class = None if self.source.is_local else (
            manifest.bundles[-1].storage_class if manifest.bundles else None)
        done = manifest.bundles and all(b.phase == "done" for b in manifest.bundles)
        result.status = ("archived" if result.steps else "already archived") if done else "not touched"
        small = [b.key for b in manifest.bundles if b.size < MIN_BILLABLE_BYTES]
        if small and result.steps:
            result.steps.append(f"note: {len(small)} bundle(s) under 128 KiB (few files that day); billed as 128 KiB "
                                "in IA / Glacier IR")


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# --- restore -----------------------------------------------------------------------------------------------


@dataclass
class BundleRestore:
    key: str
    storage_class: str | None
    status: str  # restored | pending | failed
    files_written: int = 0
    files_present: int = 0
    detail: str = ""


@dataclass
class RestoreResult:
    """A restore of one delivery day. `status`: restored, pending (archive-class restores under way),
    failed, or nothing to restore."""

    day: date
    source: str
    target: str
    bundles: list[BundleRestore]

    @property
    def status(self) -> str:
        states = {b.status for b in self.bundles}
        if not states:
            return "nothing to restore"
        return "failed" if "failed" in states else "pending" if "pending" in states else "restored"

    @property
    def files_written(self) -> int:
        return sum(b.files_written for b in self.bundles)

    @property
    def files_present(self) -> int:
        return sum(b.files_present for b in self.bundles)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat(), "status": self.status,
                "files_written": self.files_written, "files_present": self.files_present}


def restore_day(source: str | Path | Storage, day: date, policy: Policy | None = None, *,
                target: str | Path | Storage | None = None, accounts: Iterable[str] = (),
                regions: Iterable[str] = (), overwrite: bool = False) -> RestoreResult:
    """Put the originals of a day's bundles back, byte for byte, under their own keys (in `target`, default the
    archive itself). Bundles in GLACIER / DEEP_ARCHIVE get an S3 restore request and are reported pending; run
    again once the restore has finished. Files already back are left alone, so re-running is cheap."""
    policy = policy or load_policy()
    source = as_storage(source)
    destination = as_storage(target) if target is not None else source
    bundles = _bundles(source)
    wanted_accounts, wanted_regions = set(accounts), set(regions)
    results = []
    for obj in source.list_files(f"{policy.bundles_prefix}{_day_path(day)}"):
        if not obj.key.endswith(".tar"):
            continue
        group, _ = _bundle_group(policy, day, obj.key)
        account, region = _group_parts(group)
        if (wanted_accounts and account not in wanted_accounts) or (wanted_regions and region not in wanted_regions):
            continue
        results.append(_restore_bundle(bundles, obj.key, destination, policy, overwrite))
    return RestoreResult(day, source.url, destination.url, results)


def _restore_bundle(bundles: _LocalBundles | _S3Bundles, key: str, destination: Storage, policy: Policy,
                    overwrite: bool) -> BundleRestore:
    found = bundles.head(key)
    if found is None:
        return BundleRestore(key, None, "failed", detail="the bundle disappeared while restoring; run again")
    result = BundleRestore(key, found.storage_class, "restored")
    if not found.readable:
        return _pending(bundles, key, found, policy, result)

    def put_back(member: Member, data: bytes) -> None:
        if destination.exists(member.key):
            current = destination.read_bytes(member.key)
            if hashlib.sha256(current).hexdigest() == member.sha256:
                result.files_present += 1
                return
            if not overwrite:
                raise ArchiveError(f"{member.key} exists with different contents; move it away or restore with "
                                   "--overwrite")
        destination.write_bytes(member.key, data)
        result.files_written += 1

    try:
        with bundles.open(key) as stream:
            read_bundle(stream, key, put_back)
    except _NotRestored:
        return _pending(bundles, key, BundleObject(found.size, found.sha256, found.storage_class, "none"), policy,
                        result)
    except (ArchiveError, StorageError) as exc:
        result.status, result.detail = "failed", str(exc)
    return result


def _pending(bundles: _LocalBundles | _S3Bundles, key: str, found: BundleObject, policy: Policy,
             result: BundleRestore) -> BundleRestore:
    result.status = "pending"
    if found.restore == "ongoing":
        result.detail = "S3 restore in progress; run the restore again later"
    else:
        bundles.request_restore(key, policy.restore_days, policy.restore_tier)
        result.detail = (f"S3 restore requested ({policy.restore_tier} tier, readable for {policy.restore_days} "
                         "days once done); run the restore again later")
    return result
