"""The `trailsight` command: each command parses options, calls one library function, formats the result."""

from __future__ import annotations

import csv
import json
import os
import sys
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from trailsight.errors import TrailsightError, UsageError
from trailsight.lake import export as export_module
from trailsight.lake import ingest as lake_module
from trailsight.query import athena
from trailsight.query.duckdb_engine import QueryResult, run_sql
from trailsight.query.sqlfiles import load_sql
from trailsight.retention import archive as archive_module
from trailsight.retention import costs
from trailsight.retention import lifecycle as lifecycle_module
from trailsight.retention.policy import DEFAULT_POLICY, load_policy
from trailsight.schema import load_schema, markdown

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


PublicKeysOption = Annotated[
    Path | None, typer.Option("--public-keys", help="CloudTrail public keys: a JSON file {fingerprint: PEM} or the "
                              "output of `aws cloudtrail list-public-keys`; signatures are checked when given.")
]


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
def report(
    lake: LakeOption,
    day: Annotated[str, typer.Option("--date", help="The day to report on, YYYY-MM-DD (UTC).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the reports (default: reports/<date>).")] = (
        None),
    names: Annotated[str | None, typer.Option("--reports", help="Comma-separated subset of the reports.")] = None,
    engine: EngineOption = Engine.duckdb,
    database: DatabaseOption = "trailsight",
    workgroup: WorkgroupOption = "primary",
    output_location: OutputLocationOption = None,
    source: Annotated[str | None, typer.Option("--source", help="The raw archive: also verify the day's log "
                                               "files against CloudTrail's digests (integrity.json).")] = None,
    public_keys: PublicKeysOption = None,
) -> None:
    """Write the daily reports for one day: JSON and CSV per report, insights.json, Markdown and HTML.

    The same SQL files run on DuckDB (default) or on Athena (--engine athena), where each query's bytes scanned
    and cost are printed and recorded in summary.json.

    Example: trailsight report --lake ./lake --date 2024-05-01 --out ./reports/2024-05-01
    """
    from trailsight.report.daily import write_daily_report

    parsed = parse_day(day, "--date")
    target = out_dir or Path("reports") / parsed.isoformat()
    settings = athena.AthenaSettings(database, workgroup, output_location) if engine is Engine.athena else None
    summary = write_daily_report(lake, parsed, target, names, athena=settings, source=source, public_keys=public_keys)
    if settings:
        err.print(f"Athena: {summary.engine['queries']} queries, {summary.engine['bytes_scanned']:,} bytes scanned, "
                  f"about ${summary.engine['cost_usd']:.6f} at ${summary.engine['usd_per_tb']}/TB")
    for warning in summary.warnings:
        err.print(f"warning: {warning}")
    out.print(f"{parsed}: {summary.events:,} events, {summary.failed:,} failed calls, {summary.spikes} spikes, "
              f"findings {summary.findings}")
    out.print(f"wrote {len(summary.files)} files to {target} (open {target / 'report.html'})")


@app.command()
def verify(
    source: SourceOption,
    day: Annotated[str, typer.Option("--date", help="Delivery day to verify, YYYY-MM-DD (UTC).")],
    account: Annotated[list[str] | None, typer.Option("--account", help="Only this account (repeatable).")] = None,
    region: Annotated[list[str] | None, typer.Option("--region", help="Only this region (repeatable).")] = None,
    public_keys: PublicKeysOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
) -> None:
    """Verify a day's log files against CloudTrail's digests: hashes, unlisted files, chain gaps, signatures.

    Exit code 0 when everything verifies, 2 when problems were found, 1 when the check itself could not run.
    A digest's signature is read from S3 metadata (x-amz-meta-signature) or, for local copies, from
    `<digest key>.signature` beside it.

    Example: trailsight verify --source ./archive --date 2024-05-01 --public-keys keys.json
    """
    from trailsight.integrity.digests import verify_digests

    parsed = parse_day(day, "--date")
    result = verify_digests(source, parsed, tuple(account or ()), tuple(region or ()), public_keys)
    if as_json:
        out.print_json(json.dumps(result.as_dict(), default=str))
    else:
        signatures = (f"{result.signatures_valid} of {result.signatures_checked} valid" if public_keys
                      else "not checked (no --public-keys)")
        print(f"verified {parsed} in {source}: {result.digests} digests in {result.chains} chains; "
              f"{result.log_files_valid} of {result.log_files_listed} listed log files intact; "
              f"{result.log_files_in_folders} log files in the day's folders; signatures: {signatures}")
        for problem in result.problems:
            print(f"{problem.kind.value}  {problem.key}  {problem.detail}")
        for note in result.notes:
            print(f"note: {note}")
        counts = ", ".join(f"{kind} {n}" for kind, n in result.counts().items())
        print("OK" if result.ok else f"FAILED: {len(result.problems)} problems ({counts})")
    if not result.ok:
        raise typer.Exit(2)


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
    signing_key: Annotated[Path | None, typer.Option("--signing-key", help="PEM RSA private key: sign the digests "
                                                     "(signature in <digest>.signature).")] = None,
) -> None:
    """Write a realistic, deterministic CloudTrail archive with injected incidents.

    Example: trailsight generate --out ./archive --days 7 --seed 1
    """
    from trailsight.synth.generate import generate_archive

    last = parse_day(end, "--end") if end else None
    summary = generate_archive(out_path, days, seed=seed, end=last, events_per_day=events_per_day, workers=workers,
                               signing_key=signing_key)
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


@app.command()
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="Where the sample archive, the lake and the reports go.")] = (
        Path("demo")),
    days: Annotated[int, typer.Option(min=1, help="Days of sample data.")] = 8,
    events_per_day: Annotated[int, typer.Option(min=1, help="Events per day.")] = 20_000,
    source_url: Annotated[str | None, typer.Option("--source", help="Archive location (default: DIR/source); "
                                                   "an empty s3:// location gets the sample data uploaded.")] = None,
    lake_url: Annotated[str | None, typer.Option("--lake", help="Lake location (default: DIR/lake).")] = None,
) -> None:
    """Generate sample data and run the daily job on it end to end: local folders, DuckDB, Prefect (ephemeral).

    Example: trailsight demo --dir ./demo
    """
    from trailsight.flows.prefect_env import configure_prefect
    from trailsight.source.discovery import find_awslogs_roots
    from trailsight.storage.store import Storage, copy_objects
    from trailsight.synth.generate import generate_archive

    configure_prefect()
    from trailsight.flows.daily import backfill, daily, yesterday

    generated = folder / "source"
    source, lake, report_root = source_url or str(generated), lake_url or str(folder / "lake"), folder / "reports"
    last = yesterday()
    first = last - timedelta(days=days - 1)
    if not (generated / "ground_truth.json").exists():
        with err.status(f"generating {days} days of sample CloudTrail data in {generated}"):
            generate_archive(generated, days, end=last, events_per_day=events_per_day)
    target = Storage(source)
    if source != str(generated) and not find_awslogs_roots(target):
        with err.status(f"uploading the sample archive to {source}"):
            copy_objects(Storage(generated), target)
    paths = {"source": source, "lake_url": lake, "report_root": str(report_root)}
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


# --- retention: archive, restore, lifecycle, cost plan ------------------------------------------------------

PolicyOption = Annotated[
    Path | None, typer.Option("--policy", help="Retention policy file (default: `trailsight retention defaults`).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
EXIT_PENDING = 3
"""`trailsight restore`: S3 is still restoring archived bundles; run the same command again later."""


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _line(text: str, *, error: bool = False) -> None:
    """A plain line (no markup, no wrapping): messages carry keys, JSON and [sections] verbatim."""
    print(text, file=sys.stderr if error else sys.stdout)


def _table(title: str, columns: list[str], rows: list[list[Any]], right: frozenset[int] = frozenset()) -> Table:
    """A rich table whose cells are literal text; the first column (a name or key) is never cut short."""
    table = Table(title=title, title_justify="left")
    for number, column in enumerate(columns):
        table.add_column(column, justify="right" if number in right else "left", no_wrap=number == 0,
                         overflow="fold")
    for row in rows:
        table.add_row(*(Text("-" if v is None else f"{v:,}" if type(v) is int else str(v)) for v in row))
    return table


def _show(table: Table) -> None:
    """Print a table; into a file or pipe at its natural width rather than squeezed into 80 columns."""
    if out.is_terminal:
        out.print(table)
        return
    width = max(out.width, Measurement.get(out, out.options.update(max_width=10_000), table).maximum)
    Console(file=out.file, width=width).print(table)


@app.command()
def archive(
    source: SourceOption,
    lake: LakeOption,
    day: Annotated[str, typer.Option("--date", help="The delivery day to archive, YYYY-MM-DD (UTC).")],
    policy: PolicyOption = None,
    force: Annotated[bool, typer.Option("--force", help="Archive a day still inside keep_as_delivered_days.")] = (
        False),
    as_json: JsonOption = False,
) -> None:
    """Verify a delivery day's raw files against the lake, bundle them per account and region, then delete them.

    Originals are deleted only once every event is in the lake (or its
    quarantine) and the bundle is written and read back with its checksum.
    A day failing verification is left as it is: problems go to stderr, exit 1.
    Running it again resumes an interrupted run; no bundle is written twice.

    Example: trailsight archive --source ./archive --lake ./lake --date 2024-05-01
    """
    result = archive_module.archive_day(source, lake, parse_day(day, "--date"), load_policy(policy), force=force)
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        rows = [[g.group, g.status, g.files, g.bundle_bytes, g.storage_class, g.in_lake, g.quarantined]
                for g in result.groups]
        if rows:
            columns = ["group", "status", "files", "bundle bytes", "class", "events in lake", "quarantined"]
            _show(_table(f"archive {result.day}", columns, rows, right=frozenset({2, 3, 5, 6})))
        for group in result.groups:
            for step in group.steps:
                if step.startswith("note:"):
                    _line(f"{group.group}: {step}", error=True)
        _line(f"{result.day} {result.status}: {_plural(result.bundles_written, 'bundle')} written, "
              f"{_plural(result.files_deleted, 'original')} deleted")
    if not result.ok:
        for problem in result.problems:
            _line(problem, error=True)
        _line(f"{result.day} failed verification ({_plural(len(result.problems), 'problem')}); nothing was "
              "written or deleted", error=True)
        raise typer.Exit(1)


@app.command()
def restore(
    source: SourceOption,
    day: Annotated[str, typer.Option("--date", help="The delivery day to restore, YYYY-MM-DD (UTC).")],
    target: Annotated[str | None, typer.Option("--target", help="Where to put the originals (default: the "
                                               "archive itself, under their own keys).")] = None,
    account: Annotated[list[str] | None, typer.Option("--account", help="Only this account (repeatable).")] = None,
    region: Annotated[list[str] | None, typer.Option("--region", help="Only this region (repeatable).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files that exist with other contents.")] = (
        False),
    policy: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put a day's original raw files back from its bundles, byte for byte.

    Files already in place are left alone. Bundles in GLACIER or DEEP_ARCHIVE
    must be restored by S3 first: the first run asks for it and exits 3; run
    the same command again later.
    Exit codes: 0 restored (or nothing to restore), 1 failed, 3 pending.

    Example: trailsight restore --source ./archive --date 2024-05-01
    """
    parsed = parse_day(day, "--date")
    loaded = load_policy(policy)
    result = archive_module.restore_day(source, parsed, loaded, target=target, accounts=tuple(account or ()),
                                        regions=tuple(region or ()), overwrite=overwrite)
    pending = [b for b in result.bundles if b.status == "pending"]
    failed = [b for b in result.bundles if b.status == "failed"]
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        folder = f"{loaded.bundles_prefix}{parsed:%Y/%m/%d}/"
        rows = [[b.key.removeprefix(folder), b.storage_class, b.status, b.files_written, b.files_present]
                for b in result.bundles]
        if rows:
            columns = ["bundle", "storage class", "status", "files written", "already in place"]
            _show(_table(f"restore {parsed}", columns, rows, right=frozenset({3, 4})))
        for bundle in pending:
            _line(f"{bundle.key}: {bundle.detail}")
        if result.status == "nothing to restore":
            _line(f"{parsed}: nothing to restore (no bundles under {folder} of {result.source})")
        else:
            _line(f"{parsed} {result.status}: {_plural(result.files_written, 'file')} written, "
                  f"{result.files_present:,} already in place, under {result.target}")
    for bundle in failed:
        _line(f"{bundle.key}: {bundle.detail}", error=True)
    if failed:
        raise typer.Exit(1)
    if pending:
        _line(f"S3 is restoring {_plural(len(pending), 'bundle')}; run the same command again later", error=as_json)
        raise typer.Exit(EXIT_PENDING)


lifecycle_app = typer.Typer(
    help="S3 lifecycle rules derived from the retention policy, merged with the bucket's own rules.\n\n"
         "Example: trailsight lifecycle plan --bucket s3://my-trail-bucket",
    no_args_is_help=True,
)
app.add_typer(lifecycle_app, name="lifecycle")

BucketOption = Annotated[str, typer.Option("--bucket", help="The archive's location: s3://BUCKET or s3://BUCKET/prefix.")]
LifecycleLakeOption = Annotated[
    str | None, typer.Option("--lake", help="The lake, if it is in the same bucket: it gets an expiration rule.")
]


def _print_plan(plan: lifecycle_module.LifecyclePlan) -> None:
    diff = plan.diff()
    _line(diff if diff else f"{plan.bucket}: lifecycle rules in sync with the policy")
    if plan.kept:
        _line(f"kept as they are: {', '.join(plan.kept)}")
    for warning in plan.warnings:
        _line(f"warning: {warning}", error=True)


def _print_drift(check: lifecycle_module.LifecycleCheck) -> None:
    if check.in_sync:
        _line(f"{check.bucket}: in sync with the policy")
    for drift in check.drift:
        _line(f"drift: {drift}")


@lifecycle_app.command("plan")
def lifecycle_plan(bucket: BucketOption, lake: LifecycleLakeOption = None, policy: PolicyOption = None) -> None:
    """Show what `lifecycle apply` would change: trailsight's rules, diffed; other rules are kept as they are.

    Example: trailsight lifecycle plan --bucket s3://my-trail-bucket
    """
    _print_plan(lifecycle_module.plan_lifecycle(bucket, load_policy(policy), lake))


@lifecycle_app.command("apply")
def lifecycle_apply(
    bucket: BucketOption,
    lake: LifecycleLakeOption = None,
    policy: PolicyOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
) -> None:
    """Show the diff, ask, then write exactly that plan (refused if the bucket changed meanwhile) and check it.

    Exit codes: 0 applied (or nothing to change) and in sync;
    1 declined, refused (the bucket changed), or drift left after applying.

    Example: trailsight lifecycle apply --bucket s3://my-trail-bucket --yes
    """
    loaded = load_policy(policy)
    plan = lifecycle_module.plan_lifecycle(bucket, loaded, lake)
    _print_plan(plan)
    if not plan.in_sync and not yes:
        typer.confirm(f"Write these lifecycle rules to bucket {plan.bucket}?", abort=True)
    result = lifecycle_module.apply_lifecycle(bucket, loaded, lake, plan=plan)
    if result.applied:
        changes = len(plan.changes) + int(plan.minimum_size_changes)
        _line(f"applied {_plural(changes, 'change')} to bucket {plan.bucket}")
    else:
        _line("nothing to change")
    _print_drift(result.check)
    if not result.check.in_sync:
        raise typer.Exit(1)


@lifecycle_app.command("check")
def lifecycle_check(bucket: BucketOption, lake: LifecycleLakeOption = None, policy: PolicyOption = None) -> None:
    """Report drift between the bucket's lifecycle rules and the policy: exit 0 in sync, 1 with one line each.

    Example: trailsight lifecycle check --bucket s3://my-trail-bucket
    """
    check = lifecycle_module.check_lifecycle(bucket, load_policy(policy), lake)
    for warning in check.warnings:
        _line(f"warning: {warning}", error=True)
    _print_drift(check)
    if not check.in_sync:
        raise typer.Exit(1)


retention_app = typer.Typer(
    help="The retention policy: what keeping the raw archive costs, as it is and under the policy.\n\n"
         "Example: trailsight retention plan --source s3://my-trail-bucket --years 7",
    no_args_is_help=True,
)
app.add_typer(retention_app, name="retention")


def _money(values: list[float]) -> list[str]:
    """Amounts with one number of decimals, enough to tell the smallest apart (a sample costs fractions of a cent)."""
    smallest = min((abs(v) for v in values if v), default=1.0)
    decimals = 2 if smallest >= 1 else 4 if smallest >= 0.01 else 6
    return [f"{v:,.{decimals}f}" for v in values]


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count:,} B"


@retention_app.command("defaults")
def retention_defaults(
    prices: Annotated[bool, typer.Option("--prices", help="Print the price table instead of the policy.")] = False,
) -> None:
    """Print the policy (or price table) trailsight uses when none is given, to copy and edit.

    Example: trailsight retention defaults > retention.toml
    """
    shipped = costs.DEFAULT_PRICES if prices else DEFAULT_POLICY
    sys.stdout.write(shipped.read_text())


@retention_app.command("plan")
def retention_plan(
    source: SourceOption,
    start: StartOption = None,
    end: EndOption = None,
    years: Annotated[int | None, typer.Option("--years", min=1, max=30, help="Horizon (default: the policy's "
                                              "retain_days in years, or 5 when kept forever).")] = None,
    prices: Annotated[Path | None, typer.Option("--prices", help="Price table (default: the shipped one, see "
                                                "`retention defaults --prices`).")] = None,
    policy: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Inventory the raw archive and cost keeping it as is, with a lifecycle rule alone, and under the policy.

    --start/--end sample a range of delivery days (cheaper on a huge bucket);
    its average day stands for every day. Prices: retention-prices.toml.

    Example: trailsight retention plan --source ./archive --years 7
    """
    first, last = date_range(None, start, end)
    plan = costs.cost_plan(source, load_policy(policy), costs.load_prices(prices), years=years, start=first,
                           end=last)
    if as_json:
        out.print_json(json.dumps(plan.as_dict()))
        return
    _print_cost_plan(plan)


def _print_cost_plan(plan: costs.CostPlan) -> None:
    """Inventory, size distribution, scenarios by month, where the money goes, notes."""
    inventory, money = plan.inventory.summary(), plan.currency
    _show(_table(f"raw archive {inventory['first_day']} .. {inventory['last_day']} "
                 f"({_plural(inventory['days'], 'day')})", ["", "objects", "size"], [
        ["raw objects", inventory["objects"], _size(inventory["bytes"])],
        ["  event files", inventory["event_files"], ""],
        ["  digests and others", inventory["other_objects"], ""],
        ["  under 128 KB", inventory["objects_under_128k"], ""],
        ["per day", f"{inventory['objects_per_day']:,}", _size(inventory["bytes_per_day"])],
        ["bundles the policy makes", inventory["bundles"], _size(inventory["bundle_bytes"])],
        ["  under 128 KB", inventory["bundles_under_128k"], ""],
    ], right=frozenset({1, 2})))
    total = max(plan.inventory.objects, 1)
    _show(_table("size distribution", ["object size", "objects", "share", "bytes"], [
        [b.label, b.objects, f"{b.objects / total:.1%}", _size(b.bytes)]
        for b in plan.inventory.size_distribution()], right=frozenset({1, 2, 3})))
    _line(f"current monthly storage cost as is: {_money([plan.current_monthly_as_is])[0]} {money}")

    columns = len(plan.scenarios[0].monthly)
    figures = [[s.monthly[0], s.monthly[min(11, columns - 1)], s.monthly[-1], s.total] for s in plan.scenarios]
    shown = _money([v for row in figures for v in row])
    _show(_table(f"monthly cost, {money}", ["scenario", "month 1", "month 12", "last month",
                                            f"total over {plan.years} years"],
                 [[s.name, *shown[4 * i:4 * i + 4]] for i, s in enumerate(plan.scenarios)],
                 right=frozenset({1, 2, 3, 4})))
    for scenario in plan.scenarios:
        _line(f"{scenario.name}: {scenario.description}")

    keys = [(s.name, c) for s in plan.scenarios for c in s.components]
    amounts = dict(zip(keys, _money([v for s in plan.scenarios for v in s.components.values()]), strict=True))
    components = sorted({c for _, c in keys})
    _show(_table(f"where the money goes, total over {plan.years} years, {money}",
                 ["component", *(s.name for s in plan.scenarios)],
                 [[c, *(amounts.get((s.name, c)) for s in plan.scenarios)] for c in components],
                 right=frozenset(range(1, len(plan.scenarios) + 1))))
    for note in plan.notes:
        _line(f"- {note}")


# Typer 0.29 carries its own copy of click; older versions use click itself. Catch both.
CLICK_EXIT: tuple[type[Exception], ...] = (click.exceptions.Exit, typer.Exit)
CLICK_ERRORS: tuple[type[Exception], ...] = (click.ClickException,
                                             getattr(typer, "TyperException", click.ClickException))
CLICK_ABORT: tuple[type[BaseException], ...] = (click.Abort, typer.Abort)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; domain errors become one `Error:` line, never a traceback."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="trailsight", standalone_mode=False)
    except CLICK_EXIT as exc:
        return exc.exit_code
    except CLICK_ERRORS as exc:
        exc.show()
        return exc.exit_code
    except CLICK_ABORT:
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
