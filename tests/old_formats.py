"""Lakes in the layout earlier trailsight formats wrote, made from a current lake, for the migration's tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from trailsight.lake.layout import FORMAT_KEY, TABLES


def as_region_folders(lake: Path, format_number: int) -> None:
    """Rewrite a current lake as formats 2 and 3 kept it: a folder per account, region and day, files without
    the region column, no derived files (a reader derives what is missing), and the format recorded."""
    for table in TABLES:
        for path in sorted((lake / table).rglob("*.parquet")):
            rows = pq.ParquetFile(path).read()
            for region in sorted(set(rows.column("region").to_pylist())):
                part = rows.filter(pc.equal(rows["region"], region)).drop_columns(["region"])
                target = path.parent / f"region={region}" / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(part, target)
            path.unlink()
    shutil.rmtree(lake / "_derived", ignore_errors=True)
    (lake / FORMAT_KEY).write_text(json.dumps({"format": format_number}))
