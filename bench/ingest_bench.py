"""Ingest benchmark: trailsight against a naive pandas conversion and a DuckDB read_json one-liner.

Usage: python bench/ingest_bench.py [--events-per-day 350000] [--days 2] [--data bench-data]
       [--pandas-fraction 0.25]

Generates (once, cached under --data) a sample archive of at least 1 GB of uncompressed JSON, then runs each
approach in its own process, sampling the whole process tree's resident memory, and prints one table:
events/s, MB/s of uncompressed JSON, peak memory of the whole process tree (sum of proportional set sizes,
so shared library pages count once, plus rows spilled to temporary files), and Parquet size over gzip size.
Each approach runs twice: once timed and left alone, once with its memory sampled. The pandas approach is slow,
so by default it converts a fraction of the files and its rates are computed on that fraction.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psutil

APPROACHES = ("trailsight", "trailsight-1-process", "duckdb-read_json", "pandas-json_normalize")


@dataclass
class Outcome:
    approach: str
    events: int
    raw_bytes: int
    gzip_bytes: int
    parquet_bytes: int
    seconds: float
    peak_rss: int

    def row(self) -> list[str]:
        return [
            self.approach,
            f"{self.events:,}",
            f"{self.seconds:.1f}",
            f"{self.events / self.seconds:,.0f}",
            f"{self.raw_bytes / self.seconds / 1e6:,.0f}",
            f"{self.peak_rss / 2**20:,.0f}",
            f"{self.parquet_bytes / self.gzip_bytes:.2f}",
        ]


def log_files(archive: Path) -> list[Path]:
    return sorted(p for p in archive.rglob("*.json.gz") if "/CloudTrail/" in p.as_posix())


def folder_bytes(folder: Path, suffix: str = ".parquet") -> int:
    return sum(p.stat().st_size for p in folder.rglob(f"*{suffix}"))


def ensure_archive(data: Path, days: int, events_per_day: int) -> Path:
    from trailsight.synth.generate import generate_archive

    archive = data / f"archive-{days}d-{events_per_day}"
    if not (archive / "ground_truth.json").exists():
        shutil.rmtree(archive, ignore_errors=True)
        started = time.monotonic()
        summary = generate_archive(archive, days, seed=11, end=date(2024, 5, days), events_per_day=events_per_day,
                                   workers=2)
        print(f"generated {summary.events:,} events, {summary.raw_bytes / 1e9:.2f} GB of JSON in "
              f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return archive


# --- the approaches, each run in a child process -----------------------------------------------------------


def run_trailsight(files: list[Path], archive: Path, out: Path, workers: int) -> int:
    from trailsight.lake.ingest import ingest

    summary = ingest(archive, out, workers=workers)
    return summary.events_read


def run_duckdb(files: list[Path], archive: Path, out: Path) -> int:
    import duckdb

    free_form = {"requestParameters", "responseElements", "additionalEventData", "serviceEventDetails",
                 "userIdentity", "resources", "tlsDetails", "addendum", "edgeDeviceDetails"}
    scalars = ["eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent",
               "errorCode", "errorMessage", "requestID", "eventID", "readOnly", "eventType", "apiVersion",
               "managementEvent", "recipientAccountId", "sharedEventID", "vpcEndpointId", "eventCategory",
               "sessionCredentialFromConsole"]
    fields = ", ".join([f'"{s}" VARCHAR' for s in scalars] + [f'"{f}" JSON' for f in sorted(free_form)])
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    # The documented settings for a large COPY; without them the one-liner ran out of memory (18 GiB) here.
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET memory_limit = '4GB'")
    # Even so, one COPY over every file ran out of memory here, so the one-liner runs per chunk of files.
    for start in range(0, len(files), 1000):
        file_list = ", ".join(f"'{f}'" for f in files[start:start + 1000])
        con.execute(
            f"COPY (SELECT r.*, CAST(r.eventTime AS DATE) AS event_date FROM ("
            f"SELECT unnest(Records) AS r FROM read_json([{file_list}], columns = {{Records: 'STRUCT({fields})[]'}}, "
            f"maximum_object_size = 33554432))) "
            f"TO '{out}' (FORMAT parquet, PARTITION_BY (event_date), COMPRESSION zstd, APPEND)"
        )
    return con.execute(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchall()[0][0]


def run_pandas(files: list[Path], archive: Path, out: Path) -> int:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    events = 0
    for number, path in enumerate(files):
        records = json.loads(gzip.decompress(path.read_bytes()))["Records"]
        frame = pd.json_normalize(records)
        frame = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
        frame.to_parquet(out / f"part-{number:06d}.parquet", compression="zstd", index=False)
        events += len(frame)
    return events


def child(approach: str, archive: Path, out: Path, fraction: float) -> None:
    files = log_files(archive)
    if approach.startswith("pandas"):
        files = files[:: max(1, round(1 / fraction))]
    # Each approach's libraries are imported before the clock starts: the figures are of the work, not of
    # starting Python.
    import duckdb  # noqa: F401
    import pandas  # noqa: F401

    import trailsight.lake.ingest  # noqa: F401

    started = time.monotonic()
    if approach == "trailsight":
        events = run_trailsight(files, archive, out, workers=2)
    elif approach == "trailsight-1-process":
        events = run_trailsight(files, archive, out, workers=1)
    elif approach == "duckdb-read_json":
        events = run_duckdb(files, archive, out)
    else:
        events = run_pandas(files, archive, out)
    seconds = time.monotonic() - started
    raw = sum(len(gzip.decompress(f.read_bytes())) for f in files)
    print(json.dumps({"events": events, "seconds": seconds, "raw_bytes": raw,
                      "gzip_bytes": sum(f.stat().st_size for f in files)}))


def spilled_bytes() -> int:
    """Bytes of rows trailsight's workers have spilled to its temporary folders: memory too, if not a process's."""
    from trailsight.lake.ingest import SPILL_PREFIX, spill_parent

    total = 0
    for folder in spill_parent().glob(f"{SPILL_PREFIX}*"):
        total += sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
    return total


def run_child(approach: str, archive: Path, out: Path, fraction: float, sample_memory: bool) -> tuple[dict, int]:
    """Run one approach in its own process; with `sample_memory`, also its peak memory (else 0)."""
    shutil.rmtree(out, ignore_errors=True)
    process = subprocess.Popen([sys.executable, __file__, "--child", approach, "--archive", str(archive),
                                "--out", str(out), "--pandas-fraction", str(fraction)], stdout=subprocess.PIPE)
    watched = psutil.Process(process.pid)
    peak = 0
    tree: list[psutil.Process] = []
    samples = 0
    while process.poll() is None:
        if sample_memory:
            try:
                if samples % 5 == 0:  # listing every process of the machine costs more than sampling a few
                    tree = [watched, *watched.children(recursive=True)]
                # PSS: shared pages (libraries mapped by every worker) are split between processes, not counted N times.
                pss = sum(p.memory_full_info().pss for p in tree if p.is_running())
                peak = max(peak, pss + spilled_bytes())
            except (psutil.Error, OSError):
                pass
            samples += 1
        time.sleep(0.1)
    stdout = process.stdout.read() if process.stdout else b""
    if process.returncode != 0:
        raise SystemExit(f"{approach} failed with exit code {process.returncode}")
    return json.loads(stdout.decode().strip().splitlines()[-1]), peak


def measure(approach: str, archive: Path, work: Path, fraction: float) -> Outcome:
    """Time one run left alone, then sample the memory of a second: sampling takes CPU from the timed run."""
    out = work / approach
    timed, _ = run_child(approach, archive, out, fraction, sample_memory=False)
    _, peak = run_child(approach, archive, out, fraction, sample_memory=True)
    return Outcome(approach, timed["events"], timed["raw_bytes"], timed["gzip_bytes"], folder_bytes(out),
                   timed["seconds"], peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("bench-data"))
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--events-per-day", type=int, default=350_000)
    parser.add_argument("--pandas-fraction", type=float, default=0.25)
    parser.add_argument("--approaches", default=",".join(APPROACHES))
    parser.add_argument("--child")
    parser.add_argument("--archive", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.archive, args.out, args.pandas_fraction)
        return
    archive = ensure_archive(args.data, args.days, args.events_per_day)
    outcomes = [measure(a, archive, args.data / "out", args.pandas_fraction) for a in args.approaches.split(",")]
    header = ["approach", "events", "seconds", "events/s", "MB/s (raw JSON)", "peak memory MiB", "parquet/gzip"]
    widths = [max(len(h), *(len(o.row()[i]) for o in outcomes)) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for outcome in outcomes:
        print(" | ".join(v.ljust(w) for v, w in zip(outcome.row(), widths, strict=True)))
    print(f"\narchive: {archive} ({outcomes[0].raw_bytes / 1e9:.2f} GB JSON, {outcomes[0].gzip_bytes / 1e6:.0f} MB "
          f"gzip); pandas ran on 1/{round(1 / args.pandas_fraction)} of the files")


if __name__ == "__main__":
    main()
