"""Spike insights per day of a lake: how many on ordinary days (false alarms) and which on incident days.

Usage: python bench/spike_noise.py --lake /tmp/indep-lake --start 2024-05-02 --end 2024-05-28
       [--incidents 2024-05-15,2024-05-25] [--config '{"p_value": 1e-9}']
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, timedelta

from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.report.insights import SpikeConfig, detect_spikes
from trailsight.storage.store import as_storage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True)
    parser.add_argument("--incidents", default="")
    parser.add_argument("--config", default="{}", help="SpikeConfig fields as JSON")
    args = parser.parse_args()
    incidents = {date.fromisoformat(d) for d in args.incidents.split(",") if d}
    options = json.loads(args.config)
    if "windows" in options:
        options["windows"] = tuple(options["windows"])
    config = SpikeConfig(**options)
    lake = as_storage(args.lake)
    ordinary = []
    day = args.start
    while day <= args.end:
        con = DuckDBEngine(lake)
        started = time.perf_counter()
        result = detect_spikes(lake, con, day, config)
        con.close()
        kind = "INCIDENT" if day in incidents else "ordinary"
        print(f"{day} {kind:8} insights {len(result.insights):3} of {result.candidates} candidates "
              f"({time.perf_counter() - started:.1f} s)")
        for i in result.insights:
            print(f"    {i.insight_type:20} {i.account} {i.region:14} {i.eventsource.split('.')[0]}:{i.eventname} "
                  f"{i.errorcode or ''} {i.start:%H:%M}-{i.end:%H:%M} calls {i.calls} "
                  f"(baseline {i.model.mean:.4f}/min)")
        if day not in incidents:
            ordinary.append(len(result.insights))
        day += timedelta(days=1)
    if ordinary:
        print(f"ordinary days {len(ordinary)}: {sum(ordinary)} insights in all, "
              f"{sum(1 for n in ordinary if n)} days with any, max {max(ordinary)} on one day")


if __name__ == "__main__":
    main()
