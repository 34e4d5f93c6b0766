"""Every statement as Athena receives it, checked without sqlglot: Trino's own grammar (`trino-query-parser`) parses
it, its `?` parameters sit in WHERE clauses, it calls only Athena engine v3 functions (athena-engine-v3.toml) and
fits Athena's size limit; and the same text, parameters substituted, run on DuckDB over the lake, gives every
report exactly its native answer.

moto runs no SQL and DuckDB is not Trino: what is proven is the text (grammar, functions, parameters, size) and
that its meaning is the native query's wherever DuckDB and Trino agree on a construct.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import build_lake, report_lake_events
from test_detections import _events as detection_events
from trino_grammar import inspect_statement, parse
from trino_query_parser.SqlBaseLexer import SqlBaseLexer

from trailsight.query.athena import AthenaEngine, AthenaSettings, athena_literal, engine_facts, render
from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.query.sqlfiles import SQL_DIR, load_sql
from trailsight.report.daily import REPORTS

ATHENA_FUNCTIONS = {name for names in engine_facts()["functions"].values() for name in names}
REGISTERED = {"spike_series": "trailsight_tmp_spike_series_0123456789ab",
              "spike_windows": "trailsight_tmp_spike_windows_0123456789ab"}


def as_sent(name: str) -> tuple[str, tuple[str, ...]]:
    """The text Athena receives for `sql/<name>.sql`, registered tables named as the engine names them."""
    engine = AthenaEngine(AthenaSettings(database="audit"))
    engine.tables = dict(REGISTERED)
    query = load_sql(name)
    rendered = render(engine._with_tables(query.sql), query.arrays)
    return rendered.sql, rendered.parameter_names


def problems(sql: str, parameter_names: Sequence[str]) -> list[str]:
    """What Athena engine v3 would refuse in one statement."""
    found = inspect_statement(sql)
    issues = [f"`?` outside WHERE: {text}" for text in found.parameters_outside_where]
    issues += [f"not an Athena v3 function: {name}" for name in sorted(found.functions - ATHENA_FUNCTIONS)]
    if found.parameters != len(parameter_names):
        issues.append(f"{found.parameters} `?` for {len(parameter_names)} parameters")
    if len(sql.encode()) > engine_facts()["limits"]["query_bytes"]:
        issues.append(f"{len(sql.encode()):,} bytes")
    return issues


@pytest.mark.parametrize("name", sorted(path.stem for path in SQL_DIR.glob("*.sql")))
def test_every_sql_file_as_sent_to_athena_passes_trinos_grammar_and_athenas_rules(name: str) -> None:
    sql, parameter_names = as_sent(name)
    assert problems(sql, parameter_names) == []


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT principal FROM t GROUP BY principal HAVING count(*) >= ?", "`?` outside WHERE"),
    ("SELECT principal FROM t WHERE day = ? LIMIT ?", "`?` outside WHERE"),
    ("SELECT list_distinct(x) FROM t", "not an Athena v3 function: list_distinct"),
])
def test_the_checks_catch_what_athena_refuses(sql: str, expected: str) -> None:
    assert any(issue.startswith(expected) for issue in problems(sql, ["p"] * sql.count("?")))


def test_trinos_grammar_rejects_duckdb_only_syntax() -> None:
    with pytest.raises(Exception, match=r"mismatched|extraneous|no viable|missing"):
        parse("SELECT * EXCLUDE (eventid) FROM cloudtrail")


def substituted(sql: str, values: Sequence[Any]) -> str:
    """The statement with each `?` token (found by Trino's lexer, so none inside literals or comments) replaced by
    the literal Athena binds for it."""
    from antlr4 import CommonTokenStream, InputStream

    stream = CommonTokenStream(SqlBaseLexer(InputStream(sql)))
    stream.fill()
    marks = [token.start for token in stream.tokens if token.type == SqlBaseLexer.QUESTION_MARK]
    assert len(marks) == len(values)
    for position, value in reversed(list(zip(marks, values, strict=True))):
        sql = sql[:position] + athena_literal(value) + sql[position + 1:]
    return sql


class AthenaTextOnDuckDB(DuckDBEngine):
    """Runs each query as Athena would receive it (rendered, parameters as Athena binds them, arrays as JSON) on
    DuckDB, after checking the text against Trino's grammar and Athena's rules; derived tables are computed from
    their inlined definitions, as on Athena."""

    def __init__(self, lake: Path) -> None:
        super().__init__(lake)
        self.statements = 0

    def query(self, sql: str, parameters: dict[str, Any] | None = None,
              arrays: Sequence[str] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        rendered = render(sql, arrays)
        assert problems(rendered.sql, rendered.parameter_names) == []
        text = substituted(rendered.sql, [(parameters or {})[n] for n in rendered.parameter_names])
        columns, rows = super().query(text)
        self.statements += 1
        positions = [columns.index(name) for name in arrays]
        decoded = []
        for row in rows:
            undeclared = [c for i, (c, v) in enumerate(zip(columns, row, strict=True))
                          if isinstance(v, list) and i not in positions]
            assert not undeclared, f"list columns missing from the SQL file's `-- arrays:` header: {undeclared}"
            cells = list(row)
            for index in positions:
                cells[index] = None if cells[index] is None else json.loads(cells[index])
            decoded.append(tuple(cells))
        return columns, decoded

    def use_derived(self, name: str, start: date, end: date) -> None:
        """Nothing: as on Athena, the definition is part of each query."""


DAY = date(2024, 3, 10)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events = report_lake_events(datetime(2024, 3, 10, tzinfo=UTC)) + detection_events()
    return build_lake(tmp_path_factory.mktemp("athena-text"), events)


@pytest.mark.parametrize("name", list(REPORTS))
def test_each_report_run_from_athenas_text_on_duckdb_gives_the_native_answer(lake: Path, name: str) -> None:
    native = REPORTS[name](lake, DAY)
    engine = AthenaTextOnDuckDB(lake)
    try:
        assert REPORTS[name](lake, DAY, engine=engine) == native
    finally:
        engine.close()
    assert engine.statements >= 1
