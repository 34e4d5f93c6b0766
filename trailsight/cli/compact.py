"""The `compact` command: rewrite partitions' small data files as few engine-sized ones."""

from __future__ import annotations

import json

from trailsight.cli.common import (
    DateOption,
    EndOption,
    JsonOption,
    LakeOption,
    StartOption,
    _summary_table,
    app,
    date_range,
    out,
)
from trailsight.lake.compact import compact as compact_lake


@app.command()
def compact(
    lake: LakeOption,
    day: DateOption = None,
    start: StartOption = None,
    end: EndOption = None,
    as_json: JsonOption = False,
) -> None:
    """Merge each partition's data files into one (or a few of ~128 MB), atomically for readers (no date: all).

    Example: trailsight compact --lake ./lake --date 2024-05-01
    """
    first, last = date_range(day, start, end)
    summary = compact_lake(lake, first, last)
    if as_json:
        out.print_json(json.dumps(summary.as_dict()))
        return
    values = summary.as_dict()
    values.pop("compacted")
    out.print(_summary_table("compact", values))
