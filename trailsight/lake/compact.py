"""Compaction: a partition's small data files rewritten as few engine-sized ones, never seen half-done.

Each ingest run and each late delivery adds files to a partition; engines pay per object and per footer. A
compaction of a partition, under the lake's lock:

1. removes what earlier compactions left over (files they replaced, or an attempt that never committed);
2. streams the files readers see into `_trailsight/compacting/<partition>/compacted-E-iofn-<digest>.parquet`
   (files of about COMPACT_TARGET_BYTES; E is the partition's next epoch, the digest names the rows), checks
   that they hold exactly the old files' event identities, and writes their derived files (named after them);
3. renames them into the partition, in order: the last rename completes the set and is the commit; readers
   (lake/layout.py `visible_names`) see the complete set of the newest epoch and nothing it replaced, so no
   reader sees an event twice or not at all, whenever the process is killed;
4. deletes the replaced files and their derived files.

A partition that readers see as one file is left alone, so running it again changes nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from trailsight.convert.records import CLOUDTRAIL_TABLE, Partition
from trailsight.errors import TrailsightError
from trailsight.lake.derived import Deriver, derived_tables
from trailsight.lake.layout import (
    COMPACTED_NAME,
    TABLES,
    check_lake_format,
    committed_epoch,
    compacted_name,
    lake_partitions,
    partition_key,
    read_hashes,
    visible_names,
)
from trailsight.lake.lock import lake_lock
from trailsight.lake.writer import PARQUET_OPTIONS, _file_schema, _hash_of_hashes
from trailsight.schema import load_schema, partition_schema
from trailsight.storage.store import Storage, as_storage

# Parquet bytes per compacted file: what Athena and DuckDB read well (one footer per ~128 MB).
COMPACT_TARGET_BYTES = 128 * 2**20


STAGING_PREFIX = "_trailsight/compacting"


@dataclass
class CompactionSummary:
    """What a compaction did; `files_before` and `files_after` count the compacted partitions' data files."""

    lake: str
    start: str | None
    end: str | None
    partitions_seen: int = 0
    partitions_compacted: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    left_overs_removed: int = 0
    seconds: float = 0.0
    compacted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def compact(lake: str | Storage, start: date | None = None, end: date | None = None,
            target_bytes: int = COMPACT_TARGET_BYTES) -> CompactionSummary:
    """Compact every partition dated [start, end] (all when not given) that readers see as several files."""
    lake = as_storage(lake)
    began = time.monotonic()
    summary = CompactionSummary(lake.url, start and start.isoformat(), end and end.isoformat())
    lake.check_root()  # a mistyped lake is an error, not a new empty folder holding a lock
    with lake_lock(lake, f"compact {start or 'all'}..{end or 'all'}"):
        check_lake_format(lake)
        for staged in lake.list_files(STAGING_PREFIX):  # an interrupted run's files: never seen by readers
            lake.delete(staged.key)
        deriver = Deriver()
        try:
            for table in TABLES:
                for partition in lake_partitions(lake, table, start, end):
                    summary.partitions_seen += 1
                    compact_partition(lake, partition, deriver, summary, target_bytes)
        finally:
            deriver.close()
    summary.seconds = round(time.monotonic() - began, 3)
    return summary


def compact_partition(lake: Storage, partition: Partition, deriver: Deriver, summary: CompactionSummary,
                      target_bytes: int = COMPACT_TARGET_BYTES) -> None:
    """Compact one partition (the caller holds the lake's lock)."""
    folder = partition_key(partition)
    sizes = {obj.key.rpartition("/")[2]: obj.size for obj in lake.list_files(folder, recursive=False)}
    seen, left_over = visible_names(sizes)
    _check_replaced(lake, folder, seen, [name for name in left_over if not COMPACTED_NAME.match(name)])
    _remove(lake, partition, [f"{folder}/{name}" for name in left_over])
    summary.left_overs_removed += len(left_over)
    if len(seen) < 2:
        return
    old_keys = [f"{folder}/{name}" for name in seen]
    expected = read_hashes(lake, old_keys)
    digest = _hash_of_hashes(expected)
    epoch = committed_epoch(sizes) + 1
    groups = _groups(seen, sizes, target_bytes)
    staged = []
    for number, group in enumerate(groups, start=1):
        name = compacted_name(epoch, number, len(groups), digest)
        staged_key = f"{STAGING_PREFIX}/{folder}/{name}"
        _stream_into(lake, [f"{folder}/{old}" for old in group], staged_key)
        staged.append((staged_key, f"{folder}/{name}"))
    found = read_hashes(lake, [key for key, _ in staged])
    if not np.array_equal(found, expected):
        for key, _ in staged:
            lake.delete(key)
        raise TrailsightError(f"compacting {folder}: the new files hold {len(found):,} events, the old "
                              f"{len(expected):,}, or other ones; nothing was changed")
    if partition[0] == CLOUDTRAIL_TABLE:
        for staged_key, final_key in staged:  # before the commit: a derived file is only read beside its data file
            rows = ds.dataset([lake.path(staged_key)], filesystem=lake.fs, format="parquet",
                              partitioning=ds.partitioning(partition_schema(load_schema()), flavor="hive"),
                              partition_base_dir=lake.path(f"{STAGING_PREFIX}/{partition[0]}"))
            deriver.keep(lake, rows, [(final_key, partition)])
    for staged_key, final_key in staged:  # the last rename completes the set: the commit
        lake.move(staged_key, final_key)
    _remove(lake, partition, old_keys)
    summary.partitions_compacted += 1
    summary.files_before += len(seen)
    summary.files_after += len(staged)
    summary.rows += len(expected)
    summary.compacted.append(folder)


def _check_replaced(lake: Storage, folder: str, seen: list[str], replaced: list[str]) -> None:
    """Refuse to delete replaced files holding events that the files readers see lack.

    Only a writer that names its files without the partition's epoch (`layout.part_name`) can cause this.
    """
    if not replaced:
        return
    missing = np.setdiff1d(read_hashes(lake, [f"{folder}/{name}" for name in replaced]),
                           read_hashes(lake, [f"{folder}/{name}" for name in seen]))
    if len(missing):
        raise TrailsightError(f"{folder}: {len(missing):,} events of files a compaction replaced are in no file "
                              f"readers see (a writer named its files without the partition's epoch); nothing "
                              f"was deleted")


def _groups(names: list[str], sizes: dict[str, int], target_bytes: int) -> list[list[str]]:
    """Consecutive files in groups of about `target_bytes` (one file above it makes a group on its own)."""
    groups: list[list[str]] = [[]]
    total = 0
    for name in names:
        if groups[-1] and total + sizes[name] > target_bytes:
            groups.append([])
            total = 0
        groups[-1].append(name)
        total += sizes[name]
    return groups


ROW_GROUP_ROWS = PARQUET_OPTIONS["row_group_size"]


WRITER_OPTIONS = {k: v for k, v in PARQUET_OPTIONS.items() if k != "row_group_size"}


def _stream_into(lake: Storage, keys: list[str], target_key: str) -> None:
    """Copy the rows of data files into one new file, a row group at a time: memory stays a few row groups."""
    schema = _file_schema()
    path = lake.path(target_key)
    if lake.is_local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    pending: list[pa.Table] = []
    pending_rows = 0
    with lake.fs.open_output_stream(path, compression=None) as sink, \
            pq.ParquetWriter(sink, schema, **WRITER_OPTIONS) as writer:
        for key in keys:
            source = pq.ParquetFile(lake.path(key), filesystem=lake.fs)
            for group in range(source.num_row_groups):
                rows = source.read_row_group(group).cast(schema)
                pending.append(rows)
                pending_rows += rows.num_rows
                if pending_rows >= ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                    pending, pending_rows = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
    if lake.is_local:
        with open(path, "rb+") as written:  # on disk before the rename that commits it
            os.fsync(written.fileno())


def _remove(lake: Storage, partition: Partition, keys: list[str]) -> None:
    """Delete data files and their derived files (after a commit, or files no reader sees)."""
    for key in keys:
        lake.delete(key)
        if partition[0] == CLOUDTRAIL_TABLE:
            for table in derived_tables().values():
                lake.delete(table.key(key))
