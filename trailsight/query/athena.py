"""The Athena engine: the Glue table derived from `schemas/`, and the `sql/` files rendered with sqlglot.

The table uses partition projection on the lake's own partitions (event_date, account, region), so no
crawler and no MSCK REPAIR are ever needed. JSON-text columns stay strings, read with json_extract_scalar.
Queries are written once, in the DuckDB dialect, and transpiled; parameters are bound server-side
(execution parameters), never pasted into the text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import sqlglot
from sqlglot import exp

from trailsight.convert.records import CLOUDTRAIL_TABLE, INSIGHTS_TABLE
from trailsight.errors import QueryError, UsageError, first_line
from trailsight.lake.layout import lake_partitions
from trailsight.query.sqlfiles import load_derived, load_views
from trailsight.schema import TableSchema, hive_type, load_schema
from trailsight.storage.aws import client
from trailsight.storage.store import Storage, as_storage

# Athena's list price per TB scanned; one place to change it (or TRAILSIGHT_ATHENA_USD_PER_TB).
USD_PER_TB_SCANNED = float(os.environ.get("TRAILSIGHT_ATHENA_USD_PER_TB", "5.0"))
PROJECTION_START = "2013-01-01"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"


@dataclass(frozen=True)
class AthenaSettings:
    database: str = "trailsight"
    workgroup: str = "primary"
    output: str | None = None


def _lake_url(lake: Storage) -> str:
    if lake.is_local:
        raise UsageError("Athena needs the lake in S3: pass --lake s3://bucket/prefix")
    return f"s3://{lake.root}"


def partition_values(lake: Storage, table: str) -> dict[str, list[str]]:
    """Accounts and regions present in the lake: the enum projections' values."""
    partitions = lake_partitions(lake, table)
    return {"account": sorted({p[2] for p in partitions}) or ["unknown"],
            "region": sorted({p[3] for p in partitions}) or ["unknown"]}


def table_properties(location: str, table: str, values: dict[str, list[str]]) -> dict[str, str]:
    """Partition projection for `<table>/event_date=.../account=.../region=...`."""
    return {
        "classification": "parquet",
        "projection.enabled": "true",
        "projection.event_date.type": "date",
        "projection.event_date.format": "yyyy-MM-dd",
        "projection.event_date.range": f"{PROJECTION_START},NOW",
        "projection.event_date.interval": "1",
        "projection.event_date.interval.unit": "DAYS",
        "projection.account.type": "enum",
        "projection.account.values": ",".join(values["account"]),
        "projection.region.type": "enum",
        "projection.region.values": ",".join(values["region"]),
        "storage.location.template": (
            f"{location}/{table}/event_date=${{event_date}}/account=${{account}}/region=${{region}}"),
        "trailsight.schema": "cloudtrail.v1",
    }


def table_ddl(schema: TableSchema, database: str, table: str, location: str, values: dict[str, list[str]]) -> str:
    """The CREATE EXTERNAL TABLE statement equivalent to what `create_tables` puts in Glue."""
    columns = ",\n".join(f"  `{c.name}` {hive_type(c)}" for c in schema.data_columns)
    partitions = ",\n".join(f"  `{p.name}` {hive_type(p)}" for p in schema.partitions)
    properties = ",\n".join(f"  '{k}' = '{v}'" for k, v in table_properties(location, table, values).items())
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{table}` (\n{columns}\n)\n"
        f"PARTITIONED BY (\n{partitions}\n)\n"
        f"ROW FORMAT SERDE '{PARQUET_SERDE}'\n"
        f"STORED AS INPUTFORMAT '{PARQUET_INPUT}'\nOUTPUTFORMAT '{PARQUET_OUTPUT}'\n"
        f"LOCATION '{location}/{table}/'\n"
        f"TBLPROPERTIES (\n{properties}\n);\n"
    )


def ddl(lake: str | Storage, settings: AthenaSettings) -> str:
    lake = as_storage(lake)
    location = _lake_url(lake)
    schema = load_schema()
    return "\n".join(table_ddl(schema, settings.database, table, location, partition_values(lake, table))
                     for table in (CLOUDTRAIL_TABLE, INSIGHTS_TABLE))


def _table_input(schema: TableSchema, table: str, location: str, values: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "Name": table,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {**table_properties(location, table, values), "EXTERNAL": "TRUE"},
        "PartitionKeys": [{"Name": p.name, "Type": hive_type(p), "Comment": p.doc} for p in schema.partitions],
        "StorageDescriptor": {
            "Columns": [{"Name": c.name, "Type": hive_type(c), "Comment": c.doc[:255]} for c in schema.data_columns],
            "Location": f"{location}/{table}/",
            "InputFormat": PARQUET_INPUT,
            "OutputFormat": PARQUET_OUTPUT,
            "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
        },
    }


def create_tables(lake: str | Storage, settings: AthenaSettings) -> list[str]:
    """Create or update the Glue database and tables (idempotent); returns what was done per table."""
    lake = as_storage(lake)
    location = _lake_url(lake)
    glue = client("glue")
    schema = load_schema()
    done = []
    try:
        glue.create_database(DatabaseInput={"Name": settings.database,
                                            "Description": "trailsight CloudTrail lake"})
        done.append(f"created database {settings.database}")
    except glue.exceptions.AlreadyExistsException:
        pass
    for table in (CLOUDTRAIL_TABLE, INSIGHTS_TABLE):
        table_input = _table_input(schema, table, location, partition_values(lake, table))
        try:
            glue.create_table(DatabaseName=settings.database, TableInput=table_input)
            done.append(f"created table {settings.database}.{table}")
        except glue.exceptions.AlreadyExistsException:
            glue.update_table(DatabaseName=settings.database, TableInput=table_input)
            done.append(f"updated table {settings.database}.{table}")
    return done


# --- rendering and running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedQuery:
    """A query in Athena's dialect with its parameter names, in the order of the `?` placeholders."""

    sql: str
    parameter_names: tuple[str, ...]


def render(sql: str) -> RenderedQuery:
    """DuckDB-dialect SQL with `$name` parameters to Athena SQL with positional `?` parameters."""
    try:
        tree = _with_views(sqlglot.parse_one(sql, read="duckdb"))
    except sqlglot.errors.ParseError as exc:
        raise QueryError(f"cannot parse query: {first_line(exc)}") from exc
    names: list[str] = []

    def to_marker(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and node.name:
            names.append(node.name)
            return exp.Placeholder(this=f"trailsight_p{len(names) - 1}")
        return node

    # Markers first, then `?` in the order the markers appear in the text: the tree's walk order is not the
    # text's order (a WITH clause is visited after the WHERE that follows it).
    text = tree.transform(to_marker).sql(dialect="athena")
    ordered = [names[int(n)] for n in _MARKER.findall(text)]
    return RenderedQuery(_MARKER.sub("?", text), tuple(ordered))


_MARKER = re.compile(r":trailsight_p(\d+)\b")


@cache
def _shared_definitions() -> dict[str, exp.Expression]:
    """The views and derived tables, parsed once: views first, then derived tables (which read views), so that
    each CTE only reads those before it. Callers copy a definition before attaching it to a query."""
    return {query.name: sqlglot.parse_one(query.sql, read="duckdb") for query in (*load_views(), *load_derived())}


def _with_views(tree: exp.Expression) -> exp.Expression:
    """Add the shared views and derived tables a query reads (sql/views, sql/derived) as WITH clauses: Athena
    has neither DuckDB's views nor the lake's derived files, so it computes them from their definitions."""
    if not isinstance(tree, exp.Query):
        return tree
    definitions = _shared_definitions()
    defined = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    needed: set[str] = set()
    wanted = [table.name for table in tree.find_all(exp.Table) if not table.db]
    while wanted:
        name = wanted.pop()
        if name in definitions and name not in defined and name not in needed:
            needed.add(name)
            wanted += [table.name for table in definitions[name].find_all(exp.Table) if not table.db]
    ctes = [exp.CTE(this=body.copy(), alias=exp.TableAlias(this=exp.to_identifier(name)))
            for name, body in definitions.items() if name in needed]
    if ctes:
        existing = tree.args.get("with_")
        if existing is None:
            tree.set("with_", exp.With(expressions=ctes))
        else:
            existing.set("expressions", [*ctes, *existing.expressions])
    return tree


def athena_literal(value: Any) -> str:
    """A value as an Athena SQL literal, for execution parameters."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    text = str(value).replace("'", "''")
    return f"'{text}'"


@dataclass
class AthenaRun:
    query_id: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    bytes_scanned: int
    cost_usd: float = field(default=0.0)


def scan_cost(bytes_scanned: int) -> float:
    """Athena bills per TB scanned, with a 10 MB minimum per query."""
    return max(bytes_scanned, 10 * 1024 * 1024) / 1e12 * USD_PER_TB_SCANNED


def run_query(sql: str, parameters: dict[str, Any], settings: AthenaSettings) -> AthenaRun:
    """Run one DuckDB-dialect query on Athena through awswrangler; parameters bound server-side."""
    import awswrangler as wr

    rendered = render(sql)
    missing = [n for n in rendered.parameter_names if n not in parameters]
    if missing:
        raise QueryError(f"query needs parameter(s) {', '.join(missing)}")
    values = [athena_literal(parameters[n]) for n in rendered.parameter_names]
    try:
        frame = wr.athena.read_sql_query(
            rendered.sql, database=settings.database, workgroup=settings.workgroup, s3_output=settings.output,
            ctas_approach=False, params=values or None, paramstyle="qmark",
        )
    except Exception as exc:
        raise QueryError(f"Athena query failed: {first_line(exc)}") from exc
    query_id = frame.query_metadata["QueryExecutionId"]
    scanned = int(frame.query_metadata.get("Statistics", {}).get("DataScannedInBytes", 0))
    rows = [tuple(_python_value(v) for v in row) for row in frame.itertuples(index=False)]
    return AthenaRun(query_id, list(frame.columns), rows, scanned, scan_cost(scanned))


def _python_value(value: Any) -> Any:
    """pandas/numpy cells to plain Python values, missing ones to None."""
    try:
        if value is None or value != value:
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)  # Athena timestamps are the lake's UTC times
    return value.item() if hasattr(value, "item") else value


class AthenaConnection:
    """What the reports use of a DuckDB connection, backed by Athena.

    `execute(sql, parameters)` renders the DuckDB-dialect SQL for Athena and binds the parameters server-side;
    Arrow tables given to `register` (small lists of candidate series and windows) are inlined as VALUES, since
    Athena cannot see the caller's memory. Every run is kept, for bytes scanned and cost.
    """

    def __init__(self, settings: AthenaSettings) -> None:
        self.settings = settings
        self.tables: dict[str, Any] = {}
        self.runs: list[AthenaRun] = []
        self.description: list[tuple[str]] = []
        self._rows: list[tuple[Any, ...]] = []

    def register(self, name: str, table: Any) -> None:
        self.tables[name] = table

    def unregister(self, name: str) -> None:
        self.tables.pop(name, None)

    def execute(self, sql: str, parameters: dict[str, Any] | None = None) -> AthenaConnection:
        run = run_query(self._inline_tables(sql), parameters or {}, self.settings)
        self.runs.append(run)
        self.description = [(name,) for name in run.columns]
        self._rows = run.rows
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def close(self) -> None:
        self.tables.clear()

    def _inline_tables(self, sql: str) -> str:
        if not self.tables:
            return sql
        tree = sqlglot.parse_one(sql, read="duckdb")

        def inline(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Table) and not node.db and node.name in self.tables:
                values = values_subquery(self.tables[node.name], node.name)
                return values.as_(node.alias_or_name) if node.alias else values
            return node

        return tree.transform(inline).sql(dialect="duckdb")

    @property
    def bytes_scanned(self) -> int:
        return sum(run.bytes_scanned for run in self.runs)

    def stats(self) -> dict[str, Any]:
        return {"engine": "athena", "queries": len(self.runs), "bytes_scanned": self.bytes_scanned,
                "cost_usd": round(sum(run.cost_usd for run in self.runs), 6),
                "usd_per_tb": USD_PER_TB_SCANNED, "query_ids": [run.query_id for run in self.runs]}


def values_subquery(table: Any, name: str) -> exp.Expression:
    """An Arrow table as `(SELECT * FROM (VALUES ...) AS name(columns))`, typed by its first row's literals."""
    columns = ", ".join(f'"{column}"' for column in table.column_names)
    rows = table.to_pylist()
    if rows:
        tuples = ", ".join("(" + ", ".join(athena_literal(row[c]) for c in table.column_names) + ")" for row in rows)
        text = f"(SELECT * FROM (VALUES {tuples}) AS {name}({columns}))"
    else:
        nulls = ", ".join("NULL" for _ in table.column_names)
        text = f"(SELECT * FROM (VALUES ({nulls})) AS {name}({columns}) WHERE 1 = 0)"
    return sqlglot.parse_one(text, read="duckdb")
