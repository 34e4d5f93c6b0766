"""Conversion of one object: lossless rows, and bad input reported instead of raised."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pyarrow as pa
import pytest
from conftest import make_event

from trailsight.convert.records import (
    CLOUDTRAIL_TABLE,
    INSIGHTS_TABLE,
    BadInput,
    ConvertedFile,
    convert_object,
    inflate,
    rebuild_event,
)


def gz(doc: Any) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), mtime=0)


def table_of(result: ConvertedFile, name: str = CLOUDTRAIL_TABLE) -> pa.Table:
    """All rows of one table, with the partition values as columns."""
    parts = []
    for (table, day, account), rows in result.tables.items():
        if table == name:
            n = rows.num_rows
            parts.append(rows.append_column("event_date", pa.array([day] * n, pa.date32()))
                         .append_column("account", pa.array([account] * n)))
    return pa.concat_tables(parts)


def convert(records: list[Any], key: str = "k.json.gz") -> Any:
    return convert_object(key, gz({"Records": records}), "999999999999", "eu-west-1")


def round_trip(event: dict) -> dict:
    result = convert([event])
    assert not result.quarantined, result.quarantined
    return rebuild_event(table_of(result).to_pylist()[0])


def test_plain_event_rebuilds_exactly() -> None:
    event = make_event("2024-05-01T10:00:00Z")
    assert round_trip(event) == event


def test_unknown_fields_at_every_depth_are_kept() -> None:
    event = make_event(
        "2024-05-01T10:00:00Z",
        brandNewTopLevel={"nested": [1, 2, {"x": None}]},
        userIdentity={"type": "AssumedRole", "inScopeOf": {"issuerType": "AWS::Lambda::Function"},
                      "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::1:role/r", "newKey": 1},
                                         "attributes": {"mfaAuthenticated": "false", "extra": "x"}}},
        resources=[{"ARN": "arn:aws:s3:::b", "accountId": "1", "type": "AWS::S3::Bucket", "unexpected": True}],
        tlsDetails={"tlsVersion": "TLSv1.3", "futureField": "y"},
    )
    assert round_trip(event) == event


def test_null_and_missing_fields_stay_distinct() -> None:
    event = make_event("2024-05-01T10:00:00Z", errorCode=None, resources=None, userIdentity={})
    del event["readOnly"]
    rebuilt = round_trip(event)
    assert rebuilt == event
    assert "readOnly" not in rebuilt and rebuilt["errorCode"] is None and rebuilt["userIdentity"] == {}


def test_values_of_unexpected_type_are_kept_verbatim() -> None:
    event = make_event("2024-05-01T10:00:00Z", requestParameters="a string, not an object", readOnly="true",
                       recipientAccountId=123456789012, resources={"not": "a list"})
    result = convert([event])
    row = table_of(result).to_pylist()[0]
    assert row["requestparameters"] == '"a string, not an object"'
    assert row["readonly"] is None and row["recipientaccountid"] is None
    assert rebuild_event(row) == event


def test_typed_columns_hold_typed_values() -> None:
    event = make_event("2024-05-01T10:00:00Z", readOnly=False, responseElements={"ok": True})
    row = table_of(convert([event])).to_pylist()[0]
    assert row["eventtime"].isoformat() == "2024-05-01T10:00:00+00:00"
    assert row["readonly"] is False and row["managementevent"] is True
    assert json.loads(row["requestparameters"]) == {"instancesSet": {"items": [{"instanceId": "i-0abc"}]}}
    assert row["useridentity"]["arn"].endswith(":user/alice")
    assert row["extrafields"] is None


def test_explicit_null_is_recorded_in_extrafields() -> None:
    row = table_of(convert([make_event("2024-05-01T10:00:00Z")])).to_pylist()[0]
    assert row["responseelements"] is None
    assert json.loads(row["extrafields"]) == {"responseElements": None}


def test_non_canonical_event_time_is_normalised_and_kept() -> None:
    event = make_event("2024-05-01T23:30:00.250+02:00")
    row = table_of(convert([event])).to_pylist()[0]
    assert row["eventtime"].isoformat() == "2024-05-01T21:30:00.250000+00:00"
    assert str(row["event_date"]) == "2024-05-01"
    assert rebuild_event(row) == event


def test_partition_comes_from_the_event_not_the_file_name() -> None:
    row = table_of(convert([make_event("2024-05-01T10:00:00Z", awsRegion="ap-south-1")]))
    assert row.column("account").to_pylist() == ["111122223333"]
    assert row.column("region").to_pylist() == ["ap-south-1"]


def test_partition_falls_back_to_the_key_and_refuses_unsafe_names() -> None:
    event = make_event("2024-05-01T10:00:00Z", awsRegion="../../etc")
    del event["recipientAccountId"]
    rows = table_of(convert([event]))
    assert rows.column("account").to_pylist() == ["999999999999"]
    assert rows.column("region").to_pylist() == ["eu-west-1"]


def test_insight_records_go_to_their_own_table() -> None:
    insight = make_event("2024-05-01T10:00:00Z", eventType="AwsCloudTrailInsight",
                         insightDetails={"state": "Start", "eventName": "RunInstances"})
    result = convert([insight, make_event("2024-05-01T10:00:00Z")])
    assert table_of(result, INSIGHTS_TABLE).num_rows == 1 and table_of(result).num_rows == 1
    row = table_of(result, INSIGHTS_TABLE).to_pylist()[0]
    assert json.loads(row["insightdetails"])["state"] == "Start"
    assert rebuild_event(row) == insight


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("just a string", "not an object"),
        (None, "null, not an object"),
        ({"eventSource": "aws:s3", "eventTime": "2024-01-01T00:00:00Z"}, "aws:s3 event notification"),
        ({"eventName": "X"}, "eventTime is missing"),
        ({"eventTime": "yesterday"}, "not an ISO-8601 time"),
        ({"eventTime": 1714557600}, "eventTime is int"),
    ],
)
def test_bad_records_are_quarantined_with_a_reason(record: Any, reason: str) -> None:
    good = make_event("2024-05-01T10:00:00Z")
    result = convert([good, record])
    assert result.records_read == 2
    assert table_of(result).num_rows == 1
    (bad,) = result.quarantined
    assert bad.index == 1 and reason in bad.reason and bad.record == record


def test_event_without_user_identity_or_resources_is_accepted() -> None:
    event = make_event("2024-05-01T10:00:00Z", resources=None)
    del event["userIdentity"]
    assert round_trip(event) == event


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"plain text, not gzip", "not a gzip file"),
        (gz({"Records": []})[:-12], "truncated gzip"),
        (b"\x1f\x8b\x08\x00garbage-after-the-magic", "corrupt gzip"),
        (gzip.compress(b'{"Records": [ {"eventTime": ', mtime=0), "invalid JSON"),
        (gz({"notRecords": 1}), "without a Records array"),
        (gz({"Type": "Notification", "TopicArn": "arn:aws:sns:x", "Message": "{}"}), "SNS notification"),
        (gz({"version": "0", "detail-type": "AWS API Call via CloudTrail", "detail": {}}), "EventBridge event"),
        (gz({"Messages": [{"Body": "{}"}]}), "SQS message"),
        (gz({"Records": {"a": 1}}), "not an array"),
        (gz([1, 2]), "JSON list"),
        (gz({"digestStartTime": "x", "logFiles": []}), "digest file"),
    ],
    ids=lambda value: value if isinstance(value, str) else "file",
)
def test_bad_files_are_reported_not_raised(data: bytes, reason: str) -> None:
    result = convert_object("AWSLogs/1/CloudTrail/r/2024/01/01/f.json.gz", data, "1", "r")
    assert result.file_error is not None and reason in result.file_error
    assert result.records_read == 0 and not result.tables


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b'{"Records": [' + b" " * (64 * 1024 * 1024) + b"]}", compresslevel=1)
    with pytest.raises(BadInput, match="gzip bomb"):
        inflate(bomb, limit=8 * 1024 * 1024)
    assert convert_object("b.json.gz", bomb, "1", "r", max_uncompressed=8 * 1024 * 1024).file_error


def test_file_over_16_mib_converts() -> None:
    big_parameters = {"policy": "x" * 90_000}
    records = [make_event("2024-05-01T10:00:00Z", requestParameters=big_parameters) for _ in range(200)]
    data = gz({"Records": records})
    assert len(gzip.decompress(data)) > 16 * 1024 * 1024
    result = convert_object("big.json.gz", data, "1", "r")
    assert result.file_error is None and table_of(result).num_rows == 200


def test_multi_member_gzip_is_read_whole() -> None:
    text = json.dumps({"Records": [make_event("2024-05-01T10:00:00Z")]}).encode()
    data = gzip.compress(text[:50]) + gzip.compress(text[50:])
    assert inflate(data) == text


def test_deeply_nested_json_is_quarantined_not_crashing() -> None:
    deep = b'{"Records": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    result = convert_object("deep.json.gz", gzip.compress(deep), "1", "r")
    assert result.file_error is not None or result.quarantined
