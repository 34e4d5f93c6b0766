"""Reports on Athena: the same SQL files, rendered by sqlglot, sent to Athena (moto), results into the same outputs.

moto executes no SQL. The test runs a report on DuckDB while recording each query's result, injects those
results into moto as Athena's answers, runs the report again through the Athena engine and compares: this
proves the SQL sent (rendered from the same file, parameters bound) and the handling of Athena's results.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from report_fixtures import build_lake, report_lake_events

from trailsight.query.athena import AthenaConnection, AthenaSettings, render
from trailsight.query.duckdb_engine import connect
from trailsight.query.sqlfiles import load_sql
from trailsight.report.daily import summary_report, write_daily_report
from trailsight.storage.aws import client

DAY = date(2024, 3, 10)


class RecordingConnection:
    """A DuckDB connection that keeps every query's columns and rows."""

    def __init__(self, lake: Path) -> None:
        self.con = connect(lake)
        self.answers: list[tuple[list[str], list[tuple[Any, ...]]]] = []

    def execute(self, sql: str, parameters: dict[str, Any] | None = None) -> RecordingConnection:
        cursor = self.con.execute(sql, parameters or {})
        self.description = cursor.description
        self.rows = cursor.fetchall()
        self.answers.append(([d[0] for d in self.description], self.rows))
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


def athena_type(values: list[Any]) -> str:
    sample = next((v for v in values if v is not None), "")
    if isinstance(sample, bool):
        return "boolean"
    if isinstance(sample, int):
        return "bigint"
    if isinstance(sample, float | Decimal):
        return "double"
    if isinstance(sample, datetime):
        return "timestamp"
    if isinstance(sample, date):
        return "date"
    return "varchar"


def athena_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def inject(endpoint: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    types = [athena_type([row[i] for row in rows]) for i in range(len(columns))]
    info = [{"Name": c, "Type": t, "CatalogName": "", "SchemaName": "", "TableName": "", "Label": c,
             "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": True}
            for c, t in zip(columns, types, strict=True)]
    data = [{"Data": [{"VarCharValue": c} for c in columns]}]
    data += [{"Data": [{} if athena_text(v) is None else {"VarCharValue": athena_text(v)} for v in row]}
             for row in rows]
    response = requests.post(f"{endpoint}/moto-api/static/athena/query-results",
                             json={"results": [{"rows": data, "column_info": info}], "region": "us-east-1"})
    response.raise_for_status()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lake(tmp_path_factory.mktemp("athena"), report_lake_events(datetime(2024, 3, 10, tzinfo=UTC)))


def test_summary_report_on_athena_gives_the_duckdb_answer(lake: Path, moto_endpoint: str, s3_bucket: str) -> None:
    recording = RecordingConnection(lake)
    expected = summary_report(lake, DAY, con=recording)  # type: ignore[arg-type]
    for columns, rows in recording.answers:
        inject(moto_endpoint, columns, rows)
    athena = AthenaConnection(AthenaSettings(database="audit", output=f"{s3_bucket}/results/"))
    assert summary_report(lake, DAY, con=athena) == expected  # type: ignore[arg-type]
    run, *_ = athena.runs  # the headline, then the 7-day trend and the per-account and per-region breakdown
    assert len(athena.runs) == len(recording.answers) == 3
    sent = client("athena").get_query_execution(QueryExecutionId=run.query_id)["QueryExecution"]
    assert sent["Query"] == render(load_sql("summary").sql).sql
    assert sent["ExecutionParameters"] == ["DATE '2024-03-10'"]
    assert sent["QueryExecutionContext"]["Database"] == "audit"


def test_registered_tables_are_inlined_as_values(s3_bucket: str) -> None:
    import pyarrow as pa

    athena = AthenaConnection(AthenaSettings(output=f"{s3_bucket}/results/"))
    athena.register("spike_series", pa.table({"account": ["1", "2"], "calls": [3, 4]}))
    sql = athena._inline_tables("SELECT s.account FROM spike_series AS s JOIN cloudtrail c ON c.account = s.account")
    assert "VALUES ('1', 3), ('2', 4)" in sql and "spike_series(" in sql
    assert "cloudtrail" in sql


def test_report_summary_records_athena_bytes_and_cost(lake: Path, moto_endpoint: str, s3_bucket: str,
                                                      tmp_path: Path) -> None:
    recording = RecordingConnection(lake)
    summary_report(lake, DAY, con=recording)  # type: ignore[arg-type]
    for columns, rows in recording.answers:
        inject(moto_endpoint, columns, rows)
    written = write_daily_report(lake, DAY, tmp_path, reports="summary",
                                 athena=AthenaSettings(database="audit", output=f"{s3_bucket}/results/"))
    assert written.engine["engine"] == "athena" and written.engine["queries"] == 3
    assert written.engine["cost_usd"] > 0 and written.engine["usd_per_tb"] == 5.0
    recorded = json.loads((tmp_path / "summary.json").read_text())["engine"]
    assert recorded["query_ids"] == written.engine["query_ids"] and recorded["bytes_scanned"] == 0
