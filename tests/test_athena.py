"""Athena engine: the Glue table from the schema, SQL rendered by sqlglot, the call path against moto.

moto runs no SQL: these tests check the catalog created, the SQL and parameters sent, and the handling of
results injected into moto, never that a query computed anything.
"""

from __future__ import annotations

from datetime import date

import orjson
import pytest
import requests
import sqlglot

from trailsight.errors import QueryError, UsageError
from trailsight.query.athena import (
    AthenaSettings,
    create_tables,
    ddl,
    engine_facts,
    render,
    run_query,
    scan_cost,
    update_projection,
)
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


ACCOUNTS = ("111122223333",)


def test_ddl_needs_an_s3_lake(tmp_path) -> None:
    with pytest.raises(UsageError, match="Athena needs the lake in S3"):
        ddl(tmp_path, AthenaSettings(), ACCOUNTS)


def test_ddl_is_printed_from_the_schema_alone_without_any_aws_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline: no endpoint answers, and any S3 or Glue access would fail here.
    monkeypatch.setenv("TRAILSIGHT_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    text = ddl("s3://no-such-bucket/lake", AthenaSettings(database="audit"), ("222233334444", "111122223333"))
    assert "'projection.account.values' = '111122223333,222233334444'" in text


def test_ddl_refuses_missing_or_malformed_account_ids() -> None:
    with pytest.raises(UsageError, match="pass --account"):
        ddl("s3://bucket/lake", AthenaSettings())
    with pytest.raises(UsageError, match="not an AWS account id"):
        ddl("s3://bucket/lake", AthenaSettings(), ("1234",))


def test_ddl_uses_partition_projection_and_parquet(s3_bucket: str) -> None:
    text = ddl(f"{s3_bucket}/lake", AthenaSettings(database="audit"), ACCOUNTS)
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `audit`.`cloudtrail`" in text
    assert "'projection.event_date.type' = 'date'" in text
    assert f"'storage.location.template' = '{s3_bucket}/lake/cloudtrail/event_date=${{event_date}}" in text
    assert "ParquetHiveSerDe" in text and "MSCK" not in text
    assert "`requestparameters` string" in text and "`eventtime` timestamp" in text
    assert "PARTITIONED BY (\n  `event_date` date,\n  `account` string\n)" in text
    assert "`region` string" in text.split("PARTITIONED BY")[0] and "projection.region" not in text


def test_glue_tables_are_created_idempotently_with_projection(s3_bucket: str) -> None:
    settings = AthenaSettings(database="audit_db")
    first = create_tables(f"{s3_bucket}/lake", settings, ACCOUNTS)
    assert first == ["created database audit_db", "created table audit_db.cloudtrail",
                     "created table audit_db.cloudtrail_insights"]
    second = create_tables(f"{s3_bucket}/lake", settings, ACCOUNTS)
    assert second == ["updated table audit_db.cloudtrail", "updated table audit_db.cloudtrail_insights"]
    table = client("glue").get_table(DatabaseName="audit_db", Name="cloudtrail")["Table"]
    params = table["Parameters"]
    assert params["projection.enabled"] == "true" and params["projection.event_date.format"] == "yyyy-MM-dd"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["event_date", "account"]
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


def test_new_accounts_reach_the_projection_without_create(s3_bucket: str) -> None:
    settings = AthenaSettings(database=f"db_{s3_bucket[-8:]}")
    create_tables(f"{s3_bucket}/lake", settings, ACCOUNTS)
    written = ["cloudtrail/event_date=2024-05-01/account=999988887777",
               "cloudtrail/event_date=2024-05-01/account=111122223333",
               "cloudtrail_insights/event_date=2024-05-01/account=999988887777"]
    added = update_projection(settings, written)
    assert added == [f"{settings.database}.cloudtrail: account 999988887777 added",
                     f"{settings.database}.cloudtrail_insights: account 999988887777 added"]
    glue = client("glue")
    table = glue.get_table(DatabaseName=settings.database, Name="cloudtrail")["Table"]
    assert table["Parameters"]["projection.account.values"] == "111122223333,999988887777"
    assert table["Parameters"]["storage.location.template"] == (
        f"{s3_bucket}/lake/cloudtrail/event_date=${{event_date}}/account=${{account}}")
    assert [k["Name"] for k in table["PartitionKeys"]] == ["event_date", "account"]
    assert update_projection(settings, written) == []


def test_a_query_over_athenas_size_limit_is_refused_before_sending(moto_endpoint: str, s3_bucket: str) -> None:
    limit = engine_facts()["limits"]["query_bytes"]
    padding = "x" * limit
    before = client("athena").list_query_executions()["QueryExecutionIds"]
    with pytest.raises(QueryError, match=f"Athena takes at most {limit:,}"):
        run_query(f"SELECT '{padding}' AS x", {}, AthenaSettings(output=f"{s3_bucket}/results/"))
    assert client("athena").list_query_executions()["QueryExecutionIds"] == before


def test_arrays_arrive_as_lists_even_with_commas_and_brackets_inside(moto_endpoint: str, s3_bucket: str) -> None:
    values = ["a, b", "c]", '"quoted"', "plain"]
    # moto writes the result CSV without doubling quotes, as Athena does: the test doubles them so the file at the
    # output location is what Athena writes for a JSON column.
    text = orjson.dumps(values).decode().replace('"', '""')
    inject_typed_results(moto_endpoint, [("principal", "varchar"), ("api_list", "json")], [["alice", text]])
    run = run_query("SELECT principal, array_agg(eventname) AS api_list FROM cloudtrail GROUP BY principal", {},
                    AthenaSettings(output=f"{s3_bucket}/results/"), arrays=("api_list",))
    assert run.rows == [("alice", values)]
    sent = client("athena").get_query_execution(QueryExecutionId=run.query_id)["QueryExecution"]["Query"]
    assert "CAST(ARRAY_AGG(eventname) AS JSON) AS api_list" in sent


def test_an_array_not_sent_as_json_is_refused_not_garbled(moto_endpoint: str, s3_bucket: str) -> None:
    inject_typed_results(moto_endpoint, [("api_list", "array")], [["[a, b]"]])
    with pytest.raises(QueryError, match="column api_list is an Athena array"):
        run_query("SELECT array_agg(eventname) AS api_list FROM cloudtrail", {},
                  AthenaSettings(output=f"{s3_bucket}/results/"))


def inject_typed_results(endpoint: str, columns: list[tuple[str, str]], rows: list[list[str]]) -> None:
    column_info = [{"Name": name, "Type": kind, "CatalogName": "", "SchemaName": "", "TableName": "", "Label": name,
                    "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": True} for name, kind in columns]
    data = [{"Data": [{"VarCharValue": v} for v in row]} for row in [[name for name, _ in columns], *rows]]
    response = requests.post(f"{endpoint}/moto-api/static/athena/query-results",
                             json={"results": [{"rows": data, "column_info": column_info}], "region": "us-east-1"})
    response.raise_for_status()


def test_cli_athena_ddl_prints_offline_from_the_schema(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from trailsight.cli.main import run

    monkeypatch.setenv("TRAILSIGHT_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert run(["athena", "ddl", "--lake", "s3://no-such-bucket/lake", "--account", "111122223333"]) == 0
    assert capsys.readouterr().out.count("CREATE EXTERNAL TABLE") == 2
    assert run(["athena", "ddl", "--lake", "s3://no-such-bucket/lake"]) != 0


def test_cli_sql_on_athena_prints_the_rows_and_the_cost(moto_endpoint: str, s3_bucket: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from trailsight.cli.main import run

    inject_typed_results(moto_endpoint, [("eventname", "varchar"), ("calls", "bigint")], [["RunInstances", "42"]])
    assert run(["sql", "--lake", f"{s3_bucket}/lake", "--engine", "athena", "--output-location",
                f"{s3_bucket}/results/", "--format", "json",
                "SELECT eventname, count(*) AS calls FROM cloudtrail GROUP BY eventname"]) == 0
    captured = capsys.readouterr()
    assert "RunInstances" in captured.out and "42" in captured.out
    assert captured.err.startswith("Athena query ") and "bytes scanned" in captured.err
