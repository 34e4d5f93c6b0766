"""Moving a lake to the current format: format 2 kept an event delivered in two spellings as two events.

Format 2 told events apart by the bytes of each record alone, so the same event delivered again with its keys in
another order (or a number spelt otherwise) was stored twice. Migrating compares, within each partition, the rows
that share an eventID by content, rewrites each file holding a later JSON-equal copy without it, keeps the dropped
copies' byte hashes as the partition's aliases (so their raw files still verify), then records format 3.
A killed migration leaves format 2 and every event at least once; running it again finishes the work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trailsight.convert.records import Partition
from trailsight.errors import TrailsightError
from trailsight.lake.derived import Deriver, derived_tables
from trailsight.lake.layout import (
    FORMAT_KEY,
    LAKE_FORMAT,
    TABLES,
    lake_partitions,
    partition_key,
    require_lake,
)
from trailsight.lake.lock import lake_lock
from trailsight.lake.writer import FileToWrite, _hash_of_hashes, content_of, write_aliases, write_files
from trailsight.storage.store import Storage, as_storage


@dataclass
class MigrationSummary:
    lake: str
    from_format: int | None
    partitions: int = 0
    duplicates_removed: int = 0
    files_rewritten: int = 0


def migrate_lake(lake: str | Storage) -> MigrationSummary:
    """Bring a format-2 lake to format 3 (a format-3 lake is left as it is)."""
    lake = as_storage(lake)
    require_lake(lake)
    with lake_lock(lake, "migrate"):
        found = orjson.loads(lake.read_bytes(FORMAT_KEY)).get("format") if lake.exists(FORMAT_KEY) else None
        summary = MigrationSummary(lake.url, found)
        if found == LAKE_FORMAT["format"]:
            return summary
        if found != 2:
            raise TrailsightError(f"the lake {lake.url} has format {found or 1}; only format 2 can be migrated "
                                  f"(earlier lakes hashed events differently): ingest into a new lake")
        deriver = Deriver()
        try:
            for table in TABLES:
                for partition in lake_partitions(lake, table):
                    summary.partitions += 1
                    _remove_equal_copies(lake, partition, deriver, summary)
        finally:
            deriver.close()
        lake.write_bytes(FORMAT_KEY, orjson.dumps(LAKE_FORMAT, option=orjson.OPT_INDENT_2))
    return summary


def _remove_equal_copies(lake: Storage, partition: Partition, deriver: Deriver, summary: MigrationSummary) -> None:
    keys = sorted(obj.key for obj in lake.list_files(partition_key(partition)) if obj.key.endswith(".parquet"))
    ids = {key: pc.fill_null(pq.read_table(lake.path(key), columns=["eventid"], filesystem=lake.fs)
                             .column("eventid"), "") for key in keys}
    if not keys:
        return
    counts = pc.value_counts(pa.chunked_array([c for column in ids.values() for c in column.chunks], pa.string()))
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if not len(repeated):
        return
    seen: set[int] = set()
    for key in keys:
        rows = pq.read_table(lake.path(key), filesystem=lake.fs)
        suspects = np.flatnonzero(pc.is_in(ids[key], value_set=repeated).to_numpy(zero_copy_only=False))
        dropped = [index for index, row in zip(suspects.tolist(), rows.take(pa.array(suspects)).to_pylist(),
                                                strict=True)
                   if _seen_before(content_of(row), seen)]
        if not dropped:
            continue
        keep = np.ones(rows.num_rows, dtype=bool)
        keep[dropped] = False
        kept = rows.filter(pa.array(keep))
        if kept.num_rows:
            hashes = kept.column("eventhash").to_numpy()
            new_key = f"{partition_key(partition)}/part-{_hash_of_hashes(hashes)}.parquet"
            write_files(lake, [FileToWrite(new_key, partition, [kept], np.arange(kept.num_rows))], deriver)
        write_aliases(lake, partition, rows.column("eventhash").to_numpy()[dropped])
        lake.delete(key)
        for derived in derived_tables().values():
            lake.delete(derived.key(key))
        summary.duplicates_removed += len(dropped)
        summary.files_rewritten += 1


def _seen_before(content: int, seen: set[int]) -> bool:
    if content in seen:
        return True
    seen.add(content)
    return False
