"""Commands on the lake itself: ingest, export, ad hoc SQL, the schema."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
    _summary_table,
    app,
    date_range,
    err,
    out,
    print_result,
)
from trailsight.lake import export as export_module
from trailsight.lake import ingest as lake_module
from trailsight.query import athena
from trailsight.query.duckdb_engine import QueryResult, run_sql
from trailsight.schema import load_schema, markdown


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
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Convert CloudTrail log files into the Parquet lake (no date: everything found).

    Example: trailsight ingest --source ./archive --lake ./lake --date 2024-05-01
    """
    first, last = date_range(day, start, end)
    with Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=as_json or not err.is_terminal) as progress:
        task = progress.add_task("files", total=None)
        summary = lake_module.ingest(
            source, lake, first, last, tuple(account or ()), tuple(region or ()), late_hours, workers,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
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
def sql(
    lake: LakeOption,
    query: Annotated[str, typer.Argument(help="SQL over the views cloudtrail and cloudtrail_insights.")],
    output_format: FormatOption = OutputFormat.table,
    engine: EngineOption = Engine.duckdb,
    database: DatabaseOption = "trailsight",
    workgroup: WorkgroupOption = "primary",
    output_location: OutputLocationOption = None,
) -> None:
    """Run SQL over the lake with DuckDB (local folder or S3), or with Athena (written in DuckDB's dialect).

    Example: trailsight sql --lake ./lake "SELECT eventname, count(*) FROM cloudtrail GROUP BY 1 ORDER BY 2 DESC"
    """
    if engine is Engine.athena:
        run = athena.run_query(query, {}, athena.AthenaSettings(database, workgroup, output_location))
        print_result(QueryResult(run.columns, run.rows), output_format)
        err.print(f"Athena query {run.query_id}: {run.bytes_scanned:,} bytes scanned, "
                  f"about ${run.cost_usd:.6f}")
        return
    print_result(run_sql(lake, query), output_format)


@app.command()
def schema() -> None:
    """Print the lake schema as Markdown (the same text as docs/schema.md).

    Example: trailsight schema > docs/schema.md
    """
    sys.stdout.write(markdown(load_schema()))
