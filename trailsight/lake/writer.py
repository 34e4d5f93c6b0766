"""Writing converted rows into the lake: de-duplicated per partition, sorted, Parquet, derived tables beside."""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from trailsight.convert.records import (
    CLOUDTRAIL_TABLE,
    REGION,
    ConvertedFile,
    Partition,
    content_identity,
    rebuild_event,
)
from trailsight.errors import StorageError, TrailsightError, first_line
from trailsight.lake.derived import Deriver
from trailsight.lake.layout import (
    QUARANTINE_PREFIX,
    alias_key,
    alias_keys,
    part_name,
    partition_files,
    partition_key,
    read_hashes,
    read_identities,
)
from trailsight.schema import arrow_schema, load_schema
from trailsight.storage.lock import pid_alive
from trailsight.storage.store import Storage, write_objects

# Rows in memory, or the path of an Arrow file they were spilled to.
SpillableRows = pa.Table | str

MAX_BUFFERED_ROWS = 64_000


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
    # Rows are in time order within a region, so a timestamp is a small step from the one before: 40% of the
    # plain size, and of what every report reads for its times.
    "column_encoding": {"eventtime": "DELTA_BINARY_PACKED"},
}


@cache
def _file_schema() -> pa.Schema:
    return arrow_schema(load_schema())


def parquet_file_bytes(rows: pa.Table) -> pa.Buffer:
    """Rows encoded as a lake data file: the lake's schema and Parquet options."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows.cast(_file_schema()), sink, **PARQUET_OPTIONS)
    return sink.getvalue()


def _hash_of_hashes(hashes: np.ndarray) -> str:
    return hashlib.blake2b(np.sort(hashes).tobytes(), digest_size=8).hexdigest()


def spill(rows: pa.Table, folder: str) -> str:
    """Write rows to an Arrow file in `folder` (the ingest's private temporary folder) and return its path.

    Rows cross from a conversion worker to a writing worker this way: the parent process, which decides what
    each file holds, never copies them, and they wait in the folder (shared memory, else the page cache), not
    in any process's heap.
    """
    try:
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".arrow", delete=False) as handle:
            path = handle.name
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
            writer.write_table(rows)
    except OSError as exc:
        raise StorageError(f"cannot spill rows to {folder} ({first_line(exc)}); free space there or point TMPDIR at "
                           "a larger folder") from None
    return path


def load(rows: SpillableRows) -> pa.Table:
    """Rows in memory; a spilled file is mapped, not read."""
    if isinstance(rows, str):
        return pa.ipc.open_file(pa.memory_map(rows)).read_all()
    return rows


def event_id_hashes(event_ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """xxh3-64 of each eventID (a missing one hashes as empty): where two records may be one event."""
    digest = xxhash.xxh3_64_intdigest
    values = event_ids.cast(pa.binary()).to_pylist()
    return np.array([digest(value or b"") for value in values], dtype=np.uint64).view(np.int64)


@dataclass
class RowPiece:
    """Converted rows of one partition, with the columns the writer decides on."""

    rows: SpillableRows
    hashes: np.ndarray
    times: np.ndarray
    ids: np.ndarray
    """`event_id_hashes` of the rows."""
    regions: np.ndarray
    """The rows' regions (strings), which a file is sorted by first."""

    @classmethod
    def of(cls, rows: pa.Table, spill_folder: str | None) -> RowPiece:
        times = rows.column("eventtime").cast(pa.int64()).to_numpy()
        hashes = rows.column("eventhash").to_numpy()
        ids = event_id_hashes(rows.column("eventid"))
        regions = rows.column(REGION).to_numpy().astype(str)
        return cls(spill(rows, spill_folder) if spill_folder else rows, hashes, times, ids, regions)


def content_of(row: dict) -> int:
    """`content_identity` of the event a lake row holds."""
    return content_identity(orjson.dumps(rebuild_event(row)))


def _rows_at(pieces: list[SpillableRows], lengths: list[int], indices: np.ndarray) -> list[dict]:
    """The rows at positions of the pieces taken end to end, as dicts, in the order asked."""
    starts = np.cumsum([0, *lengths])
    found = []
    for index in indices.tolist():
        number = int(np.searchsorted(starts, index, side="right")) - 1
        found.append(load(pieces[number]).slice(index - int(starts[number]), 1).to_pylist()[0])
    return found


@dataclass
class FileToWrite:
    """One data file the writer decided on: its key, and which buffered rows it holds, in order."""

    key: str
    partition: Partition
    pieces: list[SpillableRows]
    order: np.ndarray


def write_files(lake: Storage, files: list[FileToWrite], deriver: Deriver, owner: int | None = None) -> None:
    """Write data files, then their derived files (together: one query per derived table for the lot).

    Runs in a worker process during a parallel ingest, so that encoding Parquet uses every core. `owner` is the
    process holding the lake's lock: once it is gone, a worker writes nothing more, since the next run may
    already have taken the lock over.
    """
    to_derive = []
    encoded = []
    for file in files:
        if owner is not None and not pid_alive(owner):
            raise TrailsightError(f"the ingest that holds the lake's lock (pid {owner}) is gone; not writing")
        rows = pa.concat_tables([load(piece) for piece in file.pieces])
        if not np.array_equal(file.order, np.arange(rows.num_rows)):  # often already in time order, once each
            rows = rows.take(pa.array(file.order))
        for piece in file.pieces:
            if isinstance(piece, str):
                os.unlink(piece)
        encoded.append((file.key, parquet_file_bytes(rows)))
        if file.partition[0] == CLOUDTRAIL_TABLE:
            to_derive.append((file.key, file.partition, rows))
        del rows
    write_objects(lake, encoded)  # together: the files' round trips (S3) or fsyncs (local) overlap
    del encoded
    # After the data files: a file that a crash leaves without its derived files is derived when read.
    deriver.write(lake, to_derive)
    del to_derive
    pa.default_memory_pool().release_unused()  # hand freed buffers back: the peak stays the rows in hand


@cache
def _process_deriver() -> Deriver:
    """A worker process's own DuckDB connection for derived tables, kept for the life of the pool."""
    return Deriver()


def _write_files_task(lake_url: str, files: list[FileToWrite], owner: int) -> None:
    write_files(Storage(lake_url), files, _process_deriver(), owner)


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
        self.last_added: dict[Partition, int] = {}
        self.added = 0
        self.known: dict[Partition, np.ndarray] = {}
        self.known_ids: dict[Partition, np.ndarray] = {}
        self.aliases: list[tuple[Partition, np.ndarray]] = []
        self.aliases_writing: list[tuple[Partition, np.ndarray]] = []
        self.epochs: dict[Partition, int] = {}  # each partition's compaction epoch, which its new files are named with
        self.written = 0
        self.duplicates = 0
        self.files_written: list[str] = []
        self.round: list[FileToWrite] = []
        self.writing: list[Future[None]] = []
        self.deriver: Deriver | None = None

    def add(self, partition: Partition, piece: RowPiece) -> None:
        self.buffers.setdefault(partition, []).append(piece)
        self.buffered[partition] = self.buffered.get(partition, 0) + len(piece.hashes)
        self.added += 1
        self.last_added[partition] = self.added
        if sum(self.buffered.values()) > self.max_rows:
            # Flush down to half the budget, the partitions that gained no rows for longest first: files arrive
            # sorted by account and day (ingest.in_partition_order), so those are complete and make one file each
            # for the run, where flushing the largest wrote the partitions still filling, several times over.
            for oldest in sorted(self.buffered, key=self.last_added.__getitem__):
                if sum(self.buffered.values()) <= self.max_rows // 2:
                    break
                self.flush(oldest)
            self.write_round()

    def _read_existing(self, partition: Partition) -> None:
        """What the partition already holds: one listing, one read of each visible file for both identities."""
        keys, self.epochs[partition] = partition_files(self.lake, partition)
        hashes, ids = read_identities(self.lake, keys)
        aliases = read_hashes(self.lake, alias_keys(self.lake, partition))
        self.known[partition] = np.sort(np.concatenate([hashes, aliases])) if len(aliases) else hashes
        self.known_ids[partition] = np.unique(event_id_hashes(ids))

    def _existing_hashes(self, partition: Partition) -> np.ndarray:
        if partition not in self.known:
            self._read_existing(partition)
        return self.known[partition]

    def _existing_ids(self, partition: Partition) -> np.ndarray:
        if partition not in self.known_ids:
            self._read_existing(partition)
        return self.known_ids[partition]

    def flush(self, partition: Partition) -> None:
        """Decide the partition's next file: its new events, in region then time order, once each."""
        pieces = self.buffers.pop(partition, [])
        self.buffered.pop(partition, None)
        self.last_added.pop(partition, None)
        if not pieces:
            return
        hashes = np.concatenate([piece.hashes for piece in pieces])
        _, first = np.unique(hashes, return_index=True)
        existing = self._existing_hashes(partition)
        fresh = first[~np.isin(hashes[first], existing, assume_unique=True)] if len(existing) else first
        fresh, aliases = self._without_equal_content(partition, pieces, fresh)
        self.duplicates += len(hashes) - len(fresh)
        if len(aliases):
            self.aliases.append((partition, aliases))
            existing = np.sort(np.concatenate([existing, aliases]))
        if not len(fresh):
            self.known[partition] = existing
            return
        times = np.concatenate([piece.times for piece in pieces])
        regions = np.concatenate([piece.regions for piece in pieces])
        ordered = fresh[np.lexsort((hashes[fresh], times[fresh], regions[fresh]))]
        new_hashes = hashes[ordered]
        key = f"{partition_key(partition)}/{part_name(self.epochs[partition], _hash_of_hashes(new_hashes))}"
        self.round.append(FileToWrite(key, partition, [piece.rows for piece in pieces], ordered))
        self.known[partition] = np.sort(np.concatenate([existing, new_hashes]))
        self.known_ids[partition] = np.union1d(self._existing_ids(partition),
                                               np.concatenate([piece.ids for piece in pieces])[ordered])
        self.written += len(ordered)
        self.files_written.append(key)

    def _without_equal_content(self, partition: Partition, pieces: list[RowPiece],
                               fresh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fresh rows less those JSON-equal to an event kept before them, and the byte hashes of those.

        Bytes that differ can still be one event (its keys in another order, a number spelt otherwise). Only rows
        whose eventID is already in the partition, or twice among the fresh rows, are compared by content: one
        lookup for the rest, the usual case.
        """
        ids = np.concatenate([piece.ids for piece in pieces])[fresh]
        values, counts = np.unique(ids, return_counts=True)
        suspect = np.isin(ids, values[counts > 1]) | np.isin(ids, self._existing_ids(partition))
        if not suspect.any():
            return fresh, np.empty(0, np.int64)
        candidates = np.sort(fresh[suspect])
        rows = _rows_at([piece.rows for piece in pieces], [len(piece.hashes) for piece in pieces], candidates)
        seen = {content_of(row) for row in
                partition_rows_with_ids(self.lake, partition, sorted({row["eventid"] or "" for row in rows}))}
        dropped = []
        for index, row in zip(candidates.tolist(), rows, strict=True):
            content = content_of(row)
            if content in seen:
                dropped.append(index)
            seen.add(content)
        if not dropped:
            return fresh, np.empty(0, np.int64)
        hashes = np.concatenate([piece.hashes for piece in pieces])
        return fresh[~np.isin(fresh, dropped)], hashes[dropped]

    def write_round(self, shares: int = 1) -> None:
        """Write the files decided since the last round; in the pool, after the previous round has finished.

        The round goes to the pool as `shares` tasks of about equal rows, so that the last round, written when
        nothing is left to convert, keeps every worker busy.
        """
        files, self.round = self.round, []
        aliases, self.aliases = self.aliases, []
        self._wait_for_writing()
        if not files:
            self._write_aliases(aliases)
            return
        if self.pool is None:
            self.deriver = self.deriver or Deriver()
            write_files(self.lake, files, self.deriver)
            self._write_aliases(aliases)
            return
        self.aliases_writing = aliases
        tasks: list[list[FileToWrite]] = [[] for _ in range(min(shares, len(files)))]
        for file in sorted(files, key=lambda f: -len(f.order)):
            min(tasks, key=lambda task: sum(len(f.order) for f in task)).append(file)
        self.writing = [self.pool.submit(_write_files_task, self.lake.url, task, os.getpid()) for task in tasks]

    def _wait_for_writing(self) -> None:
        writing, self.writing = self.writing, []
        for task in writing:
            task.result()
        aliases, self.aliases_writing = self.aliases_writing, []
        self._write_aliases(aliases)

    def _write_aliases(self, aliases: list[tuple[Partition, np.ndarray]]) -> None:
        """Record the byte hashes of records dropped as JSON-equal to a kept event, once that event's file is
        written: a re-delivery of the same bytes is then a duplicate at once, and the raw file verifies."""
        for partition, hashes in aliases:
            write_aliases(self.lake, partition, hashes)

    def close(self) -> None:
        for partition in sorted(self.buffers):
            self.flush(partition)
        self.write_round(shares=self.workers)
        self._wait_for_writing()
        if self.deriver is not None:
            self.deriver.close()


def write_aliases(lake: Storage, partition: Partition, hashes: np.ndarray) -> None:
    """A partition's alias file: eventhash values that stand for events the partition holds in other bytes."""
    table = pa.table({"eventhash": pa.array(np.sort(hashes), pa.int64())})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    lake.write_bytes(alias_key(partition, _hash_of_hashes(hashes)), sink.getvalue())


def partition_rows_with_ids(lake: Storage, partition: Partition, event_ids: list[str]) -> list[dict]:
    """The stored rows of a partition with one of these eventIDs (an empty one meaning none), from the files
    readers see."""
    wanted = pa.array([event_id for event_id in event_ids if event_id], pa.string())
    found = []
    for key in partition_files(lake, partition)[0]:
        rows = pq.read_table(lake.path(key), filesystem=lake.fs)
        ids = rows.column("eventid")
        keep = pc.or_(pc.is_in(ids, value_set=wanted), pc.is_null(ids)) if "" in event_ids else pc.is_in(
            ids, value_set=wanted)
        found += rows.filter(pc.fill_null(keep, False)).to_pylist()
    return found


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
