"""`trailsight detect`: run Sigma rules (SigmaHQ format, AWS CloudTrail) over one day of the lake."""

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
    WorkgroupOption,
    app,
    engine_settings,
    err,
    out,
    parse_day,
)
from trailsight.storage.store import as_storage


@app.command()
def detect(
    lake: LakeOption,
    day: Annotated[str, typer.Option("--date", help="The day to search, YYYY-MM-DD (UTC).")],
    sigma: Annotated[Path, typer.Option("--sigma", help="Folder of Sigma rules (*.yml, *.yaml), searched "
                                        "recursively; rules for other log sources are listed, not run.")],
    engine: EngineOption = Engine.duckdb,
    database: DatabaseOption = "trailsight",
    workgroup: WorkgroupOption = "primary",
    output_location: OutputLocationOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write every rule's result here.")] = None,
) -> None:
    """Convert Sigma rules to SQL (pySigma) and run them over one day; a rule that cannot be converted or run
    is listed with its reason and the others still run.

    Example: trailsight detect --lake ./lake --date 2024-05-01 --sigma ./rules
    """
    from trailsight.query.engine import open_engine
    from trailsight.report.sigma import convert_rules, run_sigma_rules

    parsed = parse_day(day, "--date")
    rules = convert_rules(sigma)
    running = open_engine(as_storage(lake), engine_settings(engine, database, workgroup, output_location))
    try:
        run_sigma_rules(running, rules, parsed)
    finally:
        running.close()
    for rule in rules:
        if rule.error:
            err.print(f"skipped {rule.path} ({rule.title}): {rule.error}")
        else:
            out.print(f"{rule.matches:6,} match(es)  {rule.level or '-':8}  {rule.title}  [{rule.path}]")
    ran = sum(1 for r in rules if not r.error)
    out.print(f"{parsed}: {ran} of {len(rules)} rule(s) ran, "
              f"{sum(1 for r in rules if r.matches)} matched, {sum(r.matches for r in rules):,} event(s)")
    if json_out:
        json_out.write_text(json.dumps([r.as_dict() for r in rules], indent=2, default=str) + "\n")
