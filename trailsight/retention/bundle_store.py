"""Bundle objects in any Storage: written, read back against their checksum, moved into their storage class and
confirmed before any original is deleted, and restored from archive classes. The storage-specific calls
(checksums, classes, restores) belong to Storage; this module decides what is checked when."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from trailsight.errors import ArchivedObjectError, ArchiveError, StorageError
from trailsight.retention.policy import ARCHIVE_CLASSES
from trailsight.storage.store import ObjectHead, Storage

__all__ = ["ArchivedObjectError", "BundleObject", "BundleStore"]


@dataclass(frozen=True)
class BundleObject:
    """What the store says about a bundle object."""

    size: int
    sha256: str | None
    storage_class: str | None
    restore: str  # "none", "ongoing" or "ready" (a restored copy of an archived object can be read)

    @classmethod
    def of(cls, head: ObjectHead) -> BundleObject:
        return cls(head.size, head.sha256, head.storage_class, head.restore)

    @property
    def readable(self) -> bool:
        return self.storage_class not in ARCHIVE_CLASSES or self.restore == "ready"


class BundleStore:
    """Bundles are written in STANDARD with a SHA-256 checksum, read back and compared, then moved into the
    policy's storage class (a server-side copy), so even archive classes are verified before deletion."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, key: str, path: Path, sha256: str, storage_class: str) -> str:
        try:
            staging_version = self.storage.put_file(key, path, sha256, "application/x-tar")
        except StorageError as exc:
            raise ArchiveError(f"cannot write bundle {self.storage.path(key)} ({exc}); nothing was deleted, run the "
                               "archive again") from None
        return self._finish(key, sha256, path.stat().st_size, storage_class, staging_version)

    def _finish(self, key: str, sha256: str, size: int, storage_class: str, staging_version: str | None = None,
                ) -> str:
        """Read the STANDARD copy back, then move it into its storage class and confirm the class."""
        with self.open(key) as stream:
            digest = _sha256_stream(stream)
        if digest != sha256:
            raise ArchiveError(f"bundle {key} reads back with checksum {digest}, not {sha256}; nothing was deleted, "
                               "run the archive again")
        if not self.storage.has_storage_classes:
            return "read back, SHA-256 matched"
        if storage_class != "STANDARD":
            try:
                self.storage.set_storage_class(key, storage_class, drop_version=staging_version)
            except StorageError as exc:
                raise ArchiveError(f"cannot move bundle {key} to {storage_class} ({exc}); nothing was deleted, run "
                                   "the archive again") from None
        self._check_head(key, sha256, size, storage_class)
        return f"read back, SHA-256 matched; stored as {storage_class}"

    def _check_head(self, key: str, sha256: str, size: int, storage_class: str) -> BundleObject:
        found = self.head(key)
        if found is None or found.size != size or found.sha256 != sha256:
            raise ArchiveError(f"bundle {key} is missing or differs from the one verified; nothing was deleted, "
                               "run the archive again")
        if found.storage_class is not None and found.storage_class != storage_class:
            raise ArchiveError(f"bundle {key} is stored as {found.storage_class}, not {storage_class}; nothing was "
                               "deleted, run the archive again")
        return found

    def head(self, key: str) -> BundleObject | None:
        try:
            found = self.storage.head(key)
        except StorageError as exc:
            raise ArchiveError(f"cannot read {self.storage.path(key)} ({exc})") from None
        return None if found is None else BundleObject.of(found)

    def confirm(self, key: str, sha256: str, size: int, storage_class: str) -> str:
        """Before deleting originals: the bundle is there, with the checksum, size and class recorded.

        A bundle still in STANDARD when another class is wanted (a crash between write and copy) is read back
        and moved now.
        """
        found = self.head(key)
        matches = found is not None and found.sha256 == sha256 and found.size == size
        if matches and found is not None and found.storage_class == "STANDARD" and storage_class != "STANDARD":
            return self._finish(key, sha256, size, storage_class)
        self._check_head(key, sha256, size, storage_class)
        if not self.storage.has_storage_classes:
            return "checksum and size confirmed"
        return f"checksum, size and storage class {storage_class} confirmed"

    @contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        try:
            with self.storage.open_stream(key) as stream:
                yield stream
        except ArchivedObjectError:
            raise
        except StorageError as exc:
            raise ArchiveError(f"cannot read {self.storage.path(key)} ({exc})") from None

    def request_restore(self, key: str, days: int, tier: str) -> None:
        try:
            self.storage.request_restore(key, days, tier)
        except StorageError as exc:
            raise ArchiveError(str(exc)) from None


def _sha256_stream(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()
