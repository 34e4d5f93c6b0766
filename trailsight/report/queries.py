"""Running the report SQL files (`sql/*.sql`): the one place reports, detections and spikes share.

Kept apart from `daily` so that the modules `daily` imports (detections, insights) can run SQL without
importing `daily` back.
"""

from __future__ import annotations

from typing import Any

import duckdb

from trailsight.errors import QueryError, UsageError, first_line
from trailsight.query.sqlfiles import load_sql

Rows = list[dict[str, Any]]


def run_report_sql(con: duckdb.DuckDBPyConnection, name: str, **parameters: Any) -> Rows:
    """Run `sql/<name>.sql` with exactly the parameters its header names, bound (never pasted)."""
    query = load_sql(name)
    wanted, given = set(query.parameters), set(parameters)
    if wanted != given:
        raise UsageError(f"{name}.sql takes parameters {sorted(wanted)}, got {sorted(given)}")
    return run_query(con, name, query.sql, {key: parameters[key] for key in query.parameters})


def run_query(con: duckdb.DuckDBPyConnection, name: str, sql: str, parameters: dict[str, Any]) -> Rows:
    """Run SQL with named parameters (on DuckDB or the Athena connection) and return rows as dicts."""
    try:
        cursor = con.execute(sql, parameters)
        columns = [d[0] for d in cursor.description or []]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    except duckdb.Error as exc:
        raise QueryError(f"report query {name} failed: {first_line(exc)}") from exc
