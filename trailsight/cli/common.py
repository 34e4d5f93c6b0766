"""What every command shares: the app, consoles, option types, dates and table formatting."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from trailsight.errors import UsageError
from trailsight.query.duckdb_engine import QueryResult

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


PolicyOption = Annotated[
    Path | None, typer.Option("--policy", help="Retention policy file (default: `trailsight retention defaults`).")
]


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


# `trailsight restore`: S3 is still restoring archived bundles; run the same command again later.
EXIT_PENDING = 3


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


PROBLEMS_SHOWN = 10


def problems_listed(problems: list[str], listing: Path) -> str:
    """Print the first few problems to stderr; when there are more, write them all to `listing` and say where."""
    for problem in problems[:PROBLEMS_SHOWN]:
        _line(problem, error=True)
    if len(problems) <= PROBLEMS_SHOWN:
        return ""
    listing.write_text("\n".join(problems) + "\n")
    _line(f"... and {len(problems) - PROBLEMS_SHOWN:,} more", error=True)
    return f"; all {len(problems):,} problems are listed in {listing}"


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
