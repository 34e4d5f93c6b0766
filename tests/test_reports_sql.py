"""The report SQL files: headers, bound parameters, one definition of shared expressions, Athena/Trino-ready."""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from trailsight.reports import REPORTS
from trailsight.sqlfiles import SQL_DIR, load_sql

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
    rendered = tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    assert "cloudtrail" in rendered
    sqlglot.parse_one(rendered, read=dialect)


def _blocks(marker: str) -> dict[str, str]:
    """The CASE expression ending in `END AS <marker>` of every file that has one, whitespace-normalized."""
    found = {}
    for name in REPORT_FILES:
        text = load_sql(name).sql
        end = text.find(f"END AS {marker}")
        if end < 0:
            continue
        start = text.rfind("CASE\n", 0, end)
        found[name] = " ".join(text[start:end].split())
    return found


@pytest.mark.parametrize("marker", ["principal", "family"])
def test_shared_expressions_are_identical_in_every_file(marker: str) -> None:
    blocks = _blocks(marker)
    assert len(blocks) >= 2
    assert len(set(blocks.values())) == 1, f"the {marker} expression differs between {sorted(blocks)}"
