"""The `trailsight` command: each command parses options, calls one library function, formats the result."""

from __future__ import annotations

import csv
import json
import os
import sys
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trailsight import athena
from trailsight import export as export_module
from trailsight import lake as lake_module
from trailsight.errors import TrailsightError, UsageError
from trailsight.query import QueryResult, run_sql
from trailsight.schema import PROJECT_ROOT, load_schema, markdown
from trailsight.sqlfiles import load_sql

app = typer.Typer(
    help="Turn a CloudTrail archive into a queryable Parquet lake.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

SourceOption = Annotated[str, typer.Option("--source", help="CloudTrail archive root, laid out like the bucket.")]
LakeOption = Annotated[str, typer.Option("--lake", help="Lake root folder.")]
DateOption = Annotated[str | None, typer.Option("--date", help="One day, YYYY-MM-DD (UTC).")]
StartOption = Annotated[str | None, typer.Option("--start", help="First day of a range, YYYY-MM-DD.")]
EndOption = Annotated[str | None, typer.Option("--end", help="Last day of a range, YYYY-MM-DD.")]


def parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a date; use YYYY-MM-DD") from None


def date_range(day: str | None, start: str | None, end: str | None) -> tuple[date | None, date | None]:
    """--date D, or --start D --end D, or nothing (everything)."""
    if day and (start or end):
        raise UsageError("give either --date or --start/--end, not both")
    if day:
        parsed = parse_day(day, "--date")
        return parsed, parsed
    if bool(start) != bool(end):
        raise UsageError("--start and --end go together")
    if start and end:
        first, last = parse_day(start, "--start"), parse_day(end, "--end")
        if first > last:
            raise UsageError(f"--start {first} is after --end {last}")
        return first, last
    return None, None


def _summary_table(title: str, values: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in values.items():
        table.add_row(key.replace("_", " "), f"{value:,}" if type(value) is int else str(value))
    return table


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


def print_result(result: QueryResult, output_format: str) -> None:
    if output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    elif output_format == "json":
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        sys.stdout.write(json.dumps(rows, default=str, indent=2) + "\n")
    else:
        table = Table(*result.columns)
        for row in result.rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        out.print(table)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]


@app.command()
def report(
    lake: LakeOption,
    day: Annotated[str, typer.Option("--date", help="The day to report on, YYYY-MM-DD (UTC).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the reports (default: reports/<date>).")] = (
        None),
    names: Annotated[str | None, typer.Option("--reports", help="Comma-separated subset of the reports.")] = None,
) -> None:
    """Write the daily reports for one day: JSON and CSV per report, insights.json, Markdown and HTML.

    Example: trailsight report --lake ./lake --date 2024-05-01 --out ./reports/2024-05-01
    """
    from trailsight.reports import write_daily_report

    parsed = parse_day(day, "--date")
    target = out_dir or Path("reports") / parsed.isoformat()
    summary = write_daily_report(lake, parsed, target, names)
    for warning in summary.warnings:
        err.print(f"warning: {warning}")
    out.print(f"{parsed}: {summary.events:,} events, {summary.failed:,} failed calls, {summary.spikes} spikes, "
              f"findings {summary.findings}")
    out.print(f"wrote {len(summary.files)} files to {target} (open {target / 'report.html'})")


class Engine(StrEnum):
    duckdb = "duckdb"
    athena = "athena"


EngineOption = Annotated[Engine, typer.Option("--engine", help="Query engine: embedded DuckDB, or Athena.")]
DatabaseOption = Annotated[str, typer.Option("--database", help="Athena/Glue database.")]
WorkgroupOption = Annotated[str, typer.Option("--workgroup", help="Athena workgroup.")]
OutputLocationOption = Annotated[
    str | None, typer.Option("--output-location", help="s3:// folder for Athena results (default: the workgroup's).")
]


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


athena_app = typer.Typer(help="Athena: the Glue tables and their DDL, derived from the schema.", no_args_is_help=True)
app.add_typer(athena_app, name="athena")


@athena_app.command("ddl")
def athena_ddl(lake: LakeOption, database: DatabaseOption = "trailsight") -> None:
    """Print the CREATE EXTERNAL TABLE statements (partition projection, Parquet) for an S3 lake.

    Example: trailsight athena ddl --lake s3://my-bucket/lake --database audit
    """
    sys.stdout.write(athena.ddl(lake, athena.AthenaSettings(database)))


@athena_app.command("create")
def athena_create(lake: LakeOption, database: DatabaseOption = "trailsight") -> None:
    """Create or update the Glue database and tables for an S3 lake (idempotent; no crawler, no MSCK REPAIR).

    Example: trailsight athena create --lake s3://my-bucket/lake --database audit
    """
    for line in athena.create_tables(lake, athena.AthenaSettings(database)):
        out.print(line)


@app.command()
def generate(
    out_path: Annotated[Path, typer.Option("--out", help="Folder to write the sample archive into.")],
    days: Annotated[int, typer.Option(min=1, help="Number of days.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 7,
    end: Annotated[str | None, typer.Option("--end", help="Last day, YYYY-MM-DD (default: yesterday, UTC).")] = None,
    events_per_day: Annotated[int, typer.Option(min=1, help="Events per day across all accounts.")] = 20_000,
    workers: Annotated[int, typer.Option(min=1, help="Generator processes.")] = 1,
) -> None:
    """Write a realistic, deterministic CloudTrail archive with injected incidents.

    Example: trailsight generate --out ./archive --days 7 --seed 1
    """
    from trailsight.generate import generate_archive

    last = parse_day(end, "--end") if end else None
    summary = generate_archive(out_path, days, seed=seed, end=last, events_per_day=events_per_day, workers=workers)
    out.print(
        f"wrote {summary.events:,} events in {summary.log_files:,} log files and {summary.digest_files:,} digests "
        f"({summary.raw_bytes / 1e6:,.1f} MB of JSON) under {out_path}; incidents in {summary.ground_truth}"
    )


@app.command()
def schema() -> None:
    """Print the lake schema as Markdown (the same text as docs/schema.md).

    Example: trailsight schema > docs/schema.md
    """
    sys.stdout.write(markdown(load_schema()))


def _yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


@app.command()
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="Where the sample archive, the lake and the reports go.")] = (
        Path("demo")),
    days: Annotated[int, typer.Option(min=1, help="Days of sample data.")] = 8,
    events_per_day: Annotated[int, typer.Option(min=1, help="Events per day.")] = 20_000,
) -> None:
    """Generate sample data and run the daily job on it end to end: local folders, DuckDB, Prefect (ephemeral).

    Example: trailsight demo --dir ./demo
    """
    from trailsight.generate import generate_archive
    from trailsight.prefect_env import configure_prefect

    configure_prefect()
    sys.path.insert(0, str(PROJECT_ROOT))
    from flows.daily import backfill, daily

    source, lake, report_root = folder / "source", folder / "lake", folder / "reports"
    last = _yesterday()
    first = last - timedelta(days=days - 1)
    if not (source / "ground_truth.json").exists():
        with err.status(f"generating {days} days of sample CloudTrail data in {source}"):
            generate_archive(source, days, end=last, events_per_day=events_per_day)
    paths = {"source": str(source), "lake_url": str(lake), "report_root": str(report_root)}
    if first < last:
        backfill(start=first, end=last - timedelta(days=1), **paths)
    result = daily(day=last, **paths)
    ingest, report = result["ingest"], result["report"]
    out.print(f"\ningested {ingest['events_read']:,} events from {ingest['files_found']:,} files: "
              f"{ingest['events_written']:,} new, {ingest['duplicates']:,} duplicates, "
              f"{ingest['events_quarantined']:,} quarantined")
    for name in ("lake_overview", "top_event_names"):
        query = load_sql(name)
        out.print(f"\n[bold]{query.title}[/bold]: {query.description}")
        print_result(run_sql(lake, query.sql), OutputFormat.table)
    out.print(f"\n{last}: {report['events']:,} events, {report['failed']:,} failed calls, {report['spikes']} spikes, "
              f"findings {report['findings']}")
    out.print(f"report: {(report_root / last.isoformat() / 'report.html').resolve()}")
    out.print(f"lake:   {lake}  ·  try: trailsight sql --lake {lake} \"SELECT * FROM cloudtrail LIMIT 5\"")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; domain errors become one `Error:` line, never a traceback."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="trailsight", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        err.print("Aborted.")
        return 1
    except TrailsightError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(f"Error: AWS {exc.operation_name}: {error.get('Code', '?')}: {error.get('Message', exc)}",
              file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(f"Error: AWS: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        err.print("Interrupted.")
        return 130
    except Exception as exc:
        if os.environ.get("TRAILSIGHT_DEBUG"):
            raise
        print(f"Error: unexpected {type(exc).__name__}: {exc} (set TRAILSIGHT_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())
