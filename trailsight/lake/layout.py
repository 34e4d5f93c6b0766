"""Where things live in a lake: partition keys, the format marker, the days marked complete, listing data files."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from trailsight.convert.records import (
    CLOUDTRAIL_TABLE,
    INSIGHTS_TABLE,
    Partition,
)
from trailsight.errors import StorageError, TrailsightError
from trailsight.storage.store import Storage, as_storage

TABLES = (CLOUDTRAIL_TABLE, INSIGHTS_TABLE)


LOCK_KEY = "_trailsight/lock"


RUNS_PREFIX = "_trailsight/runs"


QUARANTINE_PREFIX = "_quarantine"


def partition_key(partition: Partition) -> str:
    table, day, account = partition
    return f"{table}/event_date={day.isoformat()}/account={account}"


def partition_of(data_key: str) -> Partition:
    """The partition of a data file's key: the inverse of `partition_key`."""
    table, day, account = data_key.split("/")[:3]
    return table, date.fromisoformat(day.removeprefix("event_date=")), account.removeprefix("account=")


FORMAT_KEY = "_trailsight/format.json"


LAKE_FORMAT = {"format": 4, "eventhash": "xxh3-64 of each record's JSON text as delivered; records sharing an "
                             "eventID are compared by content, and one JSON-equal to a stored event is a duplicate",
               "layout": "<table>/event_date=/account=/ folders; region is a column each file is sorted by"}
# What moving an earlier format to this one does, by format.
MIGRATIONS = {
    2: "kept an event delivered twice in different bytes (its keys in another order) as two, and had a folder per "
       "region; migrating removes such copies and merges each account's regions into its day's folder",
    3: "had a folder per account, region and day (thousands of tiny files a day in an organisation); migrating "
       "merges each account's regions into its day's folder, region becoming a column",
}
MIGRATE_COMMAND = "trailsight migrate --lake"


def require_lake(lake: Storage) -> None:
    """Refuse a location that holds no lake: a mistyped path must fail, not read as a lake without events."""
    lake.check_root()
    if not (lake.exists(FORMAT_KEY) or any(lake.exists(table) for table in TABLES)):
        raise StorageError(f"no trailsight lake at {lake.url} (neither {FORMAT_KEY} nor a table folder)")


def check_lake_format(lake: Storage, claim: bool = False) -> None:
    """Refuse a lake whose event identities were computed another way: de-duplicating against it would fail.

    Lakes written before the format was recorded (format 1, which hashed each event's key-sorted JSON) hold data
    but no format file. A lake with neither is new; `claim` records the format in it.
    """
    if lake.exists(FORMAT_KEY):
        found = orjson.loads(lake.read_bytes(FORMAT_KEY)).get("format")
        if found == LAKE_FORMAT["format"]:
            return
        if found in MIGRATIONS:
            raise TrailsightError(f"the lake {lake.url} has format {found}, which {MIGRATIONS[found]}; run "
                                  f"`{MIGRATE_COMMAND} {lake.url}` once to move it to format {LAKE_FORMAT['format']}")
        raise TrailsightError(f"the lake {lake.url} has format {found!r}; this trailsight reads and writes format "
                              f"{LAKE_FORMAT['format']}: use the trailsight that wrote it, or a new lake")
    if any(next(iter(lake.list_files(table)), None) is not None for table in TABLES):
        raise TrailsightError(
            f"the lake {lake.url} was written by an earlier trailsight (lake format 1), whose event identities "
            f"(eventhash) this one computes differently, so it could neither de-duplicate against the lake nor "
            f"verify raw logs in it; ingest into a new lake (--lake) and remove this one")
    if claim:
        lake.write_bytes(FORMAT_KEY, orjson.dumps(LAKE_FORMAT, option=orjson.OPT_INDENT_2))


# A partition's data files and which of them a reader sees. A compaction of epoch E writes `compacted-E-...` files
# holding exactly the rows of every file it replaces; ingests after it write `part-E-...` files. Readers see the
# newest complete compaction and the files written after it, never what it replaced, so the compaction's commit is
# one atomic step (the PUT or rename completing its set of files), and what it replaced can be deleted at leisure.
COMPACTED_NAME = re.compile(r"^compacted-(\d{6})-(\d{3})of(\d{3})-([0-9a-f]+)\.parquet$")


PART_NAME = re.compile(r"^part-(?:(\d{6})-)?[0-9a-f]+\.parquet$")


def compacted_name(epoch: int, number: int, count: int, digest: str) -> str:
    return f"compacted-{epoch:06d}-{number:03d}of{count:03d}-{digest}.parquet"


def part_name(epoch: int, digest: str) -> str:
    """An ingest's data file: after a compaction of epoch E, named with E so that readers see it beside it."""
    return f"part-{epoch:06d}-{digest}.parquet" if epoch else f"part-{digest}.parquet"


def committed_epoch(names: Iterable[str]) -> int:
    """The epoch of a partition's newest complete compaction (0 when none): all `count` files of one digest present.

    The digest names the compaction's rows, so files left by an interrupted attempt never complete another's set.
    """
    sets: dict[tuple[int, int, str], set[int]] = {}
    for name in names:
        match = COMPACTED_NAME.match(name)
        if match:
            sets.setdefault((int(match[1]), int(match[3]), match[4]), set()).add(int(match[2]))
    return max((epoch for (epoch, count, _), numbers in sets.items() if len(numbers) == count), default=0)


def visible_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """A partition's data files as (seen by readers, left over), from their names alone.

    Left over: what the committed compaction replaced, and the files of an attempt that never completed.
    """
    names = sorted(name for name in names if name.endswith(".parquet"))
    epoch = committed_epoch(names)
    complete = {name for name in names if (m := COMPACTED_NAME.match(name)) and int(m[1]) == epoch
                and committed_epoch(n for n in names if n.endswith(f"-{m[4]}.parquet")) == epoch}
    seen, left_over = [], []
    for name in names:
        compacted, part = COMPACTED_NAME.match(name), PART_NAME.match(name)
        if compacted:
            (seen if name in complete else left_over).append(name)
        elif part and int(part[1] or 0) < epoch:
            left_over.append(name)
        else:
            seen.append(name)
    return seen, left_over


def visible_keys(keys: Iterable[str]) -> list[str]:
    """The data files readers see among listed keys (several partitions), in key order."""
    folders: dict[str, list[str]] = {}
    for key in keys:
        folder, _, name = key.rpartition("/")
        folders.setdefault(folder, []).append(name)
    return sorted(f"{folder}/{name}" for folder, names in folders.items() for name in visible_names(names)[0])


def partition_files(lake: Storage, partition: Partition) -> tuple[list[str], int]:
    """The keys of a partition's data files that readers see, and the epoch its next files are named with."""
    folder = partition_key(partition)
    names = [obj.key.rpartition("/")[2] for obj in lake.list_files(folder, recursive=False)]
    return [f"{folder}/{name}" for name in visible_names(names)[0]], committed_epoch(names)


def read_hashes(lake: Storage, keys: list[str]) -> np.ndarray:
    """The sorted `eventhash` values of data files: their events' identities, read column-only."""
    parts = [pq.read_table(lake.path(key), columns=["eventhash"], filesystem=lake.fs).column("eventhash").to_numpy()
             for key in keys]
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)


def alias_keys(lake: Storage, partition: Partition) -> list[str]:
    """The alias files of a partition (see `alias_key`)."""
    return [obj.key for obj in lake.list_files(f"{ALIASES_PREFIX}/{partition_key(partition)}")
            if obj.key.endswith(".parquet")]


def partition_hashes(lake: Storage, partition: Partition) -> np.ndarray:
    """The sorted `eventhash` values a partition stands for: its visible files' (read column-only) and its
    aliases' (records delivered in other bytes that are JSON-equal to one of its events)."""
    return read_hashes(lake, partition_files(lake, partition)[0] + alias_keys(lake, partition))


ALIASES_PREFIX = "_trailsight/aliases"


def alias_key(partition: Partition, name: str) -> str:
    """Where the byte hashes of records dropped as JSON-equal to a stored event of the partition are kept."""
    return f"{ALIASES_PREFIX}/{partition_key(partition)}/alias-{name}.parquet"


def read_identities(lake: Storage, keys: list[str]) -> tuple[np.ndarray, pa.ChunkedArray]:
    """The sorted `eventhash` values and the eventID column of data files, read together (one read per file)."""
    tables = [pq.read_table(lake.path(key), columns=["eventhash", "eventid"], filesystem=lake.fs) for key in keys]
    hashes = np.sort(np.concatenate([t.column("eventhash").to_numpy() for t in tables])) if tables \
        else np.empty(0, np.int64)
    return hashes, pa.chunked_array([chunk for t in tables for chunk in t.column("eventid").chunks], pa.string())


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
    return visible_keys(o.key for _, folder in _day_folders(lake, table, start, end)
                        for o in lake.list_files(f"{table}/{folder}") if o.key.endswith(".parquet"))


def lake_partitions(lake: Storage, table: str = CLOUDTRAIL_TABLE, start: date | None = None,
                    end: date | None = None) -> list[Partition]:
    """A table's partitions dated in [start, end], in date order, from its folders: no Parquet is opened."""
    return [(table, day, account.removeprefix("account="))
            for day, folder in _day_folders(lake, table, start, end)
            for account in lake.list_dirs(f"{table}/{folder}") if account.startswith("account=")]


DAYS_PREFIX = "_trailsight/days"


def mark_day_complete(lake: str | Storage, day: date, summary: dict) -> None:
    """Record that the daily job finished a day, so a backfill can skip it."""
    lake = as_storage(lake)
    lake.write_bytes(f"{DAYS_PREFIX}/{day.isoformat()}.json", orjson.dumps(summary, default=str))


def day_summary(lake: str | Storage, day: date) -> dict | None:
    """What the daily job recorded when it finished `day`, or None when it has not."""
    lake = as_storage(lake)
    key = f"{DAYS_PREFIX}/{day.isoformat()}.json"
    return orjson.loads(lake.read_bytes(key)) if lake.exists(key) else None


def completed_days(lake: str | Storage) -> set[date]:
    lake = as_storage(lake)
    return {date.fromisoformat(o.key.rsplit("/", 1)[-1].removesuffix(".json"))
            for o in lake.list_files(DAYS_PREFIX) if o.key.endswith(".json")}
