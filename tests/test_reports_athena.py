"""Reports on Athena: the same SQL files, rendered by sqlglot, sent to Athena (moto), results into the same outputs.

moto executes no SQL. The test runs a report on DuckDB while recording each query's result, injects those
results into moto as Athena's answers, runs the report again through the Athena engine and compares: this
proves the SQL sent (rendered from the same file, parameters bound) and the handling of Athena's results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from report_fixtures import build_lake, report_lake_events

from trailsight.query.athena import AthenaEngine, AthenaSettings, render
from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.query.engine import EngineSettings
from trailsight.query.sqlfiles import load_sql
from trailsight.report.daily import REPORTS, summary_report, write_daily_report
from trailsight.storage.aws import client
from trailsight.storage.store import as_storage

DAY = date(2024, 3, 10)


class RecordingEngine(DuckDBEngine):
    """DuckDB that keeps every query's columns and rows."""

    def __init__(self, lake: Path) -> None:
        super().__init__(lake)
        self.answers: list[tuple[list[str], list[tuple[Any, ...]]]] = []

    def query(self, sql: str, parameters: dict[str, Any] | None = None,
              arrays: Sequence[str] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        columns, rows = super().query(sql, parameters, arrays)
        self.answers.append((columns, rows))
        return columns, rows


def athena_type(values: list[Any]) -> str:
    sample = next((v for v in values if v is not None), "")
    if isinstance(sample, list):
        return "json"
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
    if isinstance(value, list):  # a JSON column; moto writes its CSV without doubling quotes, Athena doubles them
        return orjson.dumps(value).decode().replace('"', '""')
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
    recording = RecordingEngine(lake)
    expected = summary_report(lake, DAY, engine=recording)
    for columns, rows in recording.answers:
        inject(moto_endpoint, columns, rows)
    athena = AthenaEngine(AthenaSettings(database="audit", output=f"{s3_bucket}/results/"))
    assert summary_report(lake, DAY, engine=athena) == expected
    run, *_ = athena.runs  # the headline, then the 7-day trend and the per-account and per-region breakdown
    assert len(athena.runs) == len(recording.answers) == 3
    sent = client("athena").get_query_execution(QueryExecutionId=run.query_id)["QueryExecution"]
    assert sent["Query"] == render(load_sql("summary").sql).sql
    assert sent["ExecutionParameters"] == ["DATE '2024-03-10'"]
    assert sent["QueryExecutionContext"]["Database"] == "audit"


@pytest.mark.parametrize("name", [name for name in REPORTS if name != "summary"])
def test_every_report_on_athena_gives_the_duckdb_answer_lists_included(lake: Path, moto_endpoint: str,
                                                                       s3_bucket: str, name: str) -> None:
    database = f"audit_{name}"
    client("glue").create_database(DatabaseInput={"Name": database})
    recording = RecordingEngine(lake)
    expected = REPORTS[name](lake, DAY, engine=recording)
    recording.close()
    for columns, rows in recording.answers:
        inject(moto_endpoint, columns, rows)
    athena = AthenaEngine(AthenaSettings(database=database, output=f"{s3_bucket}/results/"))
    assert REPORTS[name](lake, DAY, engine=athena) == expected
    assert len(athena.runs) == len(recording.answers)
    assert not [t for t in client("glue").get_tables(DatabaseName=database)["TableList"]]


def test_registered_tables_are_parquet_in_s3_behind_a_temporary_glue_table(s3_bucket: str) -> None:
    client("glue").create_database(DatabaseInput={"Name": "scratch"})
    athena = AthenaEngine(AthenaSettings(database="scratch", output=f"{s3_bucket}/results/"))
    when = datetime(2024, 3, 10, 12, 30, tzinfo=UTC)
    rows = pa.table({"account": ["1", "2"], "calls": [3, 4], "window_start": [when, when]})
    athena.register("spike_series", rows)
    glue_name = athena.tables["spike_series"]
    table = client("glue").get_table(DatabaseName="scratch", Name=glue_name)["Table"]
    assert [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]] == [
        ("account", "string"), ("calls", "bigint"), ("window_start", "timestamp")]
    folder = as_storage(table["StorageDescriptor"]["Location"])
    stored = pq.read_table(pa.BufferReader(folder.read_bytes("part-0.parquet")))
    assert stored.column("calls").to_pylist() == [3, 4]
    assert stored.column("window_start").to_pylist() == [when.replace(tzinfo=None)] * 2
    sql = athena._with_tables("SELECT s.account FROM spike_series AS s JOIN cloudtrail c ON c.account = s.account")
    assert f"scratch.{glue_name} AS s" in sql and "VALUES" not in sql
    athena.unregister("spike_series")
    assert not client("glue").get_tables(DatabaseName="scratch")["TableList"]
    assert not folder.exists("part-0.parquet")


def test_thousands_of_spike_candidates_keep_the_query_under_athenas_limit(s3_bucket: str) -> None:
    client("glue").create_database(DatabaseInput={"Name": "many"})
    athena = AthenaEngine(AthenaSettings(database="many", output=f"{s3_bucket}/results/"))
    series = pa.table({name: [f"{name}-{n:06d}" for n in range(20_000)]
                       for name in ("insight_type", "account", "region", "eventsource", "eventname", "errorcode")})
    athena.register("spike_series", series)
    try:
        sent = render(athena._with_tables(load_sql("spikes_history_days").sql)).sql
    finally:
        athena.close()
    assert len(sent.encode()) < 10_000


def test_report_summary_records_athena_bytes_and_cost(lake: Path, moto_endpoint: str, s3_bucket: str,
                                                      tmp_path: Path) -> None:
    recording = RecordingEngine(lake)
    summary_report(lake, DAY, engine=recording)
    for columns, rows in recording.answers:
        inject(moto_endpoint, columns, rows)
    settings = EngineSettings("athena", AthenaSettings(database="audit", output=f"{s3_bucket}/results/"))
    written = write_daily_report(lake, DAY, tmp_path, reports="summary", engine=settings)
    assert written.engine["engine"] == "athena" and written.engine["queries"] == 3
    assert written.engine["cost_usd"] > 0 and written.engine["usd_per_tb"] == 5.0
    recorded = json.loads((tmp_path / "summary.json").read_text())["engine"]
    assert recorded["query_ids"] == written.engine["query_ids"] and recorded["bytes_scanned"] == 0
