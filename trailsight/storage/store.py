"""Storage behind one interface: a local folder or an S3 prefix, addressed by a path or URL.

Business code never branches on the scheme; it asks for keys relative to the location's root.
Writes are atomic: a reader sees the old object or the new one, never a partial file.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.fs as pafs
import urllib3
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from trailsight.errors import ArchivedObjectError, StorageError, TransientError, first_line
from trailsight.storage.aws import (
    MAX_ATTEMPTS,
    MAX_IN_FLIGHT,
    client,
    region_name,
    require_credentials,
    retried,
    s3_endpoint,
)

# S3 answers a failed If-Match / If-None-Match / per-object ETag condition with one of these codes.
CONDITION_FAILED = ("PreconditionFailed", "ConditionalRequestConflict", "412", "NoSuchKey", "404")

# Matched against the error's text lowered and without `_` or spaces, so that S3's codes (`SlowDown`), the names
# pyarrow's C++ client prints (`SLOW_DOWN`, `INTERNAL_FAILURE`) and curl's messages are all recognised.
TRANSIENT_MARKERS = ("slowdown", "reduceyourrequestrate", "internalerror", "internalfailure",
                     "serviceunavailable", "throttl", "requesttimeout", "timedout", "timeout", "connectionreset",
                     "networkconnection", "brokenpipe", "curlcode:28", "curlcode:56", "curlcode:7,")
# A 5xx status standing alone (not a digit run inside a key's name).
SERVER_ERROR_STATUS = re.compile(r"(?<![\w/.-])5(00|02|03|04)(?![\w/.-])")


def transient_reason(exc: BaseException) -> str | None:
    """Why a failure is worth retrying (throttling, a timeout, a reset connection, a 5xx), or None."""
    text = re.sub(r"[\s_]", "", str(exc).lower())
    if (any(marker in text for marker in TRANSIENT_MARKERS) or SERVER_ERROR_STATUS.search(str(exc))
            or isinstance(exc, TimeoutError | ConnectionError)):
        return first_line(exc)
    return None


def storage_error(message: str, exc: BaseException) -> StorageError:
    """A StorageError, or a TransientError when the cause is worth retrying."""
    return (TransientError if transient_reason(exc) else StorageError)(f"{message}: {first_line(exc)}")


# The temporary file `write_bytes` writes beside its target before renaming it: `.<name>.<32 hex digits>.tmp`.
TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


def printable_key(key: str) -> str:
    """A key as text that any output takes: a byte of a local name that is not UTF-8 written as `\\xff`."""
    return key.encode(errors="surrogateescape").decode(errors="backslashreplace")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# The metadata entry that carries an object's SHA-256 (hex) next to S3's own base64 checksum.
SHA_METADATA = "trailsight-sha256"
# S3 takes at most this much in one PUT or COPY.
MAX_SINGLE_REQUEST_BYTES = 5 * 2**30


@dataclass(frozen=True)
class ObjectHead:
    """What the store says about one object: size, SHA-256 (None when not recorded), storage class (None where
    classes do not apply: a local folder) and restore state: none, ongoing or ready (a readable restored copy)."""

    size: int
    sha256: str | None
    storage_class: str | None
    restore: str


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: `key` is relative to the storage root and uses `/`."""

    key: str
    size: int


def _s3_filesystem(attempts: int) -> pafs.S3FileSystem:
    kwargs: dict = {"region": region_name(), "retry_strategy": pafs.AwsStandardS3RetryStrategy(attempts)}
    endpoint = s3_endpoint()
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    return pafs.S3FileSystem(**kwargs)


class Storage:
    """A location (`/some/folder`, `file:///...` or `s3://bucket/prefix`) holding objects by key."""

    def __init__(self, url: str | Path) -> None:
        text = str(url)
        self.url = text
        if text.startswith("s3://"):
            require_credentials(text)
            self.fs: pafs.FileSystem = _s3_filesystem(MAX_ATTEMPTS)
            self._calls: pafs.FileSystem = _s3_filesystem(1)
            self.root = text.removeprefix("s3://").rstrip("/")
            self.is_local = False
        else:
            path = Path(text.removeprefix("file://")).expanduser().resolve()
            self.fs = self._calls = pafs.LocalFileSystem()
            self.root = path.as_posix()
            self.is_local = True

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    fs: pafs.FileSystem
    """For Parquet readers (datasets, `pq.read_table`): pyarrow retries their S3 requests itself, unseen."""
    _calls: pafs.FileSystem
    """For this class's own calls: no retries of pyarrow's, since `retried` does them and says so."""

    def path(self, key: str = "") -> str:
        """Filesystem path of a key, refusing keys that would escape the root."""
        parts = [p for p in key.split("/") if p]
        if any(p in (".", "..") for p in parts) or key.startswith("/"):
            raise StorageError(f"refusing object key {key!r}: it would leave {self.url}")
        return "/".join([self.root, *parts]) if parts else self.root

    def key_of(self, path: str) -> str:
        return path[len(self.root) :].lstrip("/")

    def _info(self, selector_path: str, recursive: bool) -> list[pafs.FileInfo]:
        try:
            selector = pafs.FileSelector(selector_path, recursive=recursive, allow_not_found=True)
            return retried(lambda: self._calls.get_file_info(selector), transient_reason)
        except OSError as exc:
            raise storage_error(f"cannot list {selector_path}", exc) from exc

    def list_dirs(self, key: str = "") -> list[str]:
        """Names of the sub-folders (common prefixes) directly under `key`, sorted."""
        if self.is_local:
            return sorted(os.path.basename(path) for path in self._local_dirs(self.path(key)))
        infos = self._info(self.path(key), recursive=False)
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def list_files(self, key: str = "", recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects under `key`, sorted by key; only this class's own temporary files are skipped.

        Files whose names start with a dot are listed like any other: what they hold decides what is done with
        them. A local name that is not UTF-8 comes back with its odd bytes as surrogate escapes, exactly.
        """
        if self.is_local:
            files = [ObjectInfo(self.key_of(path), size) for path, size in self._local_files(self.path(key), recursive)
                     if not TEMPORARY_NAME.match(os.path.basename(path))]
        else:
            infos = self._info(self.path(key), recursive=recursive)
            files = [ObjectInfo(self.key_of(i.path), i.size or 0) for i in infos
                     if i.type == pafs.FileType.File and not TEMPORARY_NAME.match(i.base_name)]
        return iter(sorted(files, key=lambda o: o.key))

    def _scan(self, folder: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as entries:
                return list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise storage_error(f"cannot list {printable_key(folder)}", exc) from exc

    def _followed(self, entry: os.DirEntry[str]) -> bool:
        """Whether a symbolic link leads to a place inside the root: links out of the tree are not followed."""
        return not entry.is_symlink() or _inside(os.path.realpath(entry.path), self.root)

    def _local_dirs(self, folder: str) -> list[str]:
        found = []
        for entry in self._scan(folder):
            with contextlib.suppress(OSError):
                if entry.is_dir() and self._followed(entry):
                    found.append(entry.path)
        return found

    def _local_files(self, folder: str, recursive: bool) -> Iterator[tuple[str, int]]:
        """(path, size) of the files under a local folder. A folder reached twice (a link back up the tree, a
        loop) is listed once, so a listing always ends."""
        visited: set[str] = set()
        pending = [folder]
        while pending:
            current = pending.pop()
            real = os.path.realpath(current)
            if real in visited:
                continue
            visited.add(real)
            for entry in self._scan(current):
                with contextlib.suppress(OSError):  # a broken link, or a file removed meanwhile
                    if not self._followed(entry):
                        continue
                    if entry.is_dir():
                        if recursive:
                            pending.append(entry.path)
                    elif entry.is_file():
                        yield entry.path, entry.stat().st_size

    def check_root(self) -> None:
        """Fail early, with the reason, when the folder or bucket itself is missing or forbidden."""
        if self.is_local:
            if not os.path.isdir(self.root):
                raise StorageError(f"{self.url} does not exist")
            return
        bucket = self.root.split("/", 1)[0]
        try:
            client("s3").head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            reason = {"404": "no such bucket", "NoSuchBucket": "no such bucket", "403": "access denied"}.get(code, code)
            raise StorageError(f"{self.url}: {reason}") from exc

    def exists(self, key: str) -> bool:
        if self.is_local:
            return os.path.lexists(self.path(key))
        try:
            path = self.path(key)
            return retried(lambda: self._calls.get_file_info(path), transient_reason).type != pafs.FileType.NotFound
        except OSError as exc:
            raise storage_error(f"cannot reach {self.path(key)}", exc) from exc

    def read_bytes(self, key: str) -> bytes:
        if self.is_local:
            try:
                with open(self.path(key), "rb") as file:
                    return file.read()
            except (FileNotFoundError, IsADirectoryError) as exc:
                raise StorageError(f"no such object: {printable_key(self.path(key))}") from exc
            except OSError as exc:
                raise storage_error(f"cannot read {printable_key(self.path(key))}", exc) from exc
        try:
            return retried(lambda: self._read_s3(self.path(key)), transient_reason)
        except FileNotFoundError as exc:
            raise StorageError(f"no such object: {self.path(key)}") from exc
        except OSError as exc:
            raise storage_error(f"cannot read {self.path(key)}", exc) from exc

    def _read_s3(self, path: str) -> bytes:
        """One GET (pyarrow's streams ask for the size first: a HEAD per object, twice the requests to pay for
        and to wait on). botocore retries the request; a body cut short is retried here, as a dropped connection."""
        try:
            body = _object_body(path)
            try:
                return body.read()
            finally:
                body.close()
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise FileNotFoundError(path) from exc
            raise OSError(f"{_code(exc)}: {first_line(exc)}") from exc
        except (HTTPClientError, BotoConnectionError, IncompleteReadError, urllib3.exceptions.HTTPError) as exc:
            raise ConnectionError(first_line(exc)) from exc
        except BotoCoreError as exc:
            raise OSError(first_line(exc)) from exc

    def _write_s3(self, path: str, data: bytes | memoryview | pa.Buffer) -> None:
        with self._calls.open_output_stream(path, compression=None) as out:
            out.write(data)

    def write_bytes(self, key: str, data: bytes | memoryview | pa.Buffer) -> None:
        """Write an object so that readers see either the previous object or the whole new one."""
        target = self.path(key)
        try:
            if self.is_local:
                folder, _, name = target.rpartition("/")
                os.makedirs(folder, exist_ok=True)
                temp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
                try:
                    with open(temp, "wb") as out:
                        out.write(data)
                        out.flush()
                        os.fsync(out.fileno())
                    os.replace(temp, target)
                except BaseException:
                    # A full disk must not also be left holding half-written temporary files.
                    with contextlib.suppress(OSError):
                        os.unlink(temp)
                    raise
            else:
                retried(lambda: self._write_s3(target, data), transient_reason)
        except OSError as exc:
            raise storage_error(f"cannot write {target}", exc) from exc

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create an object only if it does not exist yet; False when it already exists."""
        target = self.path(key)
        if not self.is_local:
            return self._s3_create_exclusive(target, data)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot create {target}: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        except OSError as exc:
            # An empty or partial lock file would refuse every later run; leave nothing behind.
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise StorageError(f"cannot create {target}: {exc.strerror or exc}") from exc
        return True

    def _s3_create_exclusive(self, target: str, data: bytes) -> bool:
        """S3 conditional write (If-None-Match: *): exactly one of two concurrent writers succeeds."""
        bucket, _, object_key = target.partition("/")
        try:
            client("s3").put_object(Bucket=bucket, Key=object_key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                return False
            raise StorageError(f"cannot create s3://{target}: {code or exc}") from exc
        return True

    def read_tagged(self, key: str) -> tuple[bytes, str]:
        """An object's bytes and its tag, which changes whenever the object is rewritten (S3: the ETag of exactly
        these bytes; a local file: their SHA-256). The tag is what `replace_if` and `delete_if` compare."""
        if self.is_local:
            data = self.read_bytes(key)
            return data, hashlib.sha256(data).hexdigest()
        bucket, _, object_key = self.path(key).partition("/")
        try:
            response = client("s3").get_object(Bucket=bucket, Key=object_key)
            return response["Body"].read(), response["ETag"]
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise StorageError(f"no such object: s3://{bucket}/{object_key}") from exc
            raise storage_error(f"cannot read s3://{bucket}/{object_key}", exc) from exc

    def replace_if(self, key: str, tag: str, data: bytes) -> bool:
        """Compare-and-swap: write `data` only if the object still has `tag`; False when it changed or is gone.

        S3: a conditional PUT (If-Match). A local folder: replacers take an advisory lock on a guard file beside
        the object (released by the kernel if the process dies), check the tag, then rename the new file over it.
        """
        target = self.path(key)
        if not self.is_local:
            bucket, _, object_key = target.partition("/")
            try:
                client("s3").put_object(Bucket=bucket, Key=object_key, Body=data, IfMatch=tag)
            except ClientError as exc:
                if _code(exc) in CONDITION_FAILED:
                    return False
                raise storage_error(f"cannot replace s3://{target}", exc) from exc
            return True
        folder, _, name = target.rpartition("/")
        try:
            with open(f"{folder}/.{name}.guard", "ab") as guard:
                fcntl.flock(guard, fcntl.LOCK_EX)
                try:
                    current = Path(target).read_bytes()
                except FileNotFoundError:
                    return False
                if hashlib.sha256(current).hexdigest() != tag:
                    return False
                self.write_bytes(key, data)
                return True
        except OSError as exc:
            raise storage_error(f"cannot replace {target}", exc) from exc

    def delete_if(self, tags: dict[str, str]) -> list[str]:
        """Delete each object only if it still has its tag; returns the keys kept (changed since, or gone).

        S3: DeleteObjects with each object's ETag as a condition, 1,000 keys a request. A local file is first
        renamed aside (a file written to its name from then on is a new file, left alone), hashed, and deleted
        only when its hash is the tag (folders left empty go too); otherwise it is put back.
        """
        if self.is_local:
            return [key for key in tags if not self._delete_local_if(key, tags[key])]
        kept: list[str] = []
        keys = list(tags)
        bucket = self.root.partition("/")[0]
        if len(keys) == 1:  # one DELETE with If-Match (a lock's release, a lone original)
            target = self.path(keys[0]).partition("/")[2]
            try:
                client("s3").delete_object(Bucket=bucket, Key=target, IfMatch=tags[keys[0]])
            except ClientError as exc:
                if _code(exc) not in CONDITION_FAILED:
                    raise storage_error(f"cannot delete s3://{bucket}/{target}", exc) from exc
                kept.append(keys[0])
            return kept
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            objects = [{"Key": self.path(key).partition("/")[2], "ETag": tags[key]} for key in batch]
            try:
                response = client("s3").delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            except ClientError as exc:
                raise storage_error(f"cannot delete objects under s3://{self.root}", exc) from exc
            for error in response.get("Errors", []):
                if error.get("Code") not in CONDITION_FAILED:
                    raise StorageError(f"cannot delete s3://{bucket}/{error.get('Key')} ({error.get('Code')})")
                kept.append(self.key_of(f"{bucket}/{error['Key']}"))
        return kept

    def remove_empty_folders(self, prefix: str) -> None:
        """Remove the folders at and under `prefix` that hold no file. On S3 a folder is only its keys' prefix:
        what goes are the empty `…/` marker objects pyarrow leaves when it deletes a folder's last file (a folder
        that still holds files is listed all the same without them)."""
        if self.is_local:
            for folder, _, _ in os.walk(self.path(prefix), topdown=False):  # children before their parents
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
            return
        bucket, _, folder = self.path(prefix).partition("/")
        try:
            listed = client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{folder}/")
            for marker in [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith("/")]:
                client("s3").delete_object(Bucket=bucket, Key=marker)
        except ClientError as exc:
            raise storage_error(f"cannot remove the folder s3://{bucket}/{folder}", exc) from exc

    def _remove_empty_folders(self, folder: str) -> None:
        """Remove `folder` and its parents below the root while they are empty (a lock or a day's originals
        leave no empty tree behind)."""
        while folder.startswith(f"{self.root}/"):
            try:
                os.rmdir(folder)
            except OSError:
                return
            folder = folder.rpartition("/")[0]

    def _delete_local_if(self, key: str, tag: str) -> bool:
        target = self.path(key)
        folder, _, name = target.rpartition("/")
        aside = f"{folder}/.{name}.{uuid.uuid4().hex}.deleting"
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise storage_error(f"cannot delete {target}", exc) from exc
        try:
            with open(aside, "rb") as stream:
                same = _sha256_of(stream) == tag
            if same:
                os.unlink(aside)
                self._remove_empty_folders(folder)
                return True
            try:
                os.link(aside, target)
                os.unlink(aside)
            except FileExistsError:
                # Yet another file arrived under this name meanwhile: keep the changed one beside it, visibly.
                os.rename(aside, f"{target}.kept-{uuid.uuid4().hex[:8]}")
            return False
        except OSError as exc:
            raise storage_error(f"cannot delete {target} (its bytes are in {aside})", exc) from exc

    @property
    def has_storage_classes(self) -> bool:
        return not self.is_local

    def put_file(self, key: str, path: str | Path, sha256: str, content_type: str = "application/octet-stream",
                 ) -> str | None:
        """Write a local file as an object with its SHA-256 recorded (S3 also checks it on arrival); returns the
        S3 version written (None when unversioned or local). A failed write leaves no temporary file."""
        target = self.path(key)
        size = os.path.getsize(path)
        if not self.is_local:
            if size > MAX_SINGLE_REQUEST_BYTES:
                raise StorageError(f"s3://{target} would be {size / 2**30:.1f} GiB, over S3's 5 GiB limit for one "
                                   "PUT or COPY")
            bucket, _, object_key = target.partition("/")
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
            try:
                with open(path, "rb") as body:
                    response = client("s3").put_object(Bucket=bucket, Key=object_key, Body=body,
                                                       ChecksumSHA256=checksum, Metadata={SHA_METADATA: sha256},
                                                       ContentType=content_type)
            except ClientError as exc:
                raise storage_error(f"cannot write s3://{target}", exc) from exc
            version = response.get("VersionId")
            return None if version in (None, "null") else version
        folder, _, name = target.rpartition("/")
        os.makedirs(folder, exist_ok=True)
        for stale in Path(folder).glob(f".{name}.*.tmp"):  # left by a killed writer of this object
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
            raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from None
        return None

    def head(self, key: str) -> ObjectHead | None:
        """Size, SHA-256, storage class and restore state of an object; None when there is none. A local file is
        hashed (it carries no metadata); on S3 the recorded SHA-256 is checked against S3's own checksum."""
        target = self.path(key)
        if self.is_local:
            if not os.path.isfile(target):
                return None
            with open(target, "rb") as stream:
                return ObjectHead(os.path.getsize(target), _sha256_of(stream), None, "none")
        bucket, _, object_key = target.partition("/")
        try:
            response = client("s3").head_object(Bucket=bucket, Key=object_key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise storage_error(f"cannot read s3://{target}", exc) from exc
        restore_header = response.get("Restore") or ""
        restore = ("ongoing" if 'ongoing-request="true"' in restore_header
                   else "ready" if 'ongoing-request="false"' in restore_header else "none")
        sha = (response.get("Metadata") or {}).get(SHA_METADATA)
        checksum = response.get("ChecksumSHA256")
        if sha and checksum and "-" not in checksum and base64.b64decode(checksum).hex() != sha:
            sha = f"mismatch:{base64.b64decode(checksum).hex()}"
        return ObjectHead(response["ContentLength"], sha, response.get("StorageClass") or "STANDARD", restore)

    def set_storage_class(self, key: str, storage_class: str, drop_version: str | None = None) -> None:
        """Move an object into a storage class (an in-place server-side copy keeping its metadata and checksum);
        `drop_version` is the version the copy replaces, deleted so that it does not linger in a versioned
        bucket. Where classes do not apply (a local folder) nothing changes."""
        if not self.has_storage_classes:
            return
        bucket, _, object_key = self.path(key).partition("/")
        s3 = client("s3")
        try:
            s3.copy_object(Bucket=bucket, Key=object_key, CopySource={"Bucket": bucket, "Key": object_key},
                           StorageClass=storage_class, MetadataDirective="COPY", ChecksumAlgorithm="SHA256")
            if drop_version:
                s3.delete_object(Bucket=bucket, Key=object_key, VersionId=drop_version)
        except ClientError as exc:
            raise storage_error(f"cannot move s3://{bucket}/{object_key} to {storage_class}", exc) from exc

    @contextlib.contextmanager
    def open_stream(self, key: str) -> Iterator[BinaryIO]:
        """Read an object as a stream; ArchivedObjectError when its storage class needs a restore first."""
        target = self.path(key)
        if self.is_local:
            try:
                with open(target, "rb") as stream:
                    yield stream
            except FileNotFoundError:
                raise StorageError(f"no such object: {target}") from None
            return
        try:
            body = _object_body(target)
        except ClientError as exc:
            if _code(exc) == "InvalidObjectState":
                raise ArchivedObjectError(f"s3://{target} is archived; restore it first") from None
            raise storage_error(f"cannot read s3://{target}", exc) from exc
        try:
            yield body
        finally:
            body.close()

    def request_restore(self, key: str, days: int, tier: str) -> None:
        """Ask S3 to make a readable copy of an archived object for `days` days (a restore under way is fine)."""
        bucket, _, object_key = self.path(key).partition("/")
        if not self.has_storage_classes:
            return
        try:
            client("s3").restore_object(Bucket=bucket, Key=object_key,
                                        RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}})
        except ClientError as exc:
            if _code(exc) != "RestoreAlreadyInProgress":
                raise StorageError(f"cannot start the restore of s3://{bucket}/{object_key} ({_code(exc)}); check "
                                   "the s3:RestoreObject permission and try again") from None

    def user_metadata(self, key: str) -> dict[str, str]:
        """An object's user metadata (S3 `x-amz-meta-*`, names without that prefix); local files have none."""
        if self.is_local:
            return {}
        bucket, _, object_key = self.path(key).partition("/")
        try:
            return dict(client("s3").head_object(Bucket=bucket, Key=object_key).get("Metadata", {}))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
                raise StorageError(f"no such object: s3://{bucket}/{object_key}") from exc
            raise storage_error(f"cannot read the metadata of s3://{bucket}/{object_key}", exc) from exc

    def browser_url(self, key: str, expires_seconds: int = 7 * 24 * 3600, content_type: str | None = None) -> str:
        """An address a browser can open: a presigned GET for S3 (7 days at most, as SigV4 allows), served
        with `content_type` when given; a file:// URL for a local key."""
        if self.is_local:
            return Path(self.path(key)).as_uri()
        bucket, _, object_key = self.path(key).partition("/")
        params = {"Bucket": bucket, "Key": object_key}
        if content_type:
            params["ResponseContentType"] = content_type
        return client("s3").generate_presigned_url("get_object", Params=params, ExpiresIn=expires_seconds)

    def move(self, key: str, new_key: str) -> None:
        """Rename an object; readers of `new_key` see the old object there or the whole moved one.

        Locally one rename (same file system); on S3 a copy, atomic for the new key, then a delete.
        """
        source, target = self.path(key), self.path(new_key)
        try:
            if self.is_local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(source, target)
            else:
                retried(lambda: self._calls.move(source, target), transient_reason)
        except FileNotFoundError as exc:
            raise StorageError(f"no such object: {source}") from exc
        except OSError as exc:
            raise storage_error(f"cannot move {source} to {target}", exc) from exc

    def delete(self, key: str) -> None:
        if self.is_local:
            try:
                os.unlink(self.path(key))
            except FileNotFoundError:
                return
            except OSError as exc:
                raise storage_error(f"cannot delete {printable_key(self.path(key))}", exc) from exc
            return
        try:
            path = self.path(key)
            retried(lambda: self._calls.delete_file(path), transient_reason)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(f"cannot delete {self.path(key)}", exc) from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or str(exc)


def _sha256_of(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def as_storage(location: str | Path | Storage) -> Storage:
    """The Storage at a path or URL; a Storage is taken as it is."""
    return location if isinstance(location, Storage) else Storage(location)


def copy_objects(source: Storage, target: Storage, prefix: str = "", threads: int = 16) -> int:
    """Copy every object under `prefix` from one location to another, keeping keys; returns the count.

    Objects are small and many (CloudTrail files), so the copies run on threads: the time goes to round trips.
    """
    keys = [obj.key for obj in source.list_files(prefix)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(lambda key: target.write_bytes(key, source.read_bytes(key)), keys):
            pass
    return len(keys)


IO_THREADS = MAX_IN_FLIGHT


def _object_body(path: str) -> Any:
    """The body stream of the S3 object at `bucket/key`, from one GET (botocore's errors as they come)."""
    bucket, _, object_key = path.partition("/")
    return client("s3").get_object(Bucket=bucket, Key=object_key)["Body"]


READ_AHEAD_BYTES = 64 * 2**20


def io_threads(count: int = IO_THREADS) -> ThreadPoolExecutor:
    """Threads for one round of reads, writes or listings, used as a context manager: they end with the round.

    Threads kept for a worker process's life made the process hang when it should exit.
    """
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix="trailsight-io")


def _read_or_error(storage: Storage, key: str) -> bytes | StorageError:
    try:
        return storage.read_bytes(key)
    except StorageError as exc:
        return exc


def read_objects(storage: Storage, objects: Iterable[tuple[str, int]], max_in_flight: int = IO_THREADS,
                 max_bytes: int = READ_AHEAD_BYTES) -> Iterator[tuple[str, bytes | StorageError]]:
    """Read (key, size) objects in order, each as its bytes or the StorageError that stopped it.

    From S3, up to `max_in_flight` reads (and about `max_bytes` of objects, by their listed sizes) run ahead on
    threads while the caller works on the ones already read. A local folder is read in the caller's thread:
    there the round trip is a page-cache copy.
    """
    if storage.is_local:
        for key, _ in objects:
            yield key, _read_or_error(storage, key)
        return
    pending: deque[tuple[str, int, Future[bytes | StorageError]]] = deque()
    in_flight_bytes = 0
    todo = iter(objects)
    exhausted = False
    with io_threads(max_in_flight) as pool:
        while True:
            while not exhausted and len(pending) < max_in_flight and (not pending or in_flight_bytes < max_bytes):
                item = next(todo, None)
                if item is None:
                    exhausted = True
                    break
                key, size = item
                pending.append((key, size, pool.submit(_read_or_error, storage, key)))
                in_flight_bytes += size
            if not pending:
                return
            key, size, future = pending.popleft()
            in_flight_bytes -= size
            yield key, future.result()


def write_objects(storage: Storage, objects: Iterable[tuple[str, bytes | memoryview | pa.Buffer]]) -> None:
    """Write several objects at once (each atomically, as `write_bytes`); raises the first failure once all ended.

    The writes overlap: on S3 each PUT is a round trip, and locally each file's fsync waits for the disk.
    """
    objects = list(objects)
    if len(objects) < 2:
        for key, data in objects:
            storage.write_bytes(key, data)
        return
    with io_threads(min(IO_THREADS, len(objects))) as pool:
        futures = [pool.submit(storage.write_bytes, key, data) for key, data in objects]
        failures = [future.exception() for future in futures]
    for failure in failures:
        if failure is not None:
            raise failure
