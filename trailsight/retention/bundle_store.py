"""Bundle objects in a local folder or on S3: written, read back against their checksum, stored in a class,
and restored from archive classes."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from botocore.exceptions import ClientError

from trailsight.errors import ArchiveError
from trailsight.retention.policy import ARCHIVE_CLASSES
from trailsight.storage.aws import client
from trailsight.storage.store import Storage

MAX_SINGLE_REQUEST_BYTES = 5 * 2**30


SHA_METADATA = "trailsight-sha256"


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
        folder, name = os.path.dirname(target), os.path.basename(target)
        for stale in Path(folder).glob(f".{name}.*.tmp"):  # left by a killed run (the day's lock is ours)
            stale.unlink(missing_ok=True)
        temp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(path, "rb") as source, open(temp, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise ArchiveError(f"cannot write bundle {target} ({exc.strerror or exc}); nothing was deleted, run "
                               "the archive again") from None
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
