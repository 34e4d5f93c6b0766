"""The report SQL files: headers, bound parameters, one definition of shared expressions, Athena/Trino-ready."""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from trailsight.query.athena import render
from trailsight.query.sqlfiles import SQL_DIR, SqlFile, load_derived, load_sql, load_views
from trailsight.report.daily import REPORTS

REPORT_PREFIXES = ("summary", "top_callers", "failed_calls", "spikes_", "security_")
REPORT_FILES = sorted(p.stem for p in SQL_DIR.glob("*.sql") if p.stem.startswith(REPORT_PREFIXES))
PARAMETER = re.compile(r"\$([a-z_]+)")


def test_every_report_has_sql_files() -> None:
    for name in REPORTS:
        assert any(f.startswith(name) for f in REPORT_FILES), f"no sql/{name}*.sql"


@pytest.mark.parametrize("name", REPORT_FILES)
def test_report_sql_file_has_a_header(name: str) -> None:
    query = load_sql(name)
    assert query.title and query.title != name
    assert len(query.description) > 40
    assert query.parameters, "a daily report takes at least the day"


@pytest.mark.parametrize("name", REPORT_FILES)
def test_report_sql_binds_exactly_the_parameters_its_header_names(name: str) -> None:
    query = load_sql(name)
    body = "\n".join(line for line in query.sql.splitlines() if not line.lstrip().startswith("--"))
    assert set(PARAMETER.findall(body)) == set(query.parameters)
    assert "{" not in body, "no Python formatting in SQL files"


@pytest.mark.parametrize("name", REPORT_FILES)
@pytest.mark.parametrize("dialect", ["athena", "trino"])
def test_report_sql_parses_as_duckdb_and_transpiles(name: str, dialect: str) -> None:
    tree = sqlglot.parse_one(load_sql(name).sql, read="duckdb")
    sqlglot.parse_one(tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE), read=dialect)
    rendered = render(load_sql(name).sql).sql
    assert re.search(r"\bFROM cloudtrail\b", rendered), "with views and derived tables inlined, it reads the table"
    sqlglot.parse_one(rendered, read=dialect)


@pytest.mark.parametrize(("derived", "body"), [
    ("principal", "THEN coalesce(useridentity.sessioncontext.sessionissuer.arn, useridentity.arn"),
    ("error_family", "THEN 'authentication'"),
    ("failed", "coalesce(errorcode, '') <> '' OR coalesce(errormessage, '') <> ''"),
])
def test_shared_derived_columns_are_defined_once_in_the_view(derived: str, body: str) -> None:
    """The definition itself, not its alias, appears in no report or derived table: a copy could be renamed."""
    def flat(sql: str) -> str:
        return " ".join(sql.split())

    (view,) = [v for v in load_views() if v.name == "cloudtrail_calls"]
    assert f"AS {derived}" in view.sql and body in flat(view.sql)
    for query in [*(load_sql(name) for name in REPORT_FILES), *load_derived()]:
        assert body not in flat(query.sql), f"{query.name}.sql repeats the view's {derived}"


@pytest.mark.parametrize("query", [*load_views(), *load_derived()], ids=lambda q: q.name)
def test_views_and_derived_tables_transpile_to_athena_and_trino(query: SqlFile) -> None:
    for dialect in ("athena", "trino"):
        tree = sqlglot.parse_one(query.sql, read="duckdb")
        rendered = tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
        sqlglot.parse_one(rendered, read=dialect)
