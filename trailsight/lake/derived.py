"""Derived tables: small tables kept beside each data file, which the daily reports read instead of the events.

Each `sql/derived/<name>.sql` is a query over the `cloudtrail` table (and the shared views) whose result can be
computed one data file at a time: a filter (security_flags) or counts that add up (insight_minutes,
failure_kinds). The lake writer runs them on the rows it holds in memory, just before it writes the data file,
so they cost no extra read; a report then reads a day's kilobytes of them instead of megabytes of events, and
28 days of per-minute history instead of 28 days of columns.

A derived file is stored as `_derived/<name>/<version>/event_date=…/account=…/<data file name>`: named
after the data file it summarises, and versioned by a hash of the SQL that made it, so it always matches its data
file and a changed definition never reads stale results. A data file without its derived file (a lake written
before the table existed, a run killed between the two writes) is derived when a query needs it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date
from functools import cache

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from trailsight.convert.records import Partition
from trailsight.errors import StorageError
from trailsight.query.sqlfiles import SqlFile, create_views, load_derived, load_views, prepare_connection
from trailsight.schema import arrow_schema, load_schema, partition_schema
from trailsight.storage.store import Storage, write_objects

DERIVED_PREFIX = "_derived"
PARTITION_COLUMNS = tuple(p.name for p in load_schema().partitions)


@dataclass(frozen=True)
class DerivedTable:
    name: str
    query: SqlFile
    version: str

    def key(self, data_key: str) -> str:
        """Where the derived file of a data file (`<table>/event_date=…/…/part-….parquet`) is kept."""
        return f"{self.prefix}/{data_key.split('/', 1)[1]}"

    @property
    def prefix(self) -> str:
        return f"{DERIVED_PREFIX}/{self.name}/{self.version}"


@cache
def derived_tables() -> dict[str, DerivedTable]:
    """The derived tables by name; a version changes with the table's SQL or any shared view it may read."""
    views = "".join(view.sql for view in load_views())
    return {query.name: DerivedTable(query.name, query,
                                     hashlib.sha256((query.sql + views).encode()).hexdigest()[:12])
            for query in load_derived()}


DataFile = tuple[str, Partition]


class Deriver:
    """Computes derived tables on one DuckDB connection, a batch of data files per query.

    A query costs tens of milliseconds before its first row (the security flags are a large expression), so
    data files are derived together; their partitions must differ, since a derived row knows its partition but
    not its file. Single-threaded: during ingest the conversion workers already have every core.
    """

    def __init__(self) -> None:
        self.con = duckdb.connect(config={"threads": 1})
        prepare_connection(self.con)
        # DuckDB turns a long IN list into a join; over one batch of rows the join's setup costs more than the
        # list (the security flags have twenty such lists: a third of their time).
        self.con.execute("SET disabled_optimizers = 'in_clause'")
        self.con.register("trailsight_rows", _no_rows())
        self.con.execute("CREATE VIEW cloudtrail AS SELECT * FROM trailsight_rows")
        create_views(self.con)

    def derive(self, rows: pa.Table | ds.Dataset, names: tuple[str, ...] | None = None) -> dict[str, pa.Table]:
        """The derived tables of rows that carry their partition columns (in memory, or a Hive dataset)."""
        tables = derived_tables()
        self.con.register("trailsight_rows", rows)
        try:
            return {name: self.con.sql(tables[name].query.sql).to_arrow_table() for name in names or tables}
        finally:
            self.con.register("trailsight_rows", _no_rows())

    def write(self, lake: Storage, files: list[tuple[str, Partition, pa.Table]]) -> None:
        """Write the derived files of data files just written, from their rows (in distinct partitions)."""
        if files:
            rows = pa.concat_tables([with_partition_columns(table, partition) for _, partition, table in files],
                                    promote_options="default")
            self.keep(lake, rows, [(key, partition) for key, partition, _ in files])

    def keep(self, lake: Storage, rows: pa.Table | ds.Dataset, files: list[DataFile],
             names: tuple[str, ...] | None = None, required: bool = True) -> dict[str, pa.Table]:
        """Derive the rows of data files (in distinct partitions) and write each file's part; return the tables.

        Unless `required`, a lake that cannot be written is logged and the tables returned all the same.
        """
        derived = self.derive(rows, names)
        encoded = [(derived_tables()[name].key(data_key), parquet_bytes(part))
                   for name, result in derived.items() for data_key, part in split_by_partition(result, files)]
        try:
            write_objects(lake, encoded)  # together: their round trips (S3) or fsyncs (local) overlap
        except StorageError as exc:
            if required:
                raise
            logging.getLogger(__name__).info("derived files not all kept: %s", exc)
        return derived

    def close(self) -> None:
        self.con.close()


def _partition_columns(partitions: list[Partition]) -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array([p[1] for p in partitions], pa.date32()), pa.array([p[2] for p in partitions], pa.string())],
        names=list(PARTITION_COLUMNS))


@cache
def _no_rows() -> pa.Table:
    """No rows, shaped as the lake's (partition columns included): what the views read between batches."""
    schema = load_schema()
    return pa.schema([*arrow_schema(schema), *partition_schema(schema)]).empty_table()


def with_partition_columns(rows: pa.Table, partition: Partition) -> pa.Table:
    """A data file's rows with its partition's values as columns, as a query over the lake sees them."""
    constants = _partition_columns([partition])
    for name in PARTITION_COLUMNS:
        rows = rows.append_column(name, pa.repeat(constants.column(name)[0], rows.num_rows))
    return rows


def split_by_partition(result: pa.Table, files: list[DataFile]) -> list[tuple[str, pa.Table]]:
    """Each data file's rows of a derived table computed for several (one per partition)."""
    parts = []
    for data_key, (_, day, account) in files:
        mask = pc.and_(pc.equal(result["event_date"], pa.scalar(day, pa.date32())),
                       pc.equal(result["account"], account))
        parts.append((data_key, result.filter(mask)))
    return parts


def parquet_bytes(table: pa.Table) -> pa.Buffer:
    """A derived table as its file holds it: the partition columns are in the path."""
    sink = pa.BufferOutputStream()
    pq.write_table(table.drop_columns([c for c in PARTITION_COLUMNS if c in table.column_names]), sink,
                   compression="zstd")
    return sink.getvalue()


def existing_keys(lake: Storage, table: DerivedTable, days: set[date]) -> set[str]:
    """The derived files of `table` kept for the given event dates."""
    keys: set[str] = set()
    for day in sorted(days):
        keys |= {obj.key for obj in lake.list_files(f"{table.prefix}/event_date={day.isoformat()}")}
    return keys
