"""Property tests: wild event shapes and damaged files never crash a conversion, and every event is accounted for."""

from __future__ import annotations

import gzip
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_equality import json_normal, value_text

from trailsight.convert.records import BatchConverter, canonical_json, convert_object, rebuild_event
from trailsight.schema import load_schema

FIELD_NAMES = [c.source for c in load_schema().columns] + ["unknownField", "userIdentity", "sessionContext"]
json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(
        max_size=8), children, max_size=5),
    max_leaves=25,
)
event_times = st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.123Z", "2024-05-01T12:00:00+02:00",
                               "2024-05-01", "not a time", "", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])


@st.composite
def events(draw: st.DrawFn) -> Any:
    """Mostly CloudTrail-like objects with any field of any type, sometimes not objects at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    event = draw(st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=12))
    if draw(st.booleans()):
        event["eventTime"] = draw(event_times)
    return event


def rows_of(result: Any) -> list[dict]:
    return [row for table in result.tables.values() for row in table.to_pylist()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), max_size=8))
def test_any_records_convert_or_are_quarantined_and_accepted_ones_rebuild_exactly(records: list[Any]) -> None:
    data = gzip.compress(canonical_json({"Records": records}))
    result = convert_object("k.json.gz", data, "111122223333", "us-east-1")
    rows = rows_of(result)
    assert result.file_error is None
    assert result.records_read == len(rows) + len(result.quarantined) == len(records)
    rebuilt = sorted(json_normal(value_text(rebuild_event(row))) for row in rows)
    quarantined = {q.index for q in result.quarantined}
    expected = sorted(json_normal(value_text(r)) for i, r in enumerate(records) if i not in quarantined)
    assert rebuilt == expected


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 400), st.integers(0, 7))
def test_damaged_files_never_raise(noise: bytes, cut: int, bit: int) -> None:
    good = gzip.compress(json.dumps({"Records": [{"eventTime": "2024-05-01T10:00:00Z", "eventName": "X"}]}).encode())
    damaged = bytearray(good[:cut] + noise)
    if damaged:
        damaged[cut % len(damaged)] ^= 1 << bit
    converter = BatchConverter()
    outcome = converter.add("f.json.gz", bytes(damaged), "1", "r")
    written = sum(t.num_rows for t in converter.tables().values())
    assert outcome.records_read == written + len(outcome.quarantined)
    assert outcome.file_error is None or outcome.records_read == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3000), st.sampled_from(["[", "{\"a\":"]))
def test_deep_nesting_is_bounded(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    value = opener * depth + "1" + closer * depth
    text = '{"Records": [{"eventTime": "2024-05-01T10:00:00Z", "requestParameters": ' + value + "}]}"
    result = convert_object("deep.json.gz", gzip.compress(text.encode()), "1", "r")
    assert result.file_error is not None or result.records_read == 1


@settings(max_examples=10, deadline=None)
@given(st.integers(100_000, 3_000_000))
def test_huge_strings_are_kept(size: int) -> None:
    event = {"eventTime": "2024-05-01T10:00:00Z", "requestParameters": {"policy": "x" * size}, "eventID": "e"}
    result = convert_object("big.json.gz", gzip.compress(json.dumps({"Records": [event]}).encode()), "1", "r")
    assert rebuild_event(rows_of(result)[0]) == event
