"""Rebuild the original CloudTrail events from the lake, as a CloudTrail-shaped archive.

The output can be ingested again: `AWSLogs/<account>/CloudTrail[-Insight]/<region>/YYYY/MM/DD/` folders
named after each event's own date, gzipped `{"Records": [...]}` files of at most `events_per_file` events.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import date

import orjson
import pyarrow.parquet as pq

from trailsight.convert.records import CLOUDTRAIL_TABLE, INSIGHTS_TABLE, REGION, rebuild_event
from trailsight.lake.layout import check_lake_format, lake_files, require_lake
from trailsight.schema import load_schema
from trailsight.storage.store import Storage, as_storage

FOLDER_OF_TABLE = {CLOUDTRAIL_TABLE: "CloudTrail", INSIGHTS_TABLE: "CloudTrail-Insight"}
EVENTS_PER_FILE = 10_000


@dataclass
class ExportSummary:
    files: int = 0
    events: int = 0


def _partition_values(key: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in key.split("/") if "=" in part)


def export(lake: str | Storage, out: str | Storage, start: date | None = None, end: date | None = None,
           events_per_file: int = EVENTS_PER_FILE) -> ExportSummary:
    """Write the events of [start, end] (all when no dates) back out as CloudTrail log files."""
    lake = as_storage(lake)
    require_lake(lake)
    check_lake_format(lake)
    out = as_storage(out)
    schema = load_schema()
    summary = ExportSummary()
    for table, folder in FOLDER_OF_TABLE.items():
        for key in lake_files(lake, table, start, end):
            values = _partition_values(key)
            day = date.fromisoformat(values["event_date"])
            account = values["account"]
            stem = key.rsplit("/", 1)[-1].removesuffix(".parquet")
            parquet = pq.ParquetFile(lake.path(key), filesystem=lake.fs)
            for number, batch in enumerate(parquet.iter_batches(batch_size=events_per_file)):
                by_region: dict[str, list[dict]] = {}
                for row in batch.to_pylist():
                    by_region.setdefault(row[REGION], []).append(rebuild_event(row, schema))
                for region, records in by_region.items():
                    folder_key = f"AWSLogs/{account}/{folder}/{region}/{day:%Y/%m/%d}"
                    name = f"{account}_{folder}_{region}_{day:%Y%m%d}T2359Z_{stem}-{number:04d}.json.gz"
                    body = gzip.compress(orjson.dumps({"Records": records}), compresslevel=6, mtime=0)
                    out.write_bytes(f"{folder_key}/{name}", body)
                    summary.files += 1
                    summary.events += len(records)
    return summary
