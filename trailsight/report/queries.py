"""Running the report SQL files (`sql/*.sql`) on an engine: the one place reports, detections and spikes share.

Kept apart from `daily` so that the modules `daily` imports (detections, insights) can run SQL without
importing `daily` back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trailsight.errors import QueryError, UsageError
from trailsight.query.engine import Engine
from trailsight.query.sqlfiles import load_sql

Rows = list[dict[str, Any]]


def run_report_sql(engine: Engine, name: str, **parameters: Any) -> Rows:
    """Run `sql/<name>.sql` with exactly the parameters its header names, bound (never pasted)."""
    query = load_sql(name)
    wanted, given = set(query.parameters), set(parameters)
    if wanted != given:
        raise UsageError(f"{name}.sql takes parameters {sorted(wanted)}, got {sorted(given)}")
    return run_query(engine, name, query.sql, {key: parameters[key] for key in query.parameters}, query.arrays)


def run_query(engine: Engine, name: str, sql: str, parameters: dict[str, Any], arrays: Sequence[str] = ()) -> Rows:
    """Run SQL with named parameters on the engine and return rows as dicts."""
    try:
        columns, rows = engine.query(sql, parameters, arrays)
    except QueryError as exc:
        raise QueryError(f"report query {name} failed: {exc}") from exc
    return [dict(zip(columns, row, strict=True)) for row in rows]
