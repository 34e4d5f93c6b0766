"""Sample data and the demo: generate an archive, run the daily job on it end to end."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from trailsight.cli.common import OutputFormat, app, err, out, parse_day, print_result
from trailsight.query.duckdb_engine import run_sql
from trailsight.query.sqlfiles import load_sql
from trailsight.report.daily import counts_text


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
              f"findings: {counts_text(report['findings'])}")
    out.print(f"report: {(report_root / last.isoformat() / 'report.html').resolve()}")
    out.print(f"lake:   {lake}  ·  try: trailsight sql --lake {lake} \"SELECT * FROM cloudtrail LIMIT 5\"")
