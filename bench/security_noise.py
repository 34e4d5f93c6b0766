"""Findings per day of a lake: all, by severity, and new high or critical, to measure how quiet the daily
security report is on ordinary days and whether injected incidents stand out (bench/inject_incidents.py).

Usage: python bench/security_noise.py --lake /tmp/indep-lake --start 2024-05-08 --end 2024-05-28
       [--incidents 2024-05-15,2024-05-22] [--show]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date, timedelta

from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.report.detections import run_detections
from trailsight.report.incidents import build_incidents
from trailsight.storage.store import as_storage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True)
    parser.add_argument("--incidents", default="", help="comma-separated incident days")
    parser.add_argument("--show", action="store_true", help="list the new high and critical findings")
    args = parser.parse_args()
    incidents = {date.fromisoformat(d) for d in args.incidents.split(",") if d}
    lake = as_storage(args.lake)
    ordinary_all, ordinary_new_urgent = [], []
    day = args.start
    while day <= args.end:
        con = DuckDBEngine(lake)
        started = time.perf_counter()
        result = run_detections(con, day)
        seconds = time.perf_counter() - started
        con.close()
        urgent = [f for f in result.findings if f.new and f.severity in ("critical", "high")]
        stories = build_incidents(result.as_dict()["findings"], [])
        kind = "INCIDENT" if day in incidents else "ordinary"
        print(f"{day} {kind:8} findings {len(result.findings):4} {result.by_severity} "
              f"new high/critical {len(urgent):3}, incidents {len(stories)} ({seconds:.1f} s)")
        if args.show or day in incidents:
            for f in urgent:
                print(f"    {f.severity:8} {f.control:42} {f.account} {f.principal} x{f.count} "
                      f"(ratio {f.magnitude['ratio']})")
        if day not in incidents:
            ordinary_all.append(len(result.findings))
            ordinary_new_urgent.append(len(urgent))
        day += timedelta(days=1)
    if ordinary_all:
        print(f"ordinary days: {len(ordinary_all)}; findings per day median {statistics.median(ordinary_all)} "
              f"(min {min(ordinary_all)}, max {max(ordinary_all)}); new high/critical per day median "
              f"{statistics.median(ordinary_new_urgent)} (max {max(ordinary_new_urgent)})")


if __name__ == "__main__":
    main()
