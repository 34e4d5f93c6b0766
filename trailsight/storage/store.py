"""Storage behind one interface: a local folder or an S3 prefix, addressed by a path or URL.

Business code never branches on the scheme; it asks for keys relative to the location's root.
Writes are atomic: a reader sees the old object or the new one, never a partial file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
from botocore.exceptions import ClientError

from trailsight.errors import StorageError, TransientError, first_line
from trailsight.storage.aws import client, region_name, s3_endpoint

TRANSIENT_MARKERS = ("SlowDown", "503", "500 ", "InternalError", "ServiceUnavailable", "Throttl", "RequestTimeout",
                     "timed out", "Timeout", "Connection reset", "connection reset", "Broken pipe", "curlCode: 28",
                     "curlCode: 56", "curlCode: 7,")


def storage_error(message: str, exc: BaseException) -> StorageError:
    """A StorageError, or a TransientError when the cause is worth retrying."""
    text = str(exc)
    transient = any(marker in text for marker in TRANSIENT_MARKERS) or isinstance(exc, TimeoutError | ConnectionError)
    return (TransientError if transient else StorageError)(f"{message}: {first_line(exc)}")


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: `key` is relative to the storage root and uses `/`."""

    key: str
    size: int


def _s3_filesystem() -> pafs.S3FileSystem:
    kwargs: dict = {"region": region_name(), "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=8)}
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
            self.fs: pafs.FileSystem = _s3_filesystem()
            self.root = text.removeprefix("s3://").rstrip("/")
            self.is_local = False
        else:
            path = Path(text.removeprefix("file://")).expanduser().resolve()
            self.fs = pafs.LocalFileSystem()
            self.root = path.as_posix()
            self.is_local = True

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

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
            return self.fs.get_file_info(pafs.FileSelector(selector_path, recursive=recursive, allow_not_found=True))
        except OSError as exc:
            raise storage_error(f"cannot list {selector_path}", exc) from exc

    def list_dirs(self, key: str = "") -> list[str]:
        """Names of the sub-folders (common prefixes) directly under `key`, sorted."""
        infos = self._info(self.path(key), recursive=False)
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def list_files(self, key: str = "", recursive: bool = True) -> Iterator[ObjectInfo]:
        """Objects under `key`, sorted by key; hidden temporary files are skipped."""
        infos = self._info(self.path(key), recursive=recursive)
        files = [
            ObjectInfo(self.key_of(i.path), i.size or 0)
            for i in infos
            if i.type == pafs.FileType.File and not i.base_name.startswith(".")
        ]
        return iter(sorted(files, key=lambda o: o.key))

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
        try:
            return self.fs.get_file_info(self.path(key)).type != pafs.FileType.NotFound
        except OSError as exc:
            raise storage_error(f"cannot reach {self.path(key)}", exc) from exc

    def read_bytes(self, key: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.path(key), compression=None) as stream:
                return stream.read()
        except FileNotFoundError as exc:
            raise StorageError(f"no such object: {self.path(key)}") from exc
        except OSError as exc:
            raise storage_error(f"cannot read {self.path(key)}", exc) from exc

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
                with self.fs.open_output_stream(target, compression=None) as out:
                    out.write(data)
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
                self.fs.move(source, target)
        except FileNotFoundError as exc:
            raise StorageError(f"no such object: {source}") from exc
        except OSError as exc:
            raise storage_error(f"cannot move {source} to {target}", exc) from exc

    def delete(self, key: str) -> None:
        try:
            self.fs.delete_file(self.path(key))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(f"cannot delete {self.path(key)}", exc) from exc


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


# Requests in flight per process: a GET from S3 waits 15-50 ms on the network and costs well under a millisecond
# of CPU, so one process needs dozens in flight to keep converting (see bench/scale_bench.py).
IO_THREADS = 32


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
