"""Stage 3, the lake: partitioned Parquet written so that it is never seen half-done.

Layout under the lake root:
  <table>/event_date=YYYY-MM-DD/account=<id>/part-<hash>.parquet   the data, sorted by region, then time
  _derived/<name>/<version>/event_date=…/account=…/part-<hash>.parquet   per data file, for the reports
  _quarantine/<source key>.json                                          what could not be converted
  _trailsight/lock, _trailsight/runs/<run>.json                          the lock and run summaries
  _trailsight/format.json                                                the layout and how identities are made

A partition only ever gains whole files, each written atomically and holding only events the partition
does not have yet (by `eventhash`), so a killed run leaves complete files and a re-run writes nothing new."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import shutil
import signal
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

import orjson
import pyarrow as pa

from trailsight.convert.records import (
    DEFAULT_MAX_UNCOMPRESSED,
    BatchConverter,
    ConvertedFile,
    Partition,
)
from trailsight.errors import StorageError, TrailsightError
from trailsight.lake.layout import RUNS_PREFIX, check_lake_format
from trailsight.lake.lock import lake_lock
from trailsight.lake.writer import MAX_BUFFERED_ROWS, PartitionWriter, RowPiece, write_quarantine
from trailsight.source.discovery import Discovery, LogObject, discover
from trailsight.storage.lock import pid_alive
from trailsight.storage.store import Storage, as_storage, printable_key, read_objects

SPILL_PREFIX = "trailsight-ingest-"


LATE_HOURS = 3


BATCH_BYTES = 1024 * 1024


BATCH_FILES = 256


# Batches queued per worker: enough that workers keep converting while the parent writes a partition.
IN_FLIGHT_PER_WORKER = 4




"""Converted rows in memory, or the path of the Arrow file they were spilled to by a worker process."""


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


def _skipped_files(found: Discovery, start: date | None, end: date | None, late_hours: int) -> list[ConvertedFile]:
    """The log files of the range that cannot be taken (a name that is not UTF-8), as files quarantined with
    their reason, under a printable form of their key."""
    reasons = {obj.key: reason for obj, reason in found.skipped}
    chosen = select_event_files(Discovery([obj for obj, _ in found.skipped], [], []), start, end, late_hours)
    return [ConvertedFile(printable_key(obj.key), file_error=reasons[obj.key]) for obj in chosen]


@cache
def _worker_storage(url: str) -> Storage:
    return Storage(url)


@dataclass
class ConvertedBatch:
    files: list[ConvertedFile]
    pieces: dict[Partition, RowPiece]


def in_partition_order(files: list[LogObject]) -> list[LogObject]:
    """The files by account, delivery day, then region: a partition (an account's day) is read in one stretch,
    so the writer completes it before it must flush, and writes it once."""
    return sorted(files, key=lambda obj: (obj.account, obj.delivery_date or date.min, obj.region, obj.key))


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


# How often a worker checks that the ingest that started it is still there.
OWNER_POLL_SECONDS = 0.5


def _worker_init(environment: dict[str, str], owner: int) -> None:
    """Prepare a worker: the run's environment (credentials, endpoints) and the faster memory pool, and a watch
    on the ingest process `owner`.

    A forkserver's workers inherit the environment the server started with, which can be older than the run's.
    """
    threading.Thread(target=_exit_with, args=(owner,), name="owner-watch", daemon=True).start()
    os.environ.clear()
    os.environ.update(environment)
    pool = _fast_memory_pool()
    if pool is not None:
        pa.set_memory_pool(pool)


def _exit_with(owner: int) -> None:
    """End this worker, and the forkserver that forked it, once the ingest is gone (killed: nothing else would
    ever tell them, and they would wait for work forever holding their memory)."""
    server = os.getppid()
    while pid_alive(owner):
        time.sleep(OWNER_POLL_SECONDS)
    if server not in (owner, 1):
        with contextlib.suppress(OSError):
            os.kill(server, signal.SIGKILL)
    os._exit(1)


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
    # Reads run ahead of conversion (from S3, dozens at a time): the network's waits overlap the CPU's work.
    for obj, (_, data) in zip(objs, read_objects(source, [(obj.key, obj.size) for obj in objs]), strict=True):
        if isinstance(data, StorageError):
            files.append(ConvertedFile(obj.key, file_error=f"cannot read: {data}"))
            continue
        files.append(converter.add(obj.key, data, obj.account, obj.region))
        del data
    return ConvertedBatch(files, {partition: RowPiece.of(rows, spill_folder)
                                  for partition, rows in converter.tables().items()})


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


# (files done, files in all, events read so far): enough for a rate and the time left.
ProgressCallback = Callable[[int, int, int], None]


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
    skipped = _skipped_files(found, start, end, late_hours)
    summary.files_found = len(files) + len(skipped)
    summary.digests_found = sum(1 for d in found.digests if end is None or (d.delivery_date or end) <= end)
    summary.other_objects = len(found.others)
    with lake_lock(lake, f"ingest {start or 'all'}..{end or 'all'} from {source.url}"), _ingest_memory_pool():
        check_lake_format(lake, claim=True)
        remove_stale_spills()
        for converted in skipped:
            summary.count(converted)
            summary.quarantine.append(write_quarantine(lake, converted) or converted.key)
        groups = batches(in_partition_order(files))
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
                    on_progress(done, len(files), summary.events_read)
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
                               initargs=(dict(os.environ), os.getpid()))
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
            if pid.isdigit() and not pid_alive(int(pid)):
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
