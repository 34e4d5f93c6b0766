"""The typed fast path gives the rows the exact path gives, and hands back whatever it cannot convert exactly."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import make_event
from json_equality import json_equal, value_text

from trailsight.convert.records import CLOUDTRAIL_TABLE, BatchConverter, rebuild_event, record_texts
from trailsight.convert.typed import TypedBatch
from trailsight.schema import load_schema
from trailsight.synth.generate import generate_archive

JSON_COLUMNS = {c.name for c in load_schema().columns if c.type == "json"} | {"extrafields"}
CORPUS_SOURCES = ("awsdocs-examples", "zalando-fullstop-test-resources", "plaso-lookup-events-testdata")


def log_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json.gz") if "CloudTrail-Digest" not in p.parts)


def convert_files(files: list[Path], typed: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict], list, int]:
    """(the rows by eventhash, the quarantined records, how many records the typed path took)."""
    with monkeypatch.context() as patched:
        if not typed:
            patched.setattr(TypedBatch, "add", lambda self, origin: False)
        converter = BatchConverter()
        results = [converter.add(str(path), path.read_bytes(), "123456789012", "us-east-1") for path in files]
        took = len(converter.typed.events)
        tables = converter.tables()
    rows = [row | {"partition": partition} for partition, table in tables.items() for row in table.to_pylist()]
    quarantined = [(r.key, q.index, q.reason) for r in results for q in r.quarantined]
    return sorted(rows, key=lambda row: (row["eventhash"], row["sourcekey"])), quarantined, took


def comparable(row: dict) -> dict:
    """JSON text compares by value: the typed path keeps it as delivered, the exact path re-serializes it."""
    return {k: (json.loads(v) if k in JSON_COLUMNS and v is not None else v) for k, v in row.items()}


def assert_same_rows(files: list[Path], monkeypatch: pytest.MonkeyPatch) -> int:
    typed_rows, typed_quarantine, took = convert_files(files, True, monkeypatch)
    exact_rows, exact_quarantine, _ = convert_files(files, False, monkeypatch)
    assert typed_quarantine == exact_quarantine
    assert len(typed_rows) == len(exact_rows)
    for typed_row, exact_row in zip(typed_rows, exact_rows, strict=True):
        assert comparable(typed_row) == comparable(exact_row)
        assert rebuild_event(typed_row) == rebuild_event(exact_row)
    return took


@pytest.mark.parametrize("name", CORPUS_SOURCES)
def test_corpus_rows_are_the_same_on_both_paths(corpus: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same_rows(log_files(corpus / name), monkeypatch)


def test_bad_corpus_files_give_the_same_rows_and_quarantine_on_both_paths(
        corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same_rows(log_files(corpus / "bad"), monkeypatch)


def test_generated_events_take_the_typed_path_and_give_the_exact_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_archive(tmp_path, 1, seed=3, end=date(2024, 5, 1), events_per_day=3000)
    files = [p for p in log_files(tmp_path) if "/CloudTrail/" in p.as_posix()]
    records = sum(len(record_texts(gzip.decompress(p.read_bytes()))) for p in files)
    took = assert_same_rows(files, monkeypatch)
    assert took >= 0.95 * records, f"only {took} of {records} generated records took the typed path"


def convert_records(records: list[Any] | bytes) -> tuple[list[dict], list]:
    text = records if isinstance(records, bytes) else json.dumps({"Records": records}).encode()
    converter = BatchConverter()
    result = converter.add("AWSLogs/1/CloudTrail/r/2024/05/01/f.json.gz", gzip.compress(text), "1", "r")
    tables = converter.tables()
    rows = [row for (table, *_), t in tables.items() if table == CLOUDTRAIL_TABLE for row in t.to_pylist()]
    return rows, result.quarantined


def test_unknown_field_in_a_repeated_identity_is_handed_back_and_kept() -> None:
    plain = make_event("2024-05-01T10:00:00Z")
    odd = make_event("2024-05-01T10:00:01Z")
    odd["userIdentity"] = {**odd["userIdentity"], "identityProvider": "accounts.example.com"}
    rows, quarantined = convert_records([plain, odd, dict(odd, eventID="another")])
    assert not quarantined and len(rows) == 3
    assert sorted((rebuild_event(row) for row in rows), key=lambda e: e["eventTime"] + e["eventID"]) == sorted(
        [plain, odd, dict(odd, eventID="another")], key=lambda e: e["eventTime"] + e["eventID"])


def test_nested_values_with_unknown_fields_stay_on_the_typed_path_and_give_the_exact_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [make_event(f"2024-05-01T10:00:{second:02d}Z", eventID=f"e{second}") for second in range(6)]
    identity = events[0]["userIdentity"]
    events[1]["userIdentity"] = {**identity, "identityProvider": "accounts.example.com", "credentialId": "c-1"}
    events[2]["userIdentity"] = {**identity, "sessionContext": {"ec2RoleDelivery": "2.0", "novel": {"depth": 1}}}
    events[3]["tlsDetails"] = {"tlsVersion": "TLSv1.3", "quantumSafe": True}
    events[4]["resources"] = [{"ARN": "arn:aws:s3:::b", "type": "AWS::S3::Bucket", "tags": ["x"]}]
    events[5]["userIdentity"] = {**identity, "identityProvider": "accounts.example.com", "credentialId": "c-1"}
    path = tmp_path / "f.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"Records": events}, separators=(",", ":")).encode()))
    assert assert_same_rows([path], monkeypatch) == len(events)
    rows, quarantined = convert_records(events)
    assert not quarantined
    assert sorted((rebuild_event(row) for row in rows), key=lambda e: e["eventID"]) == events


@pytest.mark.parametrize("when", ["2024-13-45T10:00:00Z", "2024-02-30T10:00:00Z", "2024-05-01T10:00:60Z",
                                  "0000-05-01T10:00:00Z"])
def test_impossible_time_in_canonical_form_is_quarantined(when: str) -> None:
    rows, quarantined = convert_records([make_event("2024-05-01T10:00:00Z"), make_event(when)])
    assert len(rows) == 1
    (bad,) = quarantined
    assert bad.index == 1 and "not an ISO-8601 time" in bad.reason


def test_odd_times_give_the_same_rows_on_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    times = ["2024-05-01T10:00:00Z", "2024-5-01T10:00:00Z", "2024-05-01T10:00:00.5Z", "2024-05-01T12:00:00+02:00",
             "2024-05-01 10:00:00Z", "0999-05-01T10:00:00Z", "2024-02-29T23:59:59Z", "2023-02-29T10:00:00Z"]
    path = tmp_path / "f.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"Records": [make_event(t) for t in times]}).encode()))
    assert_same_rows([path], monkeypatch)


def test_bytes_that_are_not_utf8_in_a_free_form_field_quarantine_that_record_only() -> None:
    good = json.dumps(make_event("2024-05-01T10:00:00Z")).encode()
    bad = json.dumps(make_event("2024-05-01T10:00:01Z", requestParameters={"name": "PLACEHOLDER"})).encode()
    bad = bad.replace(b"PLACEHOLDER", b"caf\xe9")
    rows, quarantined = convert_records(b'{"Records": [' + good + b", " + bad + b"]}")
    assert len(rows) == 1
    (record,) = quarantined
    assert record.index == 1 and "invalid JSON" in record.reason


def test_explicit_null_free_form_fields_are_patched_in_schema_order() -> None:
    event = make_event("2024-05-01T10:00:00Z", additionalEventData=None, responseElements=None)
    (row,), _ = convert_records([event])
    assert row["responseelements"] is None and row["additionaleventdata"] is None
    assert json.loads(row["extrafields"]) == {"responseElements": None, "additionalEventData": None}
    assert rebuild_event(row) == event


def test_free_form_fields_keep_their_delivered_text() -> None:
    event = make_event("2024-05-01T10:00:00Z", requestParameters={"z": 1, "a": [123456789012345678901234567890]})
    text = b'{"Records": [' + json.dumps(event).encode() + b"]}"
    (row,), _ = convert_records(text)
    assert row["requestparameters"] == json.dumps(event["requestParameters"])
    assert json_equal(value_text(rebuild_event(row)), json.dumps(event))


def test_rows_of_several_partitions_in_one_batch_are_split_without_mixing() -> None:
    events = [make_event(f"2024-05-0{1 + i % 2}T10:00:0{i}Z", awsRegion=("eu-west-1", "us-east-1")[i % 3 == 0])
              for i in range(8)]
    converter = BatchConverter()
    data = gzip.compress(json.dumps({"Records": events}).encode())
    converter.add("AWSLogs/1/CloudTrail/r/2024/05/01/f.json.gz", data, "1", "r")
    tables = converter.tables()
    assert sum(t.num_rows for t in tables.values()) == 8
    for (_, day, account), table in tables.items():
        assert isinstance(table, pa.Table)
        regions = table.column("region").to_pylist()
        assert regions == sorted(regions)
        for row in table.to_pylist():
            assert (row["eventtime"].date(), row["recipientaccountid"]) == (day, account)
            assert row["awsregion"] == row["region"]
