"""The lake schema, loaded from `schemas/` and turned into Arrow, DuckDB, Athena and Markdown forms.

Everything that needs to know the table's shape derives it from here, so the YAML file stays the only
place where a column is declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pyarrow as pa
import yaml

from trailsight.errors import SchemaError
from trailsight.resources import package_folder

SCHEMAS_DIR = package_folder("trailsight.schemas")
SCHEMA_VERSION = 1

# Each scalar type of the schema file as (Arrow, DuckDB, Glue/Athena): the engines differ only here.
SCALARS: dict[str, tuple[pa.DataType, str, str]] = {
    "string": (pa.string(), "VARCHAR", "string"),
    "json": (pa.string(), "VARCHAR", "string"),
    "boolean": (pa.bool_(), "BOOLEAN", "boolean"),
    "timestamp": (pa.timestamp("us", tz="UTC"), "TIMESTAMP WITH TIME ZONE", "timestamp"),
    "int64": (pa.int64(), "BIGINT", "bigint"),
    "date": (pa.date32(), "DATE", "date"),
    "map": (pa.map_(pa.string(), pa.string()), "MAP(VARCHAR, VARCHAR)", "map<string,string>"),
}


@dataclass(frozen=True)
class Field:
    """One column or nested field: `name` in the lake, `source` in CloudTrail's JSON."""

    name: str
    source: str
    type: str
    doc: str = ""
    fields: tuple[Field, ...] = ()
    items: Field | None = None


@dataclass(frozen=True)
class TableSchema:
    name: str
    version: int
    columns: tuple[Field, ...]
    lineage: tuple[Field, ...]
    clustering: tuple[Field, ...]
    partitions: tuple[Field, ...]

    @property
    def converted_columns(self) -> tuple[Field, ...]:
        """Columns a log file's conversion gives (event columns, then lineage)."""
        return self.columns + self.lineage

    @property
    def data_columns(self) -> tuple[Field, ...]:
        """Columns stored inside the Parquet files: the converted ones, then those the files are sorted by."""
        return self.columns + self.lineage + self.clustering


def _parse_field(raw: dict, where: str) -> Field:
    try:
        name = raw.get("name", "element")
        kind = raw["type"]
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"{where}: every field needs a name and a type") from exc
    if kind == "struct":
        children = tuple(_parse_field(f, f"{where}.{f.get('name')}") for f in raw.get("fields", ()))
        if not children:
            raise SchemaError(f"{where}: a struct needs fields")
        return Field(name, raw.get("source", name), kind, raw.get("doc", ""), fields=children)
    if kind == "array":
        if "items" not in raw:
            raise SchemaError(f"{where}: an array needs items")
        return Field(name, raw.get("source", name), kind, raw.get("doc", ""),
                     items=_parse_field(raw["items"], f"{where}[]"))
    if kind not in SCALARS:
        raise SchemaError(f"{where}: unknown type {kind!r}; use one of {sorted({*SCALARS, 'struct', 'array'})}")
    return Field(name, raw.get("source", name), kind, raw.get("doc", ""))


@cache
def load_schema(name: str = "cloudtrail", version: int = SCHEMA_VERSION) -> TableSchema:
    """Read `schemas/<name>.v<version>.yaml`."""
    path = SCHEMAS_DIR / f"{name}.v{version}.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SchemaError(f"cannot read schema file {path}: {exc.strerror}") from exc
    if raw.get("version") != version:
        raise SchemaError(f"{path}: says version {raw.get('version')}, expected {version}")

    def parse_all(key: str) -> tuple[Field, ...]:
        return tuple(_parse_field(f, f"{path.name}:{key}.{f.get('name')}") for f in raw.get(key, ()))

    return TableSchema(raw["name"], version, parse_all("columns"), parse_all("lineage"), parse_all("clustering"),
                       parse_all("partitions"))


def arrow_type(f: Field) -> pa.DataType:
    if f.type == "struct":
        return pa.struct([pa.field(c.name, arrow_type(c)) for c in f.fields])
    if f.type == "array":
        assert f.items is not None
        return pa.list_(pa.field("element", arrow_type(f.items)))
    return SCALARS[f.type][0]


def arrow_schema(schema: TableSchema) -> pa.Schema:
    """Schema of the Parquet files (partition columns live in the path, not in the files)."""
    return pa.schema(
        [pa.field(c.name, arrow_type(c)) for c in schema.data_columns],
        metadata={"trailsight.schema": f"{schema.name}.v{schema.version}"},
    )


def converted_schema(schema: TableSchema) -> pa.Schema:
    """Schema of the rows a conversion gives, before the writer adds the clustering columns."""
    return pa.schema([pa.field(c.name, arrow_type(c)) for c in schema.converted_columns])


def partition_schema(schema: TableSchema) -> pa.Schema:
    return pa.schema([pa.field(p.name, arrow_type(p)) for p in schema.partitions])


def duckdb_type(f: Field) -> str:
    if f.type == "struct":
        return "STRUCT(" + ", ".join(f'"{c.name}" {duckdb_type(c)}' for c in f.fields) + ")"
    if f.type == "array":
        assert f.items is not None
        return duckdb_type(f.items) + "[]"
    return SCALARS[f.type][1]


def hive_type(f: Field) -> str:
    """Glue/Athena (Hive DDL) type of a field."""
    if f.type == "struct":
        return "struct<" + ",".join(f"{c.name}:{hive_type(c)}" for c in f.fields) + ">"
    if f.type == "array":
        assert f.items is not None
        return f"array<{hive_type(f.items)}>"
    return SCALARS[f.type][2]


def markdown(schema: TableSchema) -> str:
    """Schema documentation, generated so the docs cannot drift from the schema file."""
    lines = [
        f"# Table `{schema.name}` (schema version {schema.version})",
        "",
        f"Generated from `schemas/{schema.name}.v{schema.version}.yaml` by `trailsight schema`; do not edit.",
        "",
        "| column | type (Athena) | CloudTrail field | description |",
        "|---|---|---|---|",
    ]
    for c in schema.columns:
        lines.append(f"| `{c.name}` | `{hive_type(c)}` | `{c.source}` | {c.doc} |")
    lines += ["", "## Lineage columns", "", "| column | type (Athena) | description |", "|---|---|---|"]
    lines += [f"| `{c.name}` | `{hive_type(c)}` | {c.doc} |" for c in schema.lineage]
    lines += ["", "## Clustering columns", "", "Each data file is sorted by these, so that their statistics prune.", "",
              "| column | type (Athena) | description |", "|---|---|---|"]
    lines += [f"| `{c.name}` | `{hive_type(c)}` | {c.doc} |" for c in schema.clustering]
    lines += [
        "",
        "## Partitions",
        "",
        "Hive-style folders, in this order: `"
        + "/".join(f"{p.name}=..." for p in schema.partitions)
        + "/part-<hash>.parquet`.",
        "",
        "| partition | type | value |",
        "|---|---|---|",
    ]
    lines += [f"| `{p.name}` | `{hive_type(p)}` | {p.doc} |" for p in schema.partitions]
    return "\n".join(lines) + "\n"
