"""Round trip: every accepted event comes back from `export` JSON-equal to what was delivered."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import day_start, log_key

from trailsight.convert.records import canonical_json
from trailsight.lake.export import export
from trailsight.lake.ingest import ingest

CORPUS_SOURCES = ("awsdocs-examples", "zalando-fullstop-test-resources", "plaso-lookup-events-testdata")


def events_under(root: Path) -> list[Any]:
    events = []
    for path in sorted(root.rglob("*.json.gz")):
        if "CloudTrail-Digest" in path.parts:
            continue
        events += json.loads(gzip.decompress(path.read_bytes()))["Records"]
    return events


def canonical_set(events: list[Any]) -> Counter[bytes]:
    return Counter(canonical_json(e) for e in events)


def assert_round_trip(source: Path, tmp_path: Path) -> int:
    lake, out = tmp_path / "lake", tmp_path / "exported"
    summary = ingest(source, lake, workers=2)
    assert summary.balanced
    quarantined = []
    for key in summary.quarantine:
        entry = json.loads((lake / key).read_text())
        assert entry["reason"] is None, entry
        quarantined += [r["record"] for r in entry["records"]]
    delivered = canonical_set(events_under(source)) - canonical_set(quarantined)
    export(lake, out)
    exported = canonical_set(events_under(out))
    assert set(exported) == set(delivered)
    assert all(n == 1 for n in exported.values())
    assert summary.events_written == len(exported)
    return len(exported)


@pytest.mark.parametrize("name", CORPUS_SOURCES)
def test_corpus_round_trips_json_equal(corpus: Path, tmp_path: Path, name: str) -> None:
    assert assert_round_trip(corpus / name, tmp_path) > 0


def test_processing_library_fixtures_round_trip_or_are_quarantined(corpus: Path, tmp_path: Path) -> None:
    """Odd fixtures (renamed, missing, extra and null fields, bad JSON, SQS bodies) never stop a run."""
    fixtures = corpus / "bad" / "processing-library-fixtures"
    when = day_start(2024, 5, 1)
    for number, path in enumerate(sorted(fixtures.iterdir())):
        data = path.read_bytes()
        raw = data if data[:2] == b"\x1f\x8b" else gzip.compress(data, mtime=0)
        target = tmp_path / "source" / log_key(when, suffix=f"{number:016d}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw)
    lookalikes = tmp_path / "source" / log_key(when, suffix="lookalikes000000")
    shutil.copy(corpus / "bad" / "not-cloudtrail-lookalikes.json.gz", lookalikes)
    lake = tmp_path / "lake"
    summary = ingest(tmp_path / "source", lake, workers=1)
    assert summary.balanced and summary.events_written > 0
    reasons = [json.loads((lake / k).read_text()) for k in summary.quarantine]
    file_reasons = " | ".join(r["reason"] for r in reasons if r["reason"])
    assert "invalid JSON" in file_reasons and "SNS notification" in file_reasons
    lookalike_entry = next(r for r in reasons if r["source"].endswith("lookalikes000000.json.gz"))
    assert len(lookalike_entry["records"]) == 18
    assert all("event notification" in r["reason"] for r in lookalike_entry["records"])


def test_generated_archive_round_trips_json_equal(tmp_path: Path) -> None:
    from datetime import date

    from trailsight.synth.generate import generate_archive

    generate_archive(tmp_path / "source", days=2, seed=3, end=date(2024, 5, 2), events_per_day=1500)
    assert assert_round_trip(tmp_path / "source", tmp_path) > 2000
