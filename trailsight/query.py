"""Stage 4, queries: DuckDB over the lake, with the views `cloudtrail` and `cloudtrail_insights`.

Partition columns come from the Hive-style folder names, so filters on event_date, account and region
prune whole folders; Parquet column pruning does the rest. A local lake is read by DuckDB itself, and so is an
S3 lake when DuckDB's httpfs extension is installed; without it (it cannot be downloaded offline) an S3 lake is
read through pyarrow datasets registered in DuckDB, which push projections and filters down the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import duckdb
import pyarrow.dataset as ds

from trailsight.aws import region_name, s3_endpoint
from trailsight.conversion import CLOUDTRAIL_TABLE, INSIGHTS_TABLE
from trailsight.errors import QueryError, first_line
from trailsight.lake import lake_files
from trailsight.schema import TableSchema, duckdb_type, load_schema, partition_schema
from trailsight.sqlfiles import load_views
from trailsight.storage import Storage

# Athena's JSON function, so analysts' existing CloudTrail queries run unchanged on DuckDB.
ATHENA_COMPAT_MACROS = (
    "CREATE OR REPLACE MACRO json_extract_scalar(doc, path) AS json_extract_string(doc, path)",
)


def _empty_view_sql(schema: TableSchema) -> str:
    columns = [f'CAST(NULL AS {duckdb_type(c)}) AS "{c.name}"' for c in (*schema.data_columns, *schema.partitions)]
    return f"SELECT {', '.join(columns)} WHERE false"


def _view_sql(lake: Storage, table: str, schema: TableSchema) -> str:
    if not lake_files(lake, table):
        return _empty_view_sql(schema)
    scheme = "" if lake.is_local else "s3://"
    glob = (scheme + lake.path(f"{table}/*/*/*/*.parquet")).replace("'", "''")
    types = ", ".join(f"'{p.name}': {duckdb_type(p)}" for p in schema.partitions)
    # Every file carries the same schema, so no union_by_name: it would read every footer of the lake.
    return f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, hive_types = {{{types}}})"


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
    if not lake_files(lake, table):
        con.execute(f"CREATE VIEW {table} AS {_empty_view_sql(schema)}")
        return
    dataset = ds.dataset(lake.path(table), filesystem=lake.fs, format="parquet",
                         partitioning=ds.partitioning(partition_schema(schema), flavor="hive"))
    con.register(table, dataset)


def connect(lake: str | Storage) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake's tables as views (local folder or S3)."""
    lake = lake if isinstance(lake, Storage) else Storage(lake)
    schema = load_schema()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Reports run several queries over the same day's files: read each file footer once per connection.
    con.execute("SET parquet_metadata_cache = true")
    for macro in ATHENA_COMPAT_MACROS:
        con.execute(macro)
    native = lake.is_local or _httpfs_secret(con)
    for table in (CLOUDTRAIL_TABLE, INSIGHTS_TABLE):
        if native:
            con.execute(f"CREATE VIEW {table} AS {_view_sql(lake, table, schema)}")
        else:
            _register_s3_table(con, lake, table, schema)
    for view in load_views():
        con.execute(f"CREATE VIEW {view.name} AS {view.sql}")
    return con


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
