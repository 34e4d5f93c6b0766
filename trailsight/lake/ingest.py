"""Stage 3, the lake: partitioned Parquet written so that it is never seen half-done.

Layout under the lake root:
  <table>/event_date=YYYY-MM-DD/account=<id>/region=<name>/part-<hash>.parquet   the data
  _derived/<name>/<version>/event_date=…/account=…/region=…/part-<hash>.parquet   per data file, for the reports
  _quarantine/<source key>.json                                                  what could not be converted
  _trailsight/lock, _trailsight/runs/<run>.json                                  the lock and run summaries
  _trailsight/format.json                                                        how event identities are made

A partition only ever gains whole files, each written atomically and holding only events the partition
does not have yet (by `eventhash`), so a killed run leaves complete files and a re-run writes nothing new.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from trailsight.convert.records import (
    CLOUDTRAIL_TABLE,
    DEFAULT_MAX_UNCOMPRESSED,
    INSIGHTS_TABLE,
    BatchConverter,
    ConvertedFile,
    Partition,
)
from trailsight.errors import LakeLockedError, StorageError, TrailsightError
from trailsight.lake.derived import Deriver
from trailsight.schema import arrow_schema, load_schema
from trailsight.source.discovery import Discovery, LogObject, discover
from trailsight.storage.store import Storage, as_storage

TABLES = (CLOUDTRAIL_TABLE, INSIGHTS_TABLE)
LOCK_KEY = "_trailsight/lock"
RUNS_PREFIX = "_trailsight/runs"
QUARANTINE_PREFIX = "_quarantine"
SPILL_PREFIX = "trailsight-ingest-"
LATE_HOURS = 3
MAX_BUFFERED_ROWS = 64_000
BATCH_BYTES = 1024 * 1024
BATCH_FILES = 256
# Batches queued per worker: enough that workers keep converting while the parent writes a partition.
IN_FLIGHT_PER_WORKER = 4
# Dictionary encoding only where values repeat; free-form and unique columns gain nothing from it.
_UNIQUE_COLUMNS = {"eventid", "requestid", "requestparameters", "responseelements", "additionaleventdata",
                   "extrafields", "eventhash", "eventtime", "sharedeventid"}
_JSON_COLUMNS = {c.name for c in load_schema().data_columns if c.type == "json"}


def _leaf_columns(schema: pa.Schema) -> list[str]:
    """Parquet's dotted paths of the schema's leaf columns (`useridentity.arn`): Parquet options name leaves,
    and a struct's name alone leaves its fields without the option."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    return [column.path for column in pq.ParquetFile(sink.getvalue()).schema]


_LEAF_COLUMNS = _leaf_columns(arrow_schema(load_schema()))
PARQUET_OPTIONS = {
    "compression": "zstd",
    # Level 2 writes files the size of level 3's (within 0.1% on generated days) in 13% less time.
    "compression_level": 2,
    "use_dictionary": [path for path in _LEAF_COLUMNS if path.split(".")[0] not in _UNIQUE_COLUMNS],
    "row_group_size": 32 * 1024,
    # Minimum and maximum of JSON text prune nothing, and cost time to compute over values of tens of KB.
    "write_statistics": [path for path in _LEAF_COLUMNS if path.split(".")[0] not in _JSON_COLUMNS],
    # Rows are in time order, so a timestamp is a small step from the one before: 40% of the plain size,
    # and of what every report reads for its times.
    "column_encoding": {"eventtime": "DELTA_BINARY_PACKED"},
}


def partition_key(partition: Partition) -> str:
    table, day, account, region = partition
    return f"{table}/event_date={day.isoformat()}/account={account}/region={region}"


def partition_of(data_key: str) -> Partition:
    """The partition of a data file's key: the inverse of `partition_key`."""
    table, day, account, region = data_key.split("/")[:4]
    return (table, date.fromisoformat(day.removeprefix("event_date=")), account.removeprefix("account="),
            region.removeprefix("region="))


# --- the lock --------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def lake_lock(lake: Storage, purpose: str) -> Iterator[None]:
    """Hold the lake's write lock; a second writer is refused with who holds it."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat(),
              "purpose": purpose}
    payload = orjson.dumps(holder)
    if not lake.create_exclusive(LOCK_KEY, payload):
        try:
            current = orjson.loads(lake.read_bytes(LOCK_KEY))
        except (StorageError, orjson.JSONDecodeError):
            current = {}
        # Our own write can look like someone else's: when its reply is lost, the retried conditional PUT fails.
        ours = current == holder
        stale = current.get("host") == holder["host"] and not _pid_alive(int(current.get("pid", 0) or 0))
        if not (ours or (stale and _replace_stale_lock(lake, payload))):
            raise LakeLockedError(
                f"the lake {lake.url} is locked by another run ({current.get('purpose', '?')}, pid "
                f"{current.get('pid', '?')} on {current.get('host', '?')} since {current.get('since', '?')}); "
                f"wait for it to finish, or delete {lake.path(LOCK_KEY)} if that process is gone"
            )
    try:
        yield
    finally:
        lake.delete(LOCK_KEY)


def _replace_stale_lock(lake: Storage, payload: bytes) -> bool:
    """A lock left by a dead process on this host is taken over (a killed run must not block the next)."""
    lake.delete(LOCK_KEY)
    return lake.create_exclusive(LOCK_KEY, payload)


# --- the lake's format ------------------------------------------------------------------------------------

FORMAT_KEY = "_trailsight/format.json"
LAKE_FORMAT = {"format": 2, "eventhash": "xxh3-64 of each record's JSON text as delivered"}


def check_lake_format(lake: Storage, claim: bool = False) -> None:
    """Refuse a lake whose event identities were computed another way: de-duplicating against it would fail.

    Lakes written before the format was recorded (format 1, which hashed each event's key-sorted JSON) hold data
    but no format file. A lake with neither is new; `claim` records the format in it.
    """
    if lake.exists(FORMAT_KEY):
        found = orjson.loads(lake.read_bytes(FORMAT_KEY)).get("format")
        if found == LAKE_FORMAT["format"]:
            return
        raise TrailsightError(f"the lake {lake.url} has format {found!r}; this trailsight reads and writes format "
                              f"{LAKE_FORMAT['format']}: use the trailsight that wrote it, or a new lake")
    if any(next(iter(lake.list_files(table)), None) is not None for table in TABLES):
        raise TrailsightError(
            f"the lake {lake.url} was written by an earlier trailsight (lake format 1), whose event identities "
            f"(eventhash) this one computes differently, so it could neither de-duplicate against the lake nor "
            f"verify raw logs in it; ingest into a new lake (--lake) and remove this one")
    if claim:
        lake.write_bytes(FORMAT_KEY, orjson.dumps(LAKE_FORMAT, option=orjson.OPT_INDENT_2))


# --- writing partitions ----------------------------------------------------------------------------------


def partition_hashes(lake: Storage, partition: Partition) -> np.ndarray:
    """The sorted `eventhash` values of a partition's files: its events' identities, read column-only."""
    parts = [pq.read_table(lake.path(obj.key), columns=["eventhash"], filesystem=lake.fs).column("eventhash")
             .to_numpy() for obj in lake.list_files(partition_key(partition)) if obj.key.endswith(".parquet")]
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)


@cache
def _file_schema() -> pa.Schema:
    return arrow_schema(load_schema())


def _hash_of_hashes(hashes: np.ndarray) -> str:
    return hashlib.blake2b(np.sort(hashes).tobytes(), digest_size=8).hexdigest()


Rows = pa.Table | str
"""Converted rows in memory, or the path of the Arrow file they were spilled to by a worker process."""


def spill(rows: pa.Table, folder: str) -> str:
    """Write rows to an Arrow file in `folder` (the ingest's private temporary folder) and return its path.

    Rows cross from a conversion worker to a writing worker this way: the parent process, which decides what
    each file holds, never copies them, and they wait in the folder (shared memory, else the page cache), not
    in any process's heap.
    """
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".arrow", delete=False) as handle:
        path = handle.name
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
        writer.write_table(rows)
    return path


def load(rows: Rows) -> pa.Table:
    """Rows in memory; a spilled file is mapped, not read."""
    if isinstance(rows, str):
        return pa.ipc.open_file(pa.memory_map(rows)).read_all()
    return rows


@dataclass
class RowPiece:
    """Converted rows of one partition, with the two columns the writer decides on."""

    rows: Rows
    hashes: np.ndarray
    times: np.ndarray

    @classmethod
    def of(cls, rows: pa.Table, spill_folder: str | None) -> RowPiece:
        times = rows.column("eventtime").cast(pa.int64()).to_numpy()
        hashes = rows.column("eventhash").to_numpy()
        return cls(spill(rows, spill_folder) if spill_folder else rows, hashes, times)


@dataclass
class FileToWrite:
    """One data file the writer decided on: its key, and which buffered rows it holds, in order."""

    key: str
    partition: Partition
    pieces: list[Rows]
    order: np.ndarray


def write_files(lake: Storage, files: list[FileToWrite], deriver: Deriver, owner: int | None = None) -> None:
    """Write data files, then their derived files (together: one query per derived table for the lot).

    Runs in a worker process during a parallel ingest, so that encoding Parquet uses every core. `owner` is the
    process holding the lake's lock: once it is gone, a worker writes nothing more, since the next run may
    already have taken the lock over.
    """
    to_derive = []
    for file in files:
        if owner is not None and not _pid_alive(owner):
            raise TrailsightError(f"the ingest that holds the lake's lock (pid {owner}) is gone; not writing")
        rows = pa.concat_tables([load(piece) for piece in file.pieces]).take(pa.array(file.order))
        for piece in file.pieces:
            if isinstance(piece, str):
                os.unlink(piece)
        sink = pa.BufferOutputStream()
        pq.write_table(rows.cast(_file_schema()), sink, **PARQUET_OPTIONS)
        lake.write_bytes(file.key, sink.getvalue())
        del sink
        if file.partition[0] == CLOUDTRAIL_TABLE:
            to_derive.append((file.key, file.partition, rows))
        del rows
    # After the data files: a file that a crash leaves without its derived files is derived when read.
    deriver.write(lake, to_derive)
    del to_derive
    pa.default_memory_pool().release_unused()  # hand freed buffers back: the peak stays the rows in hand


@cache
def _process_deriver() -> Deriver:
    """A worker process's own DuckDB connection for derived tables, kept for the life of the pool."""
    return Deriver()


def _write_files_task(lake_url: str, files: list[FileToWrite], owner: int) -> None:
    write_files(_worker_storage(lake_url), files, _process_deriver(), owner)


class PartitionWriter:
    """Buffers converted rows per partition and writes them as de-duplicated, atomic Parquet files.

    Memory stays bounded: when more than `max_rows` rows are buffered, the largest partitions are flushed.
    The writer decides what each file holds (de-duplication needs every identity in one place); encoding
    and writing the files is handed to `pool`'s worker processes when there is one, one round at a time.
    """

    def __init__(self, lake: Storage, max_rows: int = MAX_BUFFERED_ROWS,
                 pool: ProcessPoolExecutor | None = None, workers: int = 1) -> None:
        self.lake = lake
        self.max_rows = max_rows
        self.pool = pool
        self.workers = workers
        self.buffers: dict[Partition, list[RowPiece]] = {}
        self.buffered: dict[Partition, int] = {}
        self.known: dict[Partition, np.ndarray] = {}
        self.written = 0
        self.duplicates = 0
        self.files_written: list[str] = []
        self.round: list[FileToWrite] = []
        self.writing: list[Future[None]] = []
        self.deriver: Deriver | None = None

    def add(self, partition: Partition, piece: RowPiece) -> None:
        self.buffers.setdefault(partition, []).append(piece)
        self.buffered[partition] = self.buffered.get(partition, 0) + len(piece.hashes)
        if sum(self.buffered.values()) > self.max_rows:
            # Flush the largest partitions down to half the budget: fewer, larger files than flushing one at a time.
            while sum(self.buffered.values()) > self.max_rows // 2:
                self.flush(max(self.buffered, key=self.buffered.__getitem__))
            self.write_round()

    def _existing_hashes(self, partition: Partition) -> np.ndarray:
        if partition not in self.known:
            self.known[partition] = partition_hashes(self.lake, partition)
        return self.known[partition]

    def flush(self, partition: Partition) -> None:
        """Decide the partition's next file: its new events, in time order, once each."""
        pieces = self.buffers.pop(partition, [])
        self.buffered.pop(partition, None)
        if not pieces:
            return
        hashes = np.concatenate([piece.hashes for piece in pieces])
        _, first = np.unique(hashes, return_index=True)
        existing = self._existing_hashes(partition)
        fresh = first[~np.isin(hashes[first], existing, assume_unique=True)] if len(existing) else first
        self.duplicates += len(hashes) - len(fresh)
        if not len(fresh):
            return
        times = np.concatenate([piece.times for piece in pieces])
        ordered = fresh[np.lexsort((hashes[fresh], times[fresh]))]
        new_hashes = hashes[ordered]
        key = f"{partition_key(partition)}/part-{_hash_of_hashes(new_hashes)}.parquet"
        self.round.append(FileToWrite(key, partition, [piece.rows for piece in pieces], ordered))
        self.known[partition] = np.sort(np.concatenate([existing, new_hashes]))
        self.written += len(ordered)
        self.files_written.append(key)

    def write_round(self, shares: int = 1) -> None:
        """Write the files decided since the last round; in the pool, after the previous round has finished.

        The round goes to the pool as `shares` tasks of about equal rows, so that the last round, written when
        nothing is left to convert, keeps every worker busy.
        """
        files, self.round = self.round, []
        self._wait_for_writing()
        if not files:
            return
        if self.pool is None:
            self.deriver = self.deriver or Deriver()
            write_files(self.lake, files, self.deriver)
            return
        tasks: list[list[FileToWrite]] = [[] for _ in range(min(shares, len(files)))]
        for file in sorted(files, key=lambda f: -len(f.order)):
            min(tasks, key=lambda task: sum(len(f.order) for f in task)).append(file)
        self.writing = [self.pool.submit(_write_files_task, self.lake.url, task, os.getpid()) for task in tasks]

    def _wait_for_writing(self) -> None:
        writing, self.writing = self.writing, []
        for task in writing:
            task.result()

    def close(self) -> None:
        for partition in sorted(self.buffers):
            self.flush(partition)
        self.write_round(shares=self.workers)
        self._wait_for_writing()
        if self.deriver is not None:
            self.deriver.close()


# --- quarantine ------------------------------------------------------------------------------------------


def write_quarantine(lake: Storage, converted: ConvertedFile) -> str | None:
    """Keep what could not be converted, with the reason, under `_quarantine/<source key>.json`."""
    if converted.file_error is None and not converted.quarantined:
        return None
    entry = {
        "source": converted.key,
        "reason": converted.file_error,
        "records": [{"index": q.index, "reason": q.reason, "record": q.record} for q in converted.quarantined],
    }
    key = f"{QUARANTINE_PREFIX}/{converted.key}.quarantine.json"
    try:
        body = orjson.dumps(entry, option=orjson.OPT_INDENT_2)
    except (TypeError, orjson.JSONEncodeError):
        body = orjson.dumps({**entry, "records": [{"index": q.index, "reason": q.reason, "record": repr(q.record)}
                                                  for q in converted.quarantined]}, option=orjson.OPT_INDENT_2)
    lake.write_bytes(key, body)
    return key


# --- ingest ----------------------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    """What a run did; `events_read == events_written + duplicates + events_quarantined` always holds."""

    source: str
    lake: str
    start: str | None
    end: str | None
    files_found: int = 0
    files_converted: int = 0
    files_quarantined: int = 0
    digests_found: int = 0
    other_objects: int = 0
    events_read: int = 0
    events_written: int = 0
    duplicates: int = 0
    events_quarantined: int = 0
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    seconds: float = 0.0
    partitions: list[str] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)

    def count(self, converted: ConvertedFile) -> None:
        """Add one converted file's figures."""
        self.compressed_bytes += converted.compressed_bytes
        self.uncompressed_bytes += converted.uncompressed_bytes
        self.events_read += converted.records_read
        self.events_quarantined += len(converted.quarantined)
        if converted.file_error is None:
            self.files_converted += 1
        else:
            self.files_quarantined += 1

    @property
    def balanced(self) -> bool:
        return self.events_read == self.events_written + self.duplicates + self.events_quarantined

    def as_dict(self) -> dict:
        return {**asdict(self), "balanced": self.balanced}


def select_event_files(found: Discovery, start: date | None, end: date | None,
                       late_hours: int = LATE_HOURS) -> list[LogObject]:
    """Event files delivered in [start, end], plus the next day's first `late_hours` of deliveries.

    Folders are delivery dates: the last day's late events arrive after midnight. Files delivered later
    still are picked up by the next day's run and land in their own event date all the same.
    """
    if start is None or end is None:
        return list(found.event_files)
    cutoff = datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=late_hours)
    selected = []
    for obj in found.event_files:
        if obj.delivery_date is None:
            continue
        if obj.delivery_date <= end or (obj.delivered_at is None or obj.delivered_at < cutoff):
            selected.append(obj)
    return selected


@cache
def _worker_storage(url: str) -> Storage:
    return Storage(url)


@dataclass
class ConvertedBatch:
    files: list[ConvertedFile]
    pieces: dict[Partition, RowPiece]


def batches(files: list[LogObject]) -> list[list[LogObject]]:
    """Consecutive groups of files, so that per-task overhead is paid per few MB rather than per small file."""
    groups: list[list[LogObject]] = []
    size = 0
    for obj in files:
        if not groups or size >= BATCH_BYTES or len(groups[-1]) >= BATCH_FILES:
            groups.append([])
            size = 0
        groups[-1].append(obj)
        size += obj.size
    return groups


def _fast_memory_pool() -> pa.MemoryPool | None:
    """Arrow's jemalloc pool where this pyarrow has it.

    Ingest allocates and frees hundreds of MB of Arrow buffers over and over; with the default mimalloc pool
    on Linux the kernel's work of handing those pages out again cost as much as the Parquet encoding itself.
    """
    try:
        return pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowException):
        return None


@contextmanager
def _ingest_memory_pool() -> Iterator[None]:
    """Use the faster pool while ingesting; buffers keep the pool they came from, so restoring is safe."""
    pool = _fast_memory_pool()
    previous = pa.default_memory_pool()
    if pool is None or pool.backend_name == previous.backend_name:
        yield
        return
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _worker_init(environment: dict[str, str]) -> None:
    """Prepare a worker: the run's environment (credentials, endpoints) and the faster memory pool.

    A forkserver's workers inherit the environment the server started with, which can be older than the run's.
    """
    os.environ.clear()
    os.environ.update(environment)
    pool = _fast_memory_pool()
    if pool is not None:
        pa.set_memory_pool(pool)


ConvertTask = tuple[str, list[LogObject], int, str | None]
"""(source URL, the objects, the size limit of one object, the spill folder when converting in a worker)"""


def _convert_batch(args: ConvertTask) -> ConvertedBatch:
    # Converting makes millions of short-lived, acyclic objects (parsed JSON, rows): reference counting frees
    # them all, and the cyclic collector's repeated scans of the live ones cost a fifth of the time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _convert_objects(*args)
    finally:
        if enabled:
            gc.enable()


def _convert_objects(source_url: str, objs: list[LogObject], max_uncompressed: int,
                     spill_folder: str | None) -> ConvertedBatch:
    source = _worker_storage(source_url)
    converter = BatchConverter(max_uncompressed)
    files = []
    for obj in objs:
        try:
            data = source.read_bytes(obj.key)
        except StorageError as exc:
            files.append(ConvertedFile(obj.key, file_error=f"cannot read: {exc}"))
            continue
        files.append(converter.add(obj.key, data, obj.account, obj.region))
    return ConvertedBatch(files, {partition: RowPiece.of(rows, spill_folder)
                                  for partition, rows in converter.tables().items()})


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


ProgressCallback = Callable[[int, int], None]


def ingest(
    source: str | Storage,
    lake: str | Storage,
    start: date | None = None,
    end: date | None = None,
    accounts: tuple[str, ...] = (),
    regions: tuple[str, ...] = (),
    late_hours: int = LATE_HOURS,
    workers: int | None = None,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
    on_progress: ProgressCallback | None = None,
) -> IngestSummary:
    """Convert the CloudTrail files delivered for [start, end] (all when no dates) into the lake."""
    source = as_storage(source)
    lake = as_storage(lake)
    began = time.monotonic()
    summary = IngestSummary(source.url, lake.url, start and start.isoformat(), end and end.isoformat())
    scan_end = end + timedelta(days=1) if end else None
    found = discover(source, start, scan_end, accounts, regions)
    files = select_event_files(found, start, end, late_hours)
    summary.files_found = len(files)
    summary.digests_found = sum(1 for d in found.digests if end is None or (d.delivery_date or end) <= end)
    summary.other_objects = len(found.others)
    with lake_lock(lake, f"ingest {start or 'all'}..{end or 'all'} from {source.url}"), _ingest_memory_pool():
        check_lake_format(lake, claim=True)
        remove_stale_spills()
        groups = batches(files)
        workers = workers or default_workers()
        parallel = workers > 1 and len(groups) > 1
        # The pool closes first: its workers may still be spilling rows when a failure unwinds these.
        with _spill_folder(parallel) as spill_folder, _worker_pool(workers if parallel else 1) as pool:
            tasks: list[ConvertTask] = [(source.url, group, max_uncompressed, spill_folder) for group in groups]
            writer = PartitionWriter(lake, MAX_BUFFERED_ROWS, pool, workers)
            done = 0
            for batch in _converted(tasks, pool, workers):
                for converted in batch.files:
                    summary.count(converted)
                    quarantine_key = write_quarantine(lake, converted)
                    if quarantine_key:
                        summary.quarantine.append(quarantine_key)
                for partition, piece in batch.pieces.items():
                    writer.add(partition, piece)
                done += len(batch.files)
                if on_progress:
                    on_progress(done, len(files))
            writer.close()
        summary.events_written = writer.written
        summary.duplicates = writer.duplicates
        summary.partitions = sorted({key.rsplit("/", 1)[0] for key in writer.files_written})
        summary.seconds = round(time.monotonic() - began, 3)
        _record_run(lake, summary)
    if not summary.balanced:
        raise TrailsightError(f"event accounting does not balance: {summary.as_dict()}")
    return summary


@contextmanager
def _worker_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for converting and writing, or None when one process will do."""
    if workers == 1:
        yield None
        return
    # forkserver: safe when the caller has threads (a Prefect task, a progress bar), unlike a plain fork. The
    # server imports this module once, so the workers it forks start with pyarrow, DuckDB and msgspec loaded.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                               initargs=(dict(os.environ),))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a failure, queued batches are not converted


SHARED_MEMORY = Path("/dev/shm")
SHARED_MEMORY_MIN_FREE = 2 * 2**30


def spill_parent() -> Path:
    """Where spill folders go: TMPDIR when set, else shared memory when it has room, else the temporary folder.

    Shared memory keeps the rows in RAM without the file system's journal; measured here, a temporary folder on
    disk made the parallel ingest about 5% slower. Containers often give /dev/shm only 64 MB: then it is not used.
    """
    if "TMPDIR" not in os.environ and SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK):
        stats = os.statvfs(SHARED_MEMORY)
        if stats.f_bavail * stats.f_frsize >= SHARED_MEMORY_MIN_FREE:
            return SHARED_MEMORY
    return Path(tempfile.gettempdir())


def remove_stale_spills() -> None:
    """Remove the spill folders of runs that were killed: each is named after its run's process."""
    for parent in {SHARED_MEMORY, Path(tempfile.gettempdir())}:  # every place spill_parent() can choose
        for stale in parent.glob(f"{SPILL_PREFIX}*"):
            pid = stale.name.removeprefix(SPILL_PREFIX).split("-")[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def _spill_folder(needed: bool) -> Iterator[str | None]:
    """The run's private temporary folder for rows between processes (None when converting in this process)."""
    if not needed:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=spill_parent(),
                                     ignore_cleanup_errors=True) as folder:
        yield folder


def _converted(tasks: list[ConvertTask], pool: ProcessPoolExecutor | None, workers: int) -> Iterator[ConvertedBatch]:
    """Convert the batches, in the pool when there is one, yielding results in input order (reproducible runs).

    While the pool's processes start (the forkserver imports the libraries, about half a second), this process
    converts the first batches itself rather than wait. At most IN_FLIGHT_PER_WORKER batches per worker are in
    flight (a few MB each), so results never pile up.
    """
    if pool is None:
        yield from map(_convert_batch, tasks)
        return
    started = _start_workers(pool, workers)
    position = 0
    while position < len(tasks) and not started.is_set():
        yield _convert_batch(tasks[position])
        position += 1
    pending: deque[Future[ConvertedBatch]] = deque()
    for task in tasks[position:]:
        pending.append(pool.submit(_convert_batch, task))
        if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _worker_ready() -> None:
    """A task that only proves its worker has started."""


def _start_workers(pool: ProcessPoolExecutor, count: int) -> threading.Event:
    """Start the pool's processes from another thread; the event is set once they run (or failed to start)."""
    started = threading.Event()

    def start() -> None:
        try:
            wait([pool.submit(_worker_ready) for _ in range(count)])
        except RuntimeError:
            pass  # the pool broke or was shut down (the run failed): the run's own thread reports that
        finally:
            started.set()

    threading.Thread(target=start, name="trailsight-start-workers", daemon=True).start()
    return started


def _record_run(lake: Storage, summary: IngestSummary) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    lake.write_bytes(f"{RUNS_PREFIX}/{stamp}-ingest.json", orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2))


def _day_folders(lake: Storage, table: str, start: date | None, end: date | None) -> list[tuple[date, str]]:
    """A table's `event_date=` folders dated in [start, end] (unbounded when not given), in date order."""
    days = []
    for name in lake.list_dirs(table):
        try:
            day = date.fromisoformat(name.removeprefix("event_date="))
        except ValueError:
            continue
        if name.startswith("event_date=") and not ((start and day < start) or (end and day > end)):
            days.append((day, name))
    return sorted(days)


def lake_files(lake: Storage, table: str = CLOUDTRAIL_TABLE, start: date | None = None,
               end: date | None = None) -> list[str]:
    """Keys of a table's Parquet files, restricted to event dates in [start, end] when given."""
    return [o.key for _, folder in _day_folders(lake, table, start, end)
            for o in lake.list_files(f"{table}/{folder}") if o.key.endswith(".parquet")]


def lake_partitions(lake: Storage, table: str = CLOUDTRAIL_TABLE, start: date | None = None,
                    end: date | None = None) -> list[Partition]:
    """A table's partitions dated in [start, end], in date order, from its folders: no Parquet is opened."""
    return [(table, day, account.removeprefix("account="), region.removeprefix("region="))
            for day, folder in _day_folders(lake, table, start, end)
            for account in lake.list_dirs(f"{table}/{folder}")
            for region in lake.list_dirs(f"{table}/{folder}/{account}")]


DAYS_PREFIX = "_trailsight/days"


def mark_day_complete(lake: str | Storage, day: date, summary: dict) -> None:
    """Record that the daily job finished a day, so a backfill can skip it."""
    lake = as_storage(lake)
    lake.write_bytes(f"{DAYS_PREFIX}/{day.isoformat()}.json", orjson.dumps(summary, default=str))


def completed_days(lake: str | Storage) -> set[date]:
    lake = as_storage(lake)
    return {date.fromisoformat(o.key.rsplit("/", 1)[-1].removesuffix(".json"))
            for o in lake.list_files(DAYS_PREFIX) if o.key.endswith(".json")}
