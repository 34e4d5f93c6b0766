"""Ingest on an existing Dask cluster: conversion and writing on the cluster's workers, the same lake as one machine.

The calling process coordinates: it holds the lake's lock for the whole run, lists the source, and keeps the
accounts. The work runs in two waves of tasks:

1. convert: one task per batch of source files (batches never mix two source accounts or regions), which
   converts them with the single-machine conversion and stages each partition's rows as an Arrow file under
   `_trailsight/staging/<run>/` in the lake, where no reader looks;
2. write: every partition goes to exactly one task (partitions come from the events themselves, so two convert
   tasks can stage rows of one partition; they meet here), which de-duplicates against the partition's files
   and writes new ones with the single-machine writer. No two tasks ever write the same partition.

Data files appear whole (atomic writes), so a worker killed mid-run leaves nothing half-visible; Dask reruns its
tasks elsewhere, and a run that fails leaves only staging files, removed by the next run. Workers reach the
source and the lake themselves: S3 (credentials and endpoint from their own environment), or a folder they all
mount at the same path.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pyarrow as pa

from trailsight.convert.records import DEFAULT_MAX_UNCOMPRESSED, ConvertedFile, Partition
from trailsight.errors import TrailsightError, UsageError
from trailsight.lake.ingest import (
    LATE_HOURS,
    IngestSummary,
    _convert_batch,
    _record_run,
    batches,
    select_event_files,
)
from trailsight.lake.layout import check_lake_format, partition_key
from trailsight.lake.lock import lake_lock
from trailsight.lake.writer import MAX_BUFFERED_ROWS, PartitionWriter, RowPiece, load, write_quarantine
from trailsight.source.discovery import LogObject, discover
from trailsight.storage.store import Storage, as_storage

STAGING_PREFIX = "_trailsight/staging"
CONNECT_TIMEOUT = "20s"


@dataclass
class StagedBatch:
    """What one convert task did: its files' fate and where each partition's rows wait."""

    files: list[ConvertedFile]
    staged: dict[Partition, tuple[str, int]]


@dataclass
class WrittenPartitions:
    written: int
    duplicates: int
    files: list[str]


def shards(files: list[LogObject]) -> list[list[LogObject]]:
    """Batches of files (a few MB each, as on one machine), each from one source account and region."""
    by_place: dict[tuple[str, str], list[LogObject]] = defaultdict(list)
    for obj in files:
        by_place[(obj.account, obj.region)].append(obj)
    return [batch for place in sorted(by_place) for batch in batches(by_place[place])]


def convert_and_stage(source_url: str, lake_url: str, run: str, index: int, objs: list[LogObject],
                      max_uncompressed: int) -> StagedBatch:
    """A convert task: the single-machine conversion, each partition's rows staged as an Arrow file."""
    batch = _convert_batch((source_url, objs, max_uncompressed, None))
    lake = Storage(lake_url)
    staged = {}
    for partition, piece in batch.pieces.items():
        key = f"{STAGING_PREFIX}/{run}/{index:06d}/{partition_key(partition)}.arrow"
        rows = load(piece.rows)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, rows.schema) as writer:
            writer.write_table(rows)
        lake.write_bytes(key, sink.getvalue())
        staged[partition] = (key, rows.num_rows)
    return StagedBatch(batch.files, staged)


def write_partitions(lake_url: str, work: list[tuple[Partition, list[str]]],
                     max_rows: int = MAX_BUFFERED_ROWS) -> WrittenPartitions:
    """A write task: the staged rows of its partitions (theirs alone) through the single-machine writer."""
    lake = Storage(lake_url)
    writer = PartitionWriter(lake, max_rows)
    for partition, keys in work:
        for key in keys:
            rows = pa.ipc.open_file(pa.BufferReader(lake.read_bytes(key))).read_all()
            writer.add(partition, RowPiece.of(rows, None))
        writer.flush(partition)
        writer.write_round()
    writer.close()
    return WrittenPartitions(writer.written, writer.duplicates, writer.files_written)


def _write_tasks(staged: dict[Partition, list[tuple[str, int]]], count: int) -> list[list[tuple[Partition, list[str]]]]:
    """Partitions spread over `count` tasks of about equal rows, each partition in exactly one task."""
    tasks: list[list[tuple[Partition, list[str]]]] = [[] for _ in range(max(1, min(count, len(staged))))]
    rows = [0] * len(tasks)
    for partition in sorted(staged, key=lambda p: (-sum(n for _, n in staged[p]), p)):
        target = rows.index(min(rows))
        tasks[target].append((partition, [key for key, _ in staged[partition]]))
        rows[target] += sum(n for _, n in staged[partition])
    for task in tasks:
        task.sort()
    return [task for task in tasks if task]


def remove_staging(lake: Storage) -> None:
    """Staged rows of earlier runs (a failed run leaves them); only called with the lake's lock held."""
    for obj in lake.list_files(STAGING_PREFIX):
        lake.delete(obj.key)


def connect_cluster(address: str) -> Any:
    """A client of the Dask scheduler at `address` (`tcp://host:8786`), with a clear error when it is absent."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--dask needs dask's distributed package: pip install 'trailsight[dask]'") from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def ingest_on_cluster(
    source: str | Storage,
    lake: str | Storage,
    address: str,
    start: date | None = None,
    end: date | None = None,
    accounts: tuple[str, ...] = (),
    regions: tuple[str, ...] = (),
    late_hours: int = LATE_HOURS,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
) -> IngestSummary:
    """`ingest.ingest` with the conversion and the writing on the Dask cluster at `address`."""
    source = as_storage(source)
    lake = as_storage(lake)
    if source.is_local != lake.is_local:
        raise UsageError("on a cluster, source and lake are both S3 or both folders every worker mounts")
    began = time.monotonic()
    summary = IngestSummary(source.url, lake.url, start and start.isoformat(), end and end.isoformat())
    found = discover(source, start, end + timedelta(days=1) if end else None, accounts, regions)
    files = select_event_files(found, start, end, late_hours)
    summary.files_found = len(files)
    summary.digests_found = sum(1 for d in found.digests if end is None or (d.delivery_date or end) <= end)
    summary.other_objects = len(found.others)
    client = connect_cluster(address)
    try:
        with lake_lock(lake, f"ingest {start or 'all'}..{end or 'all'} from {source.url} on Dask {address}"):
            check_lake_format(lake, claim=True)
            remove_staging(lake)
            run = uuid.uuid4().hex
            try:
                staged = _convert(client, source, lake, run, shards(files), max_uncompressed, summary)
                workers = max(1, len(client.scheduler_info().get("workers", {})))
                tasks = _write_tasks(staged, 2 * workers)
                written = _wave(client, client.map(write_partitions, [lake.url] * len(tasks), tasks, pure=False))
            finally:
                remove_staging(lake)
            summary.events_written = sum(w.written for w in written)
            summary.duplicates = sum(w.duplicates for w in written)
            summary.partitions = sorted({key.rsplit("/", 1)[0] for w in written for key in w.files})
            summary.seconds = round(time.monotonic() - began, 3)
            _record_run(lake, summary)
    finally:
        client.close()
    if not summary.balanced:
        raise TrailsightError(f"event accounting does not balance: {summary.as_dict()}")
    return summary


def _wave(client: Any, futures: list[Any]) -> list[Any]:
    """The results of one wave of tasks. When a task fails, every other task of the wave is waited for before the
    error goes up: no task of this run may still be writing once the lake's lock is released."""
    try:
        return client.gather(futures)
    except Exception:
        client.gather(futures, errors="skip")
        raise


def _convert(client: Any, source: Storage, lake: Storage, run: str, groups: list[list[LogObject]],
             max_uncompressed: int, summary: IngestSummary) -> dict[Partition, list[tuple[str, int]]]:
    """Run the convert tasks, then count every file and quarantine what could not be converted, in input order
    (as on one machine: the same rows win among duplicates)."""
    futures = client.map(convert_and_stage, [source.url] * len(groups), [lake.url] * len(groups),
                         [run] * len(groups), range(len(groups)), groups, [max_uncompressed] * len(groups),
                         pure=False)
    staged: dict[Partition, list[tuple[str, int]]] = defaultdict(list)
    for batch in _wave(client, futures):
        for converted in batch.files:
            summary.count(converted)
            quarantine_key = write_quarantine(lake, converted)
            if quarantine_key:
                summary.quarantine.append(quarantine_key)
        for partition, piece in batch.staged.items():
            staged[partition].append(piece)
    return staged
