"""The Athena engine: the Glue table derived from `schemas/`, and the `sql/` files rendered with sqlglot.

The table uses partition projection on the lake's own partitions (event_date, account, region), so no
crawler and no MSCK REPAIR are ever needed. JSON-text columns stay strings, read with json_extract_scalar.
Queries are written once, in the DuckDB dialect, and transpiled; parameters are bound server-side
(execution parameters), never pasted into the text.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from sqlglot import exp

from trailsight.convert.records import CLOUDTRAIL_TABLE, INSIGHTS_TABLE
from trailsight.errors import QueryError, UsageError, first_line
from trailsight.lake.layout import partition_of
from trailsight.query.sqlfiles import load_derived, load_views
from trailsight.resources import package_folder
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


def _lake_url(lake: str | Storage) -> str:
    """The lake's `s3://` URL, from the text alone when given text: the DDL needs no credentials."""
    url = lake.url if isinstance(lake, Storage) else str(lake)
    if not url.startswith("s3://"):
        raise UsageError("Athena needs the lake in S3: pass --lake s3://bucket/prefix")
    return url.rstrip("/")


@cache
def engine_facts() -> dict[str, Any]:
    """Athena engine v3's limits and functions (`athena-engine-v3.toml`), one place for code and tests."""
    return tomllib.loads((package_folder("trailsight.query") / "athena-engine-v3.toml").read_text())


def partition_values(accounts: Iterable[str] = ()) -> dict[str, list[str]]:
    """The enum projection's values from what the caller knows (no listing of the lake): the given accounts."""
    account_list = sorted(set(accounts))
    if not account_list:
        raise UsageError("the table's account projection needs the lake's account ids: pass --account (repeat it "
                         "for each); the daily flow adds new accounts as it ingests them")
    bad = [a for a in account_list if not re.fullmatch(r"\d{12}", a)]
    if bad:
        raise UsageError(f"not an AWS account id (12 digits): {', '.join(bad)}")
    return {"account": account_list}


def table_properties(location: str, table: str, values: dict[str, list[str]]) -> dict[str, str]:
    """Partition projection for `<table>/event_date=.../account=...` (region is a column the files are sorted by)."""
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
        "storage.location.template": f"{location}/{table}/event_date=${{event_date}}/account=${{account}}",
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


def ddl(lake: str | Storage, settings: AthenaSettings, accounts: Iterable[str] = ()) -> str:
    """The DDL of both tables from the schema alone: nothing is listed or fetched, so it works offline."""
    location = _lake_url(lake)
    schema = load_schema()
    values = partition_values(accounts)
    return "\n".join(table_ddl(schema, settings.database, table, location, values)
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


def create_tables(lake: str | Storage, settings: AthenaSettings, accounts: Iterable[str] = ()) -> list[str]:
    """Create or update the Glue database and tables (idempotent); returns what was done per table."""
    location = _lake_url(lake)
    glue = client("glue")
    schema = load_schema()
    values = partition_values(accounts)
    done = []
    try:
        glue.create_database(DatabaseInput={"Name": settings.database,
                                            "Description": "trailsight CloudTrail lake"})
        done.append(f"created database {settings.database}")
    except glue.exceptions.AlreadyExistsException:
        pass
    for table in (CLOUDTRAIL_TABLE, INSIGHTS_TABLE):
        table_input = _table_input(schema, table, location, values)
        try:
            glue.create_table(DatabaseName=settings.database, TableInput=table_input)
            done.append(f"created table {settings.database}.{table}")
        except glue.exceptions.AlreadyExistsException:
            glue.update_table(DatabaseName=settings.database, TableInput=table_input)
            done.append(f"updated table {settings.database}.{table}")
    return done


def update_projection(settings: AthenaSettings, partition_keys: Iterable[str]) -> list[str]:
    """Add the accounts of newly written partitions (`table/event_date=/account=` keys, as an ingest reports them)
    to the tables' enum projections, so Athena sees them without `athena create`.

    Only Glue is read and written (no listing of the lake); a table whose lists already hold them is left alone.
    """
    glue = client("glue")
    seen: dict[str, set[str]] = {}
    for key in partition_keys:
        table, _, account = partition_of(f"{key.rstrip('/')}/file.parquet")
        seen.setdefault(table, set()).add(account)
    done = []
    for table, accounts in sorted(seen.items()):
        try:
            current = glue.get_table(DatabaseName=settings.database, Name=table)["Table"]
        except glue.exceptions.EntityNotFoundException:
            raise UsageError(f"no Glue table {settings.database}.{table}: run `trailsight athena create` once"
                             ) from None
        parameters = dict(current["Parameters"])
        name = "projection.account.values"
        listed = set(filter(None, parameters.get(name, "").split(",")))
        if not accounts <= listed:
            parameters[name] = ",".join(sorted(listed | accounts))
            done.append(f"{settings.database}.{table}: account {', '.join(sorted(accounts - listed))} added")
            keep = ("Name", "Description", "Owner", "Retention", "StorageDescriptor", "PartitionKeys", "TableType")
            glue.update_table(DatabaseName=settings.database,
                              TableInput={**{k: current[k] for k in keep if k in current}, "Parameters": parameters})
    return done


# --- rendering and running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedQuery:
    """A query in Athena's dialect with its parameter names, in the order of the `?` placeholders."""

    sql: str
    parameter_names: tuple[str, ...]


def render(sql: str, arrays: Sequence[str] = ()) -> RenderedQuery:
    """DuckDB-dialect SQL with `$name` parameters to Athena SQL with positional `?` parameters.

    The result columns named in `arrays` are sent as `CAST(... AS JSON)`: Athena writes an array into its CSV
    result as `[a, b]`, which cannot be split back when a value holds `, ` or `]`; JSON text can.
    """
    try:
        tree = _with_views(_arrays_as_json(sqlglot.parse_one(sql, read="duckdb"), arrays))
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


def _arrays_as_json(tree: exp.Expression, arrays: Sequence[str]) -> exp.Expression:
    if not arrays:
        return tree
    if not isinstance(tree, exp.Select) or any(isinstance(p, exp.Star) for p in tree.expressions):
        raise QueryError("a query returning arrays must end in a SELECT that names its columns (no *)")
    wanted = set(arrays)
    projections = []
    for projection in tree.expressions:
        name = projection.alias_or_name
        if name in wanted:
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            projection = exp.alias_(exp.Cast(this=inner.copy(), to=exp.DataType.build("JSON")), name, quoted=False)
            wanted.discard(name)
        projections.append(projection)
    if wanted:
        raise QueryError(f"array column(s) {', '.join(sorted(wanted))} not in the query's result")
    tree.set("expressions", projections)
    return tree


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


def check_size(sql: str) -> None:
    """Athena refuses a query text over its limit: say so before sending, with the figure."""
    size = len(sql.encode())
    limit = engine_facts()["limits"]["query_bytes"]
    if size > limit:
        raise QueryError(f"the query is {size:,} bytes; Athena takes at most {limit:,} (UTF-8)")


def run_query(sql: str, parameters: dict[str, Any], settings: AthenaSettings,
              arrays: Sequence[str] = ()) -> AthenaRun:
    """Run one DuckDB-dialect query on Athena through awswrangler; parameters bound server-side.

    Results are typed by the column types Athena reports: the `arrays` columns arrive as JSON text and are
    decoded; an array, map or row column that was not sent as JSON is refused rather than returned garbled.
    """
    import awswrangler as wr

    rendered = render(sql, arrays)
    check_size(rendered.sql)
    missing = [n for n in rendered.parameter_names if n not in parameters]
    if missing:
        raise QueryError(f"query needs parameter(s) {', '.join(missing)}")
    values = [athena_literal(parameters[n]) for n in rendered.parameter_names]
    try:
        frame = wr.athena.read_sql_query(
            rendered.sql, database=settings.database, workgroup=settings.workgroup, s3_output=settings.output,
            ctas_approach=False, params=values or None, paramstyle="qmark",
        )
        query_id = frame.query_metadata["QueryExecutionId"]
        types = wr.athena.get_query_columns_types(query_id)
    except Exception as exc:
        raise QueryError(f"Athena query failed: {first_line(exc)}") from exc
    decoders = [_decoder(column, types.get(column, "varchar")) for column in frame.columns]
    scanned = int(frame.query_metadata.get("Statistics", {}).get("DataScannedInBytes", 0))
    rows = [tuple(decode(_python_value(v)) for decode, v in zip(decoders, row, strict=True))
            for row in frame.itertuples(index=False)]
    return AthenaRun(query_id, list(frame.columns), rows, scanned, scan_cost(scanned))


def _decoder(column: str, athena_type: str) -> Any:
    """How one result column's cells become Python values, from the type Athena reports for it."""
    kind = athena_type.split("(", 1)[0].lower()
    if kind == "json":
        return lambda value: None if value is None else orjson.loads(value)
    if kind in ("array", "map", "row"):
        raise QueryError(f"column {column} is an Athena {kind}, which Athena returns as text that cannot be split "
                         f"back safely; return it as JSON (CAST({column} AS JSON))")
    return lambda value: value


def _python_value(value: Any) -> Any:
    """pandas/numpy cells to plain Python values, missing ones (None, NaN, NaT, pandas' NA) to None."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)  # Athena timestamps are the lake's UTC times
    return value.item() if hasattr(value, "item") else value


class AthenaEngine:
    """The reports' Engine on Athena: the same SQL files, rendered for Athena, parameters bound server-side.

    Tables given to `register` (the lists of candidate series and windows the spike queries join) are written as
    Parquet under the query output location and declared as a Glue table of the database for as long as they are
    registered: Athena cannot see the caller's memory, and pasting thousands of rows into the text would pass
    Athena's query size limit. Every run is kept, for bytes scanned and cost.
    """

    name = "athena"

    def __init__(self, settings: AthenaSettings) -> None:
        self.settings = settings
        self.tables: dict[str, str] = {}
        self.runs: list[AthenaRun] = []

    def query(self, sql: str, parameters: dict[str, Any] | None = None,
              arrays: Sequence[str] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        run = run_query(self._with_tables(sql), parameters or {}, self.settings, arrays)
        self.runs.append(run)
        return run.columns, run.rows

    def use_derived(self, name: str, start: date, end: date) -> None:
        """Nothing to prepare: Athena computes derived tables from their definitions, added to each query."""

    def register(self, name: str, table: pa.Table) -> None:
        token = uuid.uuid4().hex[:12]
        glue_name = f"trailsight_tmp_{name}_{token}"
        folder = f"{self._output().rstrip('/')}/trailsight-tables/{glue_name}/"
        storage = as_storage(folder)
        sink = pa.BufferOutputStream()
        pq.write_table(_hive_compatible(table), sink)
        storage.write_bytes("part-0.parquet", sink.getvalue())
        client("glue").create_table(DatabaseName=self.settings.database, TableInput={
            "Name": glue_name, "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "trailsight.temporary": "true"},
            "StorageDescriptor": {
                "Columns": [{"Name": f.name, "Type": _hive_type_of(f.type)} for f in table.schema],
                "Location": folder, "InputFormat": PARQUET_INPUT, "OutputFormat": PARQUET_OUTPUT,
                "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE}}})
        self.tables[name] = glue_name

    def unregister(self, name: str) -> None:
        glue_name = self.tables.pop(name, None)
        if glue_name is None:
            return
        client("glue").delete_table(DatabaseName=self.settings.database, Name=glue_name)
        storage = as_storage(f"{self._output().rstrip('/')}/trailsight-tables/{glue_name}/")
        storage.delete("part-0.parquet")

    def close(self) -> None:
        for name in list(self.tables):
            self.unregister(name)

    def _output(self) -> str:
        if self.settings.output:
            return self.settings.output
        group = client("athena").get_work_group(WorkGroup=self.settings.workgroup)["WorkGroup"]
        output = group.get("Configuration", {}).get("ResultConfiguration", {}).get("OutputLocation")
        if not output:
            raise UsageError(f"workgroup {self.settings.workgroup} has no output location: pass --output-location")
        return output

    def _with_tables(self, sql: str) -> str:
        if not self.tables:
            return sql
        tree = sqlglot.parse_one(sql, read="duckdb")

        def qualify(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Table) and not node.db and node.name in self.tables:
                return exp.table_(self.tables[node.name], db=self.settings.database,
                                  alias=node.alias or node.name)
            return node

        return tree.transform(qualify).sql(dialect="duckdb")

    @property
    def bytes_scanned(self) -> int:
        return sum(run.bytes_scanned for run in self.runs)

    def stats(self) -> dict[str, Any]:
        return {"engine": "athena", "queries": len(self.runs), "bytes_scanned": self.bytes_scanned,
                "cost_usd": round(sum(run.cost_usd for run in self.runs), 6),
                "usd_per_tb": USD_PER_TB_SCANNED, "query_ids": [run.query_id for run in self.runs]}


def _hive_compatible(table: pa.Table) -> pa.Table:
    """Timestamps as UTC wall-clock milliseconds without a zone: what Athena's Parquet reader maps to TIMESTAMP."""
    fields = [pa.field(f.name, pa.timestamp("ms")) if pa.types.is_timestamp(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def _hive_type_of(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_integer(arrow_type):
        return "bigint"
    if pa.types.is_floating(arrow_type):
        return "double"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    return "string"
