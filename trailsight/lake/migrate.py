"""Moving a lake to the current format (4): one folder per table, event date and account, region a column.

Formats 2 and 3 kept a folder per account, region and day: an organisation's day made thousands of tiny
partitions, each with its own small files. Format 2 also told events apart by their bytes alone, so an event
delivered again with its keys in another order was stored twice. Migrating moves each region folder's rows, with
their region as a column, into the account's day folder through the lake writer, which keeps each event once (by
bytes, and by content for rows sharing an eventID, keeping the dropped copies' byte hashes as aliases so their raw
files still verify); then the old folders are deleted and format 4 recorded. A killed migration leaves the old
format (which no reader or writer accepts) and every event at least once; running it again finishes the work.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pyarrow.parquet as pq

from trailsight.convert.records import Partition, with_region
from trailsight.errors import TrailsightError
from trailsight.lake.derived import derived_tables
from trailsight.lake.layout import (
    ALIASES_PREFIX,
    FORMAT_KEY,
    LAKE_FORMAT,
    MIGRATIONS,
    TABLES,
    lake_partitions,
    partition_key,
    read_hashes,
    require_lake,
    visible_names,
)
from trailsight.lake.lock import lake_lock
from trailsight.lake.writer import PartitionWriter, RowPiece, write_aliases
from trailsight.storage.store import Storage, as_storage


@dataclass
class MigrationSummary:
    lake: str
    from_format: int | None
    partitions: int = 0
    duplicates_removed: int = 0
    files_rewritten: int = 0


def migrate_lake(lake: str | Storage) -> MigrationSummary:
    """Bring a format-2 or format-3 lake to format 4 (a format-4 lake is left as it is)."""
    lake = as_storage(lake)
    require_lake(lake)
    with lake_lock(lake, "migrate"):
        found = orjson.loads(lake.read_bytes(FORMAT_KEY)).get("format") if lake.exists(FORMAT_KEY) else None
        summary = MigrationSummary(lake.url, found)
        if found == LAKE_FORMAT["format"]:
            return summary
        if found not in MIGRATIONS:
            raise TrailsightError(f"the lake {lake.url} has format {found or 1}; only formats "
                                  f"{' and '.join(map(str, MIGRATIONS))} can be migrated (earlier lakes hashed "
                                  f"events differently): ingest into a new lake")
        for table in TABLES:
            for partition in lake_partitions(lake, table):
                summary.partitions += 1
                _merge_regions(lake, partition, summary)
        lake.write_bytes(FORMAT_KEY, orjson.dumps(LAKE_FORMAT, option=orjson.OPT_INDENT_2))
    return summary


def _merge_regions(lake: Storage, partition: Partition, summary: MigrationSummary) -> None:
    """Move the partition's `region=` folders into it, one old file at a time, then delete them."""
    folder = partition_key(partition)
    regions = [name for name in lake.list_dirs(folder) if name.startswith("region=")]
    if not regions:
        return
    writer = PartitionWriter(lake)
    old_keys: list[str] = []
    for name in regions:
        region = name.removeprefix("region=")
        listed = [obj.key for obj in lake.list_files(f"{folder}/{name}")]
        seen, _ = visible_names(key.rpartition("/")[2] for key in listed)
        for file_name in seen:
            rows = pq.read_table(lake.path(f"{folder}/{name}/{file_name}"), filesystem=lake.fs)
            writer.add(partition, RowPiece.of(with_region(rows, region), None))
        old_keys += listed
    writer.close()
    old_aliases = [obj.key for name in regions for obj in lake.list_files(f"{ALIASES_PREFIX}/{folder}/{name}")]
    aliases = read_hashes(lake, old_aliases)
    if len(aliases):
        write_aliases(lake, partition, aliases)
    for key in old_keys:  # the rows are in the partition's own files now: the old ones can go
        lake.delete(key)
        for table in derived_tables().values():
            lake.delete(table.key(key))
    for key in old_aliases:
        lake.delete(key)
    for name in regions:
        for emptied in (f"{folder}/{name}", f"{ALIASES_PREFIX}/{folder}/{name}",
                        *(table.key(f"{folder}/{name}") for table in derived_tables().values())):
            lake.remove_empty_folders(emptied)
    summary.duplicates_removed += writer.duplicates
    summary.files_rewritten += len(old_keys)
