"""Commands on the lake itself: ingest, export, ad hoc SQL, the schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from trailsight.cli.common import (
    DatabaseOption,
    DateOption,
    EndOption,
    Engine,
    EngineOption,
    FormatOption,
    LakeOption,
    OutputFormat,
    OutputLocationOption,
    SourceOption,
    StartOption,
    WorkgroupOption,
    _line,
    _summary_table,
    app,
    date_range,
    engine_settings,
    err,
    out,
    print_result,
    write_result,
)
from trailsight.errors import UsageError
from trailsight.lake import export as export_module
from trailsight.lake import ingest as lake_module
from trailsight.lake.layout import LAKE_FORMAT
from trailsight.lake.progress import ProgressLines
from trailsight.query.duckdb_engine import QueryResult, write_parquet
from trailsight.query.engine import open_engine
from trailsight.schema import load_schema, markdown
from trailsight.storage.store import as_storage

# Seconds between progress lines when stderr is not a terminal (cron, CI, a pipe).
PROGRESS_EVERY = 10.0


@app.command()
def ingest(
    source: SourceOption,
    lake: LakeOption,
    day: DateOption = None,
    start: StartOption = None,
    end: EndOption = None,
    account: Annotated[list[str] | None, typer.Option("--account", help="Only this account (repeatable).")] = None,
    region: Annotated[list[str] | None, typer.Option("--region", help="Only this region (repeatable).")] = None,
    late_hours: Annotated[int, typer.Option(help="Hours of the next day's deliveries read for late events.")] = (
        lake_module.LATE_HOURS),
    workers: Annotated[int | None, typer.Option(help="Conversion processes (default: one per core).")] = None,
    dask: Annotated[str | None, typer.Option("--dask", help="Run on the existing Dask cluster whose scheduler is "
                                             "at this address (tcp://host:8786); needs trailsight[dask].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Convert CloudTrail log files into the Parquet lake (no date: everything found).

    Example: trailsight ingest --source ./archive --lake ./lake --date 2024-05-01
    """
    first, last = date_range(day, start, end)
    if dask:
        from trailsight.lake.distributed import ingest_on_cluster

        summary = ingest_on_cluster(source, lake, dask, first, last, tuple(account or ()), tuple(region or ()),
                                    late_hours)
    else:
        summary = _ingest_here(source, lake, first, last, tuple(account or ()), tuple(region or ()), late_hours,
                               workers, as_json)
    if not summary.files_found:
        dates = f" delivered {first}..{last}" if first else ""
        err.print(f"note: no CloudTrail log files{dates} in {source}; --source takes the folder (or s3:// prefix) "
                  "that holds AWSLogs/", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        out.print_json(json.dumps(summary.as_dict()))
        return
    values = summary.as_dict()
    values.pop("partitions")
    quarantine = values.pop("quarantine")
    out.print(_summary_table("ingest", values))
    if quarantine:
        err.print(f"{len(quarantine)} object(s) with quarantined content; see {lake}/_quarantine/")


def _ingest_here(source: str, lake: str, first: Any, last: Any, accounts: tuple[str, ...], regions: tuple[str, ...],
                 late_hours: int, workers: int | None, as_json: bool) -> lake_module.IngestSummary:
    """The ingest on this machine: a live bar on a terminal, plain progress lines elsewhere (cron, CI, a pipe)."""
    live = err.is_terminal and not as_json
    lines = ProgressLines(lambda text: _line(text, error=True), every=PROGRESS_EVERY)
    with Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                  TextColumn("{task.fields[events]:,} events, {task.fields[rate]:,.0f}/s"), TimeRemainingColumn(),
                  console=err, transient=True, disable=not live) as progress:
        task = progress.add_task("files", total=None, events=0, rate=0.0)

        def on_progress(done: int, total: int, events: int) -> None:
            if live:
                elapsed = progress.tasks[0].elapsed or 0
                progress.update(task, completed=done, total=total, events=events,
                                rate=events / elapsed if elapsed else 0.0)
            elif not as_json:
                lines(done, total, events)

        return lake_module.ingest(source, lake, first, last, accounts, regions, late_hours, workers,
                                  on_progress=on_progress)


@app.command()
def export(
    lake: LakeOption,
    out_path: Annotated[str, typer.Option("--out", help="Folder to write CloudTrail log files into.")],
    day: DateOption = None,
    start: StartOption = None,
    end: EndOption = None,
) -> None:
    """Rebuild the original CloudTrail events from the lake as gzipped CloudTrail JSON files.

    Example: trailsight export --lake ./lake --date 2024-05-01 --out ./restored
    """
    first, last = date_range(day, start, end)
    summary = export_module.export(lake, out_path, first, last)
    out.print(f"exported {summary.events:,} events into {summary.files:,} files under {out_path}")


@app.command()
def migrate(lake: LakeOption) -> None:
    """Bring a lake written by an earlier trailsight to the current format, 4 (safe to run again).

    Formats 2 and 3 kept a folder per account, region and day; format 4 keeps one per account and day, region
    being a column. Format 2 also kept an event delivered twice in different bytes (keys in another order) as two;
    migrating keeps one of each. Example: trailsight migrate --lake ./lake
    """
    from trailsight.lake.migrate import migrate_lake

    summary = migrate_lake(lake)
    if summary.from_format == LAKE_FORMAT["format"]:
        out.print(f"{lake} is already in the current format")
        return
    out.print(f"migrated {lake} from format {summary.from_format}: {summary.partitions:,} partitions moved, "
              f"{summary.duplicates_removed:,} duplicate events removed, {summary.files_rewritten:,} files rewritten")


@app.command()
def sql(
    lake: LakeOption,
    query: Annotated[str, typer.Argument(help="SQL over the views cloudtrail (one row per event), cloudtrail_calls "
                                         "(the same rows plus principal, failed, error_code and error_family, as "
                                         "the reports count them) and cloudtrail_insights.")],
    output_format: FormatOption = OutputFormat.table,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the result into this file (any format; "
                                                  "needed for parquet).")] = None,
    engine: EngineOption = Engine.duckdb,
    database: DatabaseOption = "trailsight",
    workgroup: WorkgroupOption = "primary",
    output_location: OutputLocationOption = None,
) -> None:
    """Run SQL over the lake with DuckDB (local folder or S3), or with Athena (written in DuckDB's dialect).

    Views: cloudtrail (every event), cloudtrail_calls (with the reports' principal, failed, error_code and
    error_family), cloudtrail_insights (Insights events); `trailsight schema` lists the columns.
    Wide rows: --format line. Large results: --format parquet --out FILE.

    Example: trailsight sql --lake ./lake "SELECT eventname, count(*) FROM cloudtrail GROUP BY 1 ORDER BY 2 DESC"
    """
    if output_format is OutputFormat.parquet and out_path is None:
        raise UsageError("--format parquet writes a file; add --out PATH")
    if output_format is OutputFormat.parquet and engine is Engine.duckdb:
        rows = write_parquet(lake, query, out_path)
        _line(f"wrote {rows:,} rows to {out_path}", error=True)
        return
    running = open_engine(as_storage(lake), engine_settings(engine, database, workgroup, output_location))
    try:
        columns, found = running.query(query)
        stats = running.stats()
    finally:
        running.close()
    result = QueryResult(columns, found)
    if stats["engine"] == "athena":
        err.print(f"Athena query {stats['query_ids'][0]}: {stats['bytes_scanned']:,} bytes scanned, "
                  f"about ${stats['cost_usd']:.6f}")
    if out_path is None:
        print_result(result, output_format)
        return
    if output_format is OutputFormat.parquet:
        pq.write_table(pa.Table.from_pylist([dict(zip(result.columns, r, strict=True)) for r in result.rows]),
                       out_path)
    else:
        with open(out_path, "w", newline="") as stream:
            write_result(result, "line" if output_format is OutputFormat.table else output_format, stream)
    _line(f"wrote {len(result.rows):,} rows to {out_path}", error=True)


@app.command()
def schema() -> None:
    """Print the lake schema as Markdown (the same text as docs/schema.md).

    Example: trailsight schema > docs/schema.md
    """
    sys.stdout.write(markdown(load_schema()))
