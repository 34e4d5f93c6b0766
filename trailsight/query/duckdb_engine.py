"""Stage 4, queries: DuckDB over the lake, with the views `cloudtrail` and `cloudtrail_insights`.

Partition columns come from the Hive-style folder names, so filters on event_date and account prune whole
folders; files are sorted by region, whose statistics prune row groups, and Parquet column pruning does the rest.
A local lake is read by DuckDB itself, and so is an S3 lake when DuckDB's httpfs extension is installed; without
it (it cannot be downloaded offline) an S3 lake is read through pyarrow datasets registered in DuckDB, which push
projections and filters down the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from trailsight.convert.records import CLOUDTRAIL_TABLE, INSIGHTS_TABLE, Partition
from trailsight.errors import QueryError, first_line
from trailsight.lake.derived import (
    DerivedTable,
    Deriver,
    derived_tables,
    existing_keys,
)
from trailsight.lake.layout import check_lake_format, lake_files, partition_of, require_lake
from trailsight.query.sqlfiles import create_views, prepare_connection
from trailsight.schema import TableSchema, duckdb_type, load_schema, partition_schema
from trailsight.storage.aws import region_name, s3_endpoint
from trailsight.storage.store import Storage, as_storage


def _empty_view_sql(schema: TableSchema) -> str:
    columns = [f'CAST(NULL AS {duckdb_type(c)}) AS "{c.name}"' for c in (*schema.data_columns, *schema.partitions)]
    return f"SELECT {', '.join(columns)} WHERE false"


def _hive_types(schema: TableSchema) -> str:
    return "{" + ", ".join(f"'{p.name}': {duckdb_type(p)}" for p in schema.partitions) + "}"


def _view_sql(lake: Storage, table: str, schema: TableSchema) -> str:
    keys = lake_files(lake, table)
    if not keys:
        return _empty_view_sql(schema)
    scheme = "" if lake.is_local else "s3://"
    # The files listed, not a glob: a glob would also read what a compaction has replaced (lake/layout.py).
    # Every file carries the same schema, so no union_by_name: it would read every footer of the lake.
    listed = ", ".join(_quote(scheme + lake.path(key)) for key in keys)
    return f"SELECT * FROM read_parquet([{listed}], hive_partitioning = true, hive_types = {_hive_types(schema)})"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _httpfs_secret(con: duckdb.DuckDBPyConnection) -> bool:
    """Let DuckDB read S3 itself when its httpfs extension is installed (it cannot be downloaded here).

    Credentials come from the same AWS chain as boto3, the endpoint from the same settings as the rest.
    """
    try:
        con.execute("LOAD httpfs")
    except duckdb.Error:
        return False
    credentials = boto3.session.Session().get_credentials()
    options = {"TYPE": "s3", "REGION": _quote(region_name())}
    if credentials:
        frozen = credentials.get_frozen_credentials()
        options.update(KEY_ID=_quote(frozen.access_key), SECRET=_quote(frozen.secret_key))
        if frozen.token:
            options["SESSION_TOKEN"] = _quote(frozen.token)
    endpoint = s3_endpoint()
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options.update(ENDPOINT=_quote(host.rstrip("/")), URL_STYLE="'path'", USE_SSL=str(scheme == "https").lower())
    con.execute("CREATE OR REPLACE SECRET trailsight_s3 (" + ", ".join(f"{k} {v}" for k, v in options.items()) + ")")
    return True


def _register_s3_table(con: duckdb.DuckDBPyConnection, lake: Storage, table: str, schema: TableSchema) -> None:
    """S3 without httpfs: a pyarrow dataset (partition and column pruning happen in pyarrow) seen as a view."""
    keys = lake_files(lake, table)
    if not keys:
        con.execute(f"CREATE VIEW {table} AS {_empty_view_sql(schema)}")
        return
    dataset = ds.dataset([lake.path(key) for key in keys], filesystem=lake.fs, format="parquet",
                         partitioning=ds.partitioning(partition_schema(schema), flavor="hive"),
                         partition_base_dir=lake.path(table))
    con.register(table, dataset)


def connect(lake: str | Storage) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake's tables as views (local folder or S3)."""
    lake = as_storage(lake)
    require_lake(lake)
    check_lake_format(lake)
    schema = load_schema()
    con = duckdb.connect()
    prepare_connection(con)
    # Reports run several queries over the same day's files: read each file footer once per connection.
    con.execute("SET parquet_metadata_cache = true")
    native = lake.is_local or _httpfs_secret(con)
    for table in (CLOUDTRAIL_TABLE, INSIGHTS_TABLE):
        if native:
            con.execute(f"CREATE VIEW {table} AS {_view_sql(lake, table, schema)}")
        else:
            _register_s3_table(con, lake, table, schema)
    create_views(con)
    return con


def use_derived(con: duckdb.DuckDBPyConnection, lake: Storage, name: str, start: date, end: date) -> None:
    """(Re)define the view `name` over the derived files of the data files dated [start, end].

    Data files that lack theirs are derived now from their own columns, and the result kept when the lake
    can be written. Queries on the view must stay within [start, end].
    """
    table = derived_tables()[name]
    data_keys = lake_files(lake, CLOUDTRAIL_TABLE, start, end)
    kept = existing_keys(lake, table, {partition_of(key)[1] for key in data_keys})
    found = [table.key(key) for key in data_keys if table.key(key) in kept]
    computed = _derive_missing(lake, table, [key for key in data_keys if table.key(key) not in kept])
    parts = []
    if found:
        parts.append(_files_relation(con, lake, f"{name}_files", [lake.path(key) for key in found], table.prefix))
    if computed:
        con.register(f"{name}_computed", pa.concat_tables(computed))
        parts.append(f"SELECT * FROM {name}_computed")
    body = " UNION ALL BY NAME ".join(parts) or f"SELECT * FROM ({table.query.sql}) WHERE false"
    con.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")


def _derive_missing(lake: Storage, table: DerivedTable, data_keys: list[str]) -> list[pa.Table]:
    """Derive what data files lack, reading only the columns the table needs; keep the files when allowed."""
    if not data_keys:
        return []
    rounds: list[list[tuple[str, Partition]]] = []
    seen: Counter[Partition] = Counter()
    for key in data_keys:  # a round holds one file per partition: a partition's n-th file goes to round n
        partition = partition_of(key)
        round_number = seen[partition]
        seen[partition] += 1
        if round_number == len(rounds):
            rounds.append([])
        rounds[round_number].append((key, partition))
    computed = []
    deriver = Deriver()
    try:
        for files in rounds:
            rows = ds.dataset([lake.path(key) for key, _ in files], filesystem=lake.fs, format="parquet",
                              partitioning=ds.partitioning(partition_schema(load_schema()), flavor="hive"),
                              partition_base_dir=lake.path(CLOUDTRAIL_TABLE))
            computed.append(deriver.keep(lake, rows, files, (table.name,), required=False)[table.name])
    finally:
        deriver.close()
    return computed


def _files_relation(con: duckdb.DuckDBPyConnection, lake: Storage, name: str, paths: list[str], base: str) -> str:
    """SQL reading the given Parquet files of a Hive-partitioned folder, partition columns included."""
    schema = load_schema()
    if lake.is_local:
        listed = ", ".join(_quote(path) for path in paths)
        return f"SELECT * FROM read_parquet([{listed}], hive_partitioning = true, hive_types = {_hive_types(schema)})"
    dataset = ds.dataset(paths, filesystem=lake.fs, format="parquet", partition_base_dir=lake.path(base),
                         partitioning=ds.partitioning(partition_schema(schema), flavor="hive"))
    con.register(name, dataset)
    return f"SELECT * FROM {name}"


class DuckDBEngine:
    """The reports' Engine on embedded DuckDB over the lake (local folder or S3)."""

    name = "duckdb"

    def __init__(self, lake: str | Storage) -> None:
        self.lake = as_storage(lake)
        self.con = connect(self.lake)

    def query(self, sql: str, parameters: dict[str, Any] | None = None,
              arrays: Sequence[str] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Lists come back as Python lists already, so `arrays` needs no handling here."""
        try:
            cursor = self.con.execute(sql, parameters or {})
            return [d[0] for d in cursor.description or []], cursor.fetchall()
        except duckdb.Error as exc:
            raise QueryError(f"query failed: {first_line(exc)}") from exc

    def use_derived(self, name: str, start: date, end: date) -> None:
        use_derived(self.con, self.lake, name, start, end)

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def stats(self) -> dict[str, Any]:
        return {"engine": "duckdb"}

    def close(self) -> None:
        self.con.close()


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_sql(lake: str | Storage, sql: str, parameters: list[Any] | dict[str, Any] | None = None) -> QueryResult:
    """Run one query over the lake, with bound parameters."""
    con = connect(lake)
    try:
        cursor = con.execute(sql, parameters) if parameters is not None else con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        return QueryResult(columns, cursor.fetchall())
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {first_line(exc)}") from exc
    finally:
        con.close()


def write_parquet(lake: str | Storage, sql: str, path: str | Path) -> int:
    """Run one query and stream its result into a Parquet file (results larger than memory included); row count."""
    con = connect(lake)
    try:
        query = sql.strip().rstrip(";")
        target = str(path).replace("'", "''")
        return con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)").fetchone()[0]
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {first_line(exc)}") from exc
    finally:
        con.close()
