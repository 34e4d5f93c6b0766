"""SQL kept in `sql/*.sql` files, each with a header saying what it answers and which parameters it binds.

Header lines come first, as `-- key: value` comments (title, description, parameters, arrays); the rest is the
query. Parameters are bound by name (`$day`), never pasted into the text. `arrays` names the result columns that
hold lists, which engines that return text (Athena) send as JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

from trailsight.errors import UsageError
from trailsight.query.detection_library import DERIVED_NAME, derived_sql, load_library
from trailsight.resources import package_folder

SQL_DIR = package_folder("trailsight.sql")
VIEWS_DIR = SQL_DIR / "views"
DERIVED_DIR = SQL_DIR / "derived"
HEADER = re.compile(r"^--\s*(\w+):\s*(.*)$")
# Athena's JSON function, so analysts' existing CloudTrail queries run unchanged on DuckDB.
ATHENA_COMPAT_MACROS = (
    "CREATE OR REPLACE MACRO json_extract_scalar(doc, path) AS json_extract_string(doc, path)",
    "CREATE OR REPLACE MACRO regexp_like(text, pattern) AS regexp_matches(text, pattern)",
    "CREATE OR REPLACE MACRO json_format(doc) AS CAST(doc AS VARCHAR)",
)


@dataclass(frozen=True)
class SqlFile:
    name: str
    title: str
    description: str
    parameters: tuple[str, ...]
    sql: str
    arrays: tuple[str, ...] = ()


def parse_sql_file(name: str, text: str) -> SqlFile:
    header: dict[str, str] = {}
    lines = text.splitlines()
    body_start = 0
    for index, line in enumerate(lines):
        match = HEADER.match(line)
        if not match:
            body_start = index
            break
        header[match[1].lower()] = match[2].strip()
    return SqlFile(name, header.get("title", name), header.get("description", ""), _names(header, "parameters"),
                   "\n".join(lines[body_start:]).strip().rstrip(";"), _names(header, "arrays"))


def _names(header: dict[str, str], key: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in header.get(key, "").split(",") if p.strip() and p.strip() != "none")


@cache
def load_sql(name: str) -> SqlFile:
    path = SQL_DIR / f"{name}.sql"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SQL_DIR.glob("*.sql")))
        raise UsageError(f"no SQL file named {name!r}; known: {known}")
    return parse_sql_file(name, path.read_text())


@cache
def load_views() -> tuple[SqlFile, ...]:
    """Views over the lake tables (`sql/views/*.sql`), shared by the reports: created in DuckDB, inlined as
    WITH clauses for Athena."""
    return _load_folder(VIEWS_DIR)


@cache
def load_derived() -> tuple[SqlFile, ...]:
    """Tables derived from each data file of the lake (`sql/derived/*.sql`, and `detection_events` compiled from
    the detection library), see trailsight.lake.derived."""
    library = parse_sql_file(DERIVED_NAME, derived_sql(load_library()))
    return (*_load_folder(DERIVED_DIR), library)


def _load_folder(folder: Path) -> tuple[SqlFile, ...]:
    return tuple(parse_sql_file(path.stem, path.read_text()) for path in sorted(folder.glob("*.sql")))


def prepare_connection(con: duckdb.DuckDBPyConnection) -> None:
    """What every DuckDB connection over the lake needs before its tables: UTC times and Athena's functions."""
    con.execute("SET TimeZone = 'UTC'")
    for macro in ATHENA_COMPAT_MACROS:
        con.execute(macro)


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """The shared views (`sql/views`), once the connection has its `cloudtrail` table."""
    for view in load_views():
        con.execute(f"CREATE VIEW {view.name} AS {view.sql}")
