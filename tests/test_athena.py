"""Athena engine: the Glue table from the schema, SQL rendered by sqlglot, the call path against moto.

moto runs no SQL: these tests check the catalog created, the SQL and parameters sent, and the handling of
results injected into moto, never that a query computed anything.
"""

from __future__ import annotations

from datetime import date

import pytest
import requests
import sqlglot

from trailsight.errors import UsageError
from trailsight.query.athena import AthenaSettings, create_tables, ddl, render, run_query, scan_cost
from trailsight.schema import load_schema
from trailsight.storage.aws import client


def test_render_turns_named_parameters_into_ordered_placeholders() -> None:
    rendered = render("SELECT count(*) FROM cloudtrail WHERE event_date = $day AND account = $account "
                      "AND errorcode LIKE $day_pattern")
    assert rendered.parameter_names == ("day", "account", "day_pattern")
    assert rendered.sql.count("?") == 3 and "$" not in rendered.sql
    sqlglot.parse_one(rendered.sql, read="trino")


def test_parameters_follow_the_text_order_even_across_with_clauses() -> None:
    rendered = render("WITH d AS (SELECT * FROM cloudtrail WHERE event_date = $day) SELECT * FROM d LIMIT $limit")
    assert rendered.parameter_names == ("day", "limit")


def test_shared_views_are_added_as_with_clauses() -> None:
    rendered = render("WITH x AS (SELECT principal FROM cloudtrail_calls WHERE event_date = $day) SELECT * FROM x")
    assert rendered.sql.startswith("WITH cloudtrail_calls AS (")
    assert rendered.sql.index("cloudtrail_calls AS") < rendered.sql.index("x AS")
    assert rendered.parameter_names == ("day",)
    sqlglot.parse_one(rendered.sql, read="trino")


def test_render_translates_duckdb_functions() -> None:
    rendered = render("SELECT count(*) FILTER (WHERE readonly) AS reads, list_distinct(list(eventname)) "
                      "FROM cloudtrail")
    assert "ARRAY_DISTINCT(ARRAY_AGG(eventname))" in rendered.sql


def test_ddl_needs_an_s3_lake(tmp_path) -> None:
    with pytest.raises(UsageError, match="Athena needs the lake in S3"):
        ddl(tmp_path, AthenaSettings())


def test_ddl_uses_partition_projection_and_parquet(s3_bucket: str) -> None:
    text = ddl(f"{s3_bucket}/lake", AthenaSettings(database="audit"))
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `audit`.`cloudtrail`" in text
    assert "'projection.event_date.type' = 'date'" in text
    assert f"'storage.location.template' = '{s3_bucket}/lake/cloudtrail/event_date=${{event_date}}" in text
    assert "ParquetHiveSerDe" in text and "MSCK" not in text
    assert "`requestparameters` string" in text and "`eventtime` timestamp" in text
    assert "PARTITIONED BY (\n  `event_date` date,\n  `account` string,\n  `region` string\n)" in text


def test_glue_tables_are_created_idempotently_with_projection(s3_bucket: str) -> None:
    settings = AthenaSettings(database="audit_db")
    first = create_tables(f"{s3_bucket}/lake", settings)
    assert first == ["created database audit_db", "created table audit_db.cloudtrail",
                     "created table audit_db.cloudtrail_insights"]
    second = create_tables(f"{s3_bucket}/lake", settings)
    assert second == ["updated table audit_db.cloudtrail", "updated table audit_db.cloudtrail_insights"]
    table = client("glue").get_table(DatabaseName="audit_db", Name="cloudtrail")["Table"]
    params = table["Parameters"]
    assert params["projection.enabled"] == "true" and params["projection.event_date.format"] == "yyyy-MM-dd"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["event_date", "account", "region"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert list(columns) == [c.name for c in load_schema().data_columns]
    assert columns["responseelements"] == "string" and columns["readonly"] == "boolean"
    assert columns["eventhash"] == "bigint"


def inject_results(endpoint: str, header: list[str], rows: list[list[str]]) -> None:
    column_info = [{"Name": h, "Type": "varchar", "CatalogName": "", "SchemaName": "", "TableName": "", "Label": h,
                    "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": True} for h in header]
    data = [{"Data": [{"VarCharValue": v} for v in row]} for row in [header, *rows]]
    response = requests.post(f"{endpoint}/moto-api/static/athena/query-results",
                             json={"results": [{"rows": data, "column_info": column_info}], "region": "us-east-1"})
    response.raise_for_status()


def test_query_path_sends_rendered_sql_with_bound_parameters(moto_endpoint: str, s3_bucket: str) -> None:
    inject_results(moto_endpoint, ["eventname", "calls"], [["RunInstances", "42"], ["StopLogging", "1"]])
    settings = AthenaSettings(database="audit_db", output=f"{s3_bucket}/athena-results/")
    sql = "SELECT eventname, count(*) AS calls FROM cloudtrail WHERE event_date = $day GROUP BY eventname"
    run = run_query(sql, {"day": date(2024, 5, 1)}, settings)
    assert run.columns == ["eventname", "calls"]
    assert [r[0] for r in run.rows] == ["RunInstances", "StopLogging"]
    sent = client("athena").get_query_execution(QueryExecutionId=run.query_id)["QueryExecution"]
    assert sent["Query"] == render(sql).sql
    assert sent.get("ExecutionParameters") == ["DATE '2024-05-01'"]
    assert run.cost_usd == scan_cost(run.bytes_scanned)


def test_scan_cost_has_a_10_mb_minimum_and_scales_per_tb() -> None:
    assert scan_cost(0) == scan_cost(10 * 1024 * 1024)
    assert scan_cost(2 * 10**12) == pytest.approx(10.0)
