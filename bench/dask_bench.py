"""Ingest throughput on one machine and on a Dask cluster of 1 and 2 worker processes (127.0.0.1), same archive.

Run: python bench/dask_bench.py [events_per_day] [days]. Prints one line per setup: seconds, events/s, and the
machine's load average (the figures mean little on a loaded machine).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from distributed import LocalCluster

from trailsight.lake.distributed import ingest_on_cluster
from trailsight.lake.ingest import ingest
from trailsight.synth.generate import generate_archive

END = date(2024, 5, 2)


def main() -> None:
    events_per_day = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    days = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    root = Path(tempfile.mkdtemp(prefix="dask-bench-"))
    try:
        summary = generate_archive(root / "source", days=days, end=END, events_per_day=events_per_day, workers=2)
        start = END - timedelta(days=days - 1)
        print(f"archive: {summary}", flush=True)
        for workers in (1, 2):
            began = time.perf_counter()
            result = ingest(root / "source", root / f"local{workers}", start, END, workers=workers)
            report("one machine", workers, time.perf_counter() - began, result.events_read)
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                              dashboard_address=None) as cluster:
                # A first tiny run so the workers have imported trailsight (a long-lived cluster has).
                ingest_on_cluster(root / "source", root / f"warm{workers}", cluster.scheduler_address,
                                  start, start)
                began = time.perf_counter()
                result = ingest_on_cluster(root / "source", root / f"dask{workers}", cluster.scheduler_address,
                                           start, END)
                report("dask", workers, time.perf_counter() - began, result.events_read)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(setup: str, workers: int, seconds: float, events: int) -> None:
    print(f"{setup:12} workers={workers}: {seconds:7.2f} s, {events / seconds:9,.0f} events/s, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
