"""Commands that judge a day: the daily report and digest verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from trailsight.cli.common import (
    DatabaseOption,
    Engine,
    EngineOption,
    LakeOption,
    OutputLocationOption,
    PublicKeysOption,
    SourceOption,
    WorkgroupOption,
    _line,
    app,
    engine_settings,
    err,
    out,
    parse_day,
)
from trailsight.errors import NoDataError
from trailsight.report.daily import counts_text


@app.command()
def report(
    lake: LakeOption,
    day: Annotated[str, typer.Option("--date", help="The day to report on, YYYY-MM-DD (UTC).")],
    out_dir: Annotated[str | None, typer.Option("--out", help="Folder or s3:// prefix for the reports (default: "
                                                "reports/DATE).")] = None,
    names: Annotated[str | None, typer.Option("--reports", help="Comma-separated subset of the reports.")] = None,
    engine: EngineOption = Engine.duckdb,
    database: DatabaseOption = "trailsight",
    workgroup: WorkgroupOption = "primary",
    output_location: OutputLocationOption = None,
    source: Annotated[str | None, typer.Option("--source", help="The raw archive: also verify the day's log "
                                               "files against CloudTrail's digests (integrity.json).")] = None,
    public_keys: PublicKeysOption = None,
    suppress: Annotated[Path | None, typer.Option("--suppress", help="Suppression file (YAML list of detection, "
                                                   "principal pattern, account, reason, expires).")] = None,
) -> None:
    """Write the daily reports for one day: JSON and CSV per report, insights.json, Markdown and HTML.

    The same SQL files run on DuckDB (default) or on Athena (--engine athena), where each query's bytes scanned
    and cost are printed and recorded in summary.json.

    Example: trailsight report --lake ./lake --date 2024-05-01 --out ./reports/2024-05-01
    """
    from trailsight.report.daily import write_daily_report
    from trailsight.report.detections import DetectionConfig

    parsed = parse_day(day, "--date")
    target = out_dir or str(Path("reports") / parsed.isoformat())
    settings = engine_settings(engine, database, workgroup, output_location)
    detection = DetectionConfig(suppression_file=str(suppress)) if suppress else None
    summary = write_daily_report(lake, parsed, target, names, engine=settings, source=source, public_keys=public_keys,
                                 detection=detection)
    if summary.engine["engine"] == "athena":
        err.print(f"Athena: {summary.engine['queries']} queries, {summary.engine['bytes_scanned']:,} bytes scanned, "
                  f"about ${summary.engine['cost_usd']:.6f} at ${summary.engine['usd_per_tb']}/TB")
    for warning in summary.warnings:
        _line(f"warning: {warning}", error=True)
    for note in summary.notes:
        _line(f"note: {note}", error=True)
    out.print(f"{parsed}: {summary.events:,} events, {summary.failed:,} failed calls, {summary.spikes} spikes, "
              f"findings: {counts_text(summary.findings)} (new: {counts_text(summary.new_findings)})")
    _line(f"wrote {len(summary.files)} files to {target} (open {target.rstrip('/')}/report.html)")
    if not summary.events:
        raise NoDataError(f"no data: the lake {lake} has no events dated {parsed}; was the day ingested?")


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
