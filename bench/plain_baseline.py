"""The plain baseline trailsight's ingest is measured against: orjson + pyarrow, 2 processes, no de-duplication.

What anyone would write in an afternoon: each process takes every other file, parses it with orjson, keeps the
top-level fields (nested objects as JSON text, `eventTime` as a timestamp), and writes zstd Parquet files of up
to 64k rows into `event_date=` folders. No identities, no de-duplication, no quarantine, no derived tables,
no atomic writes: the floor of what converting these files costs here.

Usage: python bench/plain_baseline.py ARCHIVE OUT [--processes 2]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCALARS = ("eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent",
           "errorCode", "errorMessage", "requestID", "eventID", "eventType", "apiVersion", "recipientAccountId",
           "sharedEventID", "vpcEndpointId", "eventCategory")
BOOLEANS = ("readOnly", "managementEvent")
NESTED = ("userIdentity", "requestParameters", "responseElements", "additionalEventData", "resources",
          "serviceEventDetails", "tlsDetails")
ROWS_PER_FILE = 64_000


def log_files(archive: Path) -> list[Path]:
    return sorted(p for p in archive.rglob("*.json.gz") if "/CloudTrail/" in p.as_posix())


def _write(columns: dict[str, list], out: Path, process: int, number: int) -> None:
    table = pa.table({
        **{name: pa.array(columns[name], pa.string()) for name in SCALARS if name != "eventTime"},
        "eventTime": pc.cast(pa.array(columns["eventTime"], pa.string()), pa.timestamp("s", "UTC")),
        **{name: pa.array(columns[name], pa.bool_()) for name in BOOLEANS},
        **{name: pa.array(columns[name], pa.string()) for name in NESTED},
    })
    days = pc.cast(pc.cast(table["eventTime"], pa.timestamp("s")), pa.date32())
    for day in pc.unique(days).to_pylist():
        folder = out / f"event_date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        part = table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
        pq.write_table(part, folder / f"part-{process}-{number:05d}.parquet", compression="zstd")


def convert(files: list[str], out: str, process: int) -> int:
    """Convert `files` into `out`; returns the number of events."""
    target = Path(out)
    columns: dict[str, list] = {name: [] for name in (*SCALARS, *BOOLEANS, *NESTED)}
    events = written = 0
    dumps = orjson.dumps
    for path in files:
        with open(path, "rb") as handle:
            records = orjson.loads(gzip.decompress(handle.read()))["Records"]
        for record in records:
            for name in SCALARS:
                value = record.get(name)
                columns[name].append(value if value is None or isinstance(value, str) else str(value))
            for name in BOOLEANS:
                value = record.get(name)
                columns[name].append(value if isinstance(value, bool) else None)
            for name in NESTED:
                value = record.get(name)
                columns[name].append(None if value is None else dumps(value).decode())
        events += len(records)
        if len(columns["eventID"]) >= ROWS_PER_FILE:
            _write(columns, target, process, written)
            written += 1
            columns = {name: [] for name in columns}
    if columns["eventID"]:
        _write(columns, target, process, written)
    return events


def run(archive: Path, out: Path, processes: int = 2) -> int:
    files = [str(p) for p in log_files(archive)]
    out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(processes) as pool:
        shares = [pool.submit(convert, files[i::processes], str(out), i) for i in range(processes)]
        return sum(share.result() for share in shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    print(run(args.archive, args.out, args.processes), file=sys.stdout)


if __name__ == "__main__":
    main()
