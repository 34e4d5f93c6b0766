"""Odd but valid JSON in a log file is kept exactly (export rebuilds it JSON-equal) or its record is quarantined
with its reason, while the rest of the file lands: lone surrogates, deep nesting, exotic numbers, repeated keys."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import pytest
from conftest import WriteLog, day_start, log_key, make_event
from json_equality import json_equal

from trailsight.lake.export import export
from trailsight.lake.ingest import ingest

DAY = day_start(2024, 5, 1)


def record_text(event_id: str, *fields: str, when: str = "2024-05-01T10:00:00Z") -> str:
    """An event's JSON text with `"key":value` members spliced in as written (replacing the event's own)."""
    event = make_event(when, eventID=event_id)
    del event["requestParameters"]
    for member in fields:
        event.pop(json.loads(member.split(":", 1)[0]), None)
    text = json.dumps(event, separators=(",", ":"))
    return text[:-1] + "".join("," + f for f in fields) + "}"


def deep(levels: int) -> str:
    return '{"a":' * (levels - 1) + "[1]" + "}" * (levels - 1)


ODD_RECORDS = {
    # 6: lone surrogate escapes
    "surrogate-name": ['"eventName":"\\ud800GetObject"'],
    "surrogate-agent": ['"userAgent":"\\udfffx"'],
    "surrogate-parameters": ['"requestParameters":{"key":"\\ud800","other":"\\udc00a"}'],
    "surrogate-unknown": ['"note":["\\ud83d"]'],
    # 7: deep nesting
    **{f"deep-parameters-{n}": [f'"requestParameters":{deep(n)}'] for n in (300, 995, 1000, 1010)},
    "deep-unknown-1005": [f'"note":{deep(1005)}'],
    # 8: numbers no double holds
    "numbers-parameters": ['"requestParameters":{"big":1e400,"tiny":1e-400,"long":1.00000000000000000000001,'
                           '"huge":123456789012345678901234567890,"negative":-98765432109876543210987}'],
    "numbers-unknown": ['"note":1e400', '"count":18446744073709551616'],
    "numbers-in-additional-data": ['"additionalEventData":{"x":1E+400}'],
    "numbers-with-an-unknown-field": ['"requestParameters":{"big":1e400,"tiny":1e-400}', '"note":1'],
    # 9: a key twice below the top level
    "repeated-in-parameters": ['"requestParameters":{"bucket":"a","bucket":"b"}'],
    "repeated-in-unknown": ['"note":{"k":1,"k":1}'],
    "repeated-in-identity": ['"userIdentity":{"type":"IAMUser","type":"Root","accountId":"111122223333"}'],
    "repeated-in-tls": ['"tlsDetails":{"tlsVersion":"TLSv1.2","tlsVersion":"TLSv1.3"}'],
    "repeated-in-addendum": ['"addendum":{"reason":"DELIVERY_DELAY","reason":"UPDATED_DATA"}'],
    "repeated-in-resources": ['"resources":[{"ARN":"arn:aws:s3:::a","ARN":"arn:aws:s3:::b","type":"AWS::S3::Bucket"}]'],
}


@pytest.fixture
def odd_archive(write_log: WriteLog, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    texts = {event_id: record_text(event_id, *fields) for event_id, fields in ODD_RECORDS.items()}
    texts["plain"] = record_text("plain", '"requestParameters":{"bucket":"b"}')
    body = '{"Records":[' + ",".join(texts.values()) + "]}"
    write_log(log_key(datetime(2024, 5, 1, 10, 5)), raw=gzip.compress(body.encode(), mtime=0))
    return tmp_path / "source", texts


def exported_records(folder: Path) -> list[bytes]:
    """Each exported record's JSON text, split without parsing the file as a whole."""
    from trailsight.convert.records import record_texts

    return [bytes(text) for path in sorted(folder.rglob("*.json.gz"))
            for text in record_texts(gzip.decompress(path.read_bytes()))]


def event_id_of(text: bytes) -> str:
    marker = b'"eventID":"'
    start = text.index(marker) + len(marker)
    return text[start : text.index(b'"', start)].decode()


def test_odd_values_are_stored_and_export_json_equal(odd_archive: tuple[Path, dict[str, str]],
                                                     tmp_path: Path) -> None:
    source, texts = odd_archive
    summary = ingest(source, tmp_path / "lake", workers=1)
    assert summary.events_read == len(texts)
    assert summary.events_quarantined == 0
    assert summary.events_written == len(texts)
    export(tmp_path / "lake", tmp_path / "out")
    exported = {event_id_of(text): text for text in exported_records(tmp_path / "out")}
    assert set(exported) == set(texts)
    for event_id, text in texts.items():
        assert json_equal(exported[event_id], text), event_id


def test_exported_odd_values_ingest_again_as_duplicates(odd_archive: tuple[Path, dict[str, str]],
                                                        tmp_path: Path) -> None:
    source, texts = odd_archive
    ingest(source, tmp_path / "lake", workers=1)
    export(tmp_path / "lake", tmp_path / "out")
    again = ingest(tmp_path / "out", tmp_path / "lake", workers=1)
    assert again.events_read == len(texts)
    assert again.events_written == 0 and again.duplicates == len(texts)


def test_a_repeated_top_level_key_quarantines_only_that_record_with_its_reason(write_log: WriteLog,
                                                                              tmp_path: Path) -> None:
    moved = record_text("moved")[:-1] + ',"eventTime":"2024-05-02T23:00:00Z"}'
    plain = record_text("plain")
    write_log(log_key(datetime(2024, 5, 1, 10, 5)),
              raw=gzip.compress(('{"Records":[' + moved + "," + plain + "]}").encode(), mtime=0))
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    assert (summary.events_read, summary.events_written, summary.events_quarantined) == (2, 1, 1)
    (entry,) = [json.loads(p.read_bytes()) for p in (tmp_path / "lake" / "_quarantine").rglob("*.json")]
    (record,) = entry["records"]
    assert "eventTime" in record["reason"] and "2 times" in record["reason"]
    assert not list((tmp_path / "lake" / "cloudtrail").glob("event_date=2024-05-02"))


@pytest.mark.parametrize("member", ['"userAgent":"second"', '"sourceIPAddress":"203.0.113.9"',
                                    '"requestParameters":{"bucket":"other"}', '"readOnly":false',
                                    '"recipientAccountId":"999988887777"', '"errorCode":"AccessDenied"'])
def test_any_top_level_key_given_twice_quarantines_the_record_never_keeps_one_silently(
        member: str, write_log: WriteLog, tmp_path: Path) -> None:
    first = record_text("twice", '"errorCode":"Throttling"', '"requestParameters":{"bucket":"b"}')
    twice = first[:-1] + "," + member + "}"
    write_log(log_key(datetime(2024, 5, 1, 10, 5)),
              raw=gzip.compress(('{"Records":[' + twice + "," + record_text("plain") + "]}").encode(), mtime=0))
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    assert (summary.events_read, summary.events_written, summary.events_quarantined) == (2, 1, 1)
    (entry,) = [json.loads(p.read_bytes()) for p in (tmp_path / "lake" / "_quarantine").rglob("*.json")]
    key = json.loads(member.split(":", 1)[0])
    assert f"{key!r} appears 2 times" in entry["records"][0]["reason"]


def test_a_record_nested_deeper_than_the_limit_is_quarantined_not_the_run(write_log: WriteLog,
                                                                         tmp_path: Path) -> None:
    body = '{"Records":[' + record_text("plain") + "]}"
    write_log(log_key(datetime(2024, 5, 1, 10, 5)), raw=gzip.compress(body.encode(), mtime=0))
    too_deep = '{"Records":[' + record_text("deep", f'"requestParameters":{deep(50_000)}') + "]}"
    write_log(log_key(datetime(2024, 5, 1, 10, 10)), raw=gzip.compress(too_deep.encode(), mtime=0))
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    assert summary.events_written == 1
    assert summary.files_quarantined == 1
    (entry,) = [json.loads(p.read_bytes()) for p in (tmp_path / "lake" / "_quarantine").rglob("*.json")]
    assert "nested" in entry["reason"]


def test_a_file_giving_records_twice_is_quarantined_not_half_ingested(write_log: WriteLog, tmp_path: Path) -> None:
    body = '{"Records":[' + record_text("first") + '],"Records":[' + record_text("second") + "]}"
    write_log(log_key(datetime(2024, 5, 1, 10, 5)), raw=gzip.compress(body.encode(), mtime=0))
    summary = ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    assert (summary.events_written, summary.files_quarantined) == (0, 1)
    (entry,) = [json.loads(p.read_bytes()) for p in (tmp_path / "lake" / "_quarantine").rglob("*.json")]
    assert '"Records" more than once' in entry["reason"]
