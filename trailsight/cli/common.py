"""What every command shares: the app, consoles, option types, dates and table formatting."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from trailsight.errors import UsageError
from trailsight.query.athena import AthenaSettings
from trailsight.query.duckdb_engine import QueryResult
from trailsight.query.engine import EngineSettings
from trailsight.report.daily import jsonable

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


CELL_WIDTH = 40


def json_text(value: Any) -> str:
    """A value as one line of JSON: structs and lists stay JSON, times are CloudTrail's UTC form."""
    return json.dumps(jsonable(value), default=str, separators=(",", ":"))


def cell_text(value: Any) -> str:
    """A value as one CSV or table cell: nothing for NULL, JSON for structs and lists, plain text otherwise."""
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return json_text(value)
    plain = jsonable(value)
    return plain if isinstance(plain, str) else str(plain)


def _short_cell(value: Any) -> str:
    text = cell_text(value)
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def _fits(columns: list[str], width: int) -> bool:
    """Whether every column keeps at least its name (up to 12 characters) readable at this width."""
    return sum(min(len(c), 12) + 3 for c in columns) + 1 <= width


def write_lines(result: QueryResult, stream: TextIO) -> None:
    """One field per line, a header per row (like psql's expanded display): wide rows stay readable."""
    name_width = max((len(c) for c in result.columns), default=0)
    for number, row in enumerate(result.rows, 1):
        stream.write(f"-[ row {number} ]" + "-" * max(0, name_width - 4) + "\n")
        for column, value in zip(result.columns, row, strict=True):
            stream.write(f"{column.ljust(name_width)} | {cell_text(value)}\n")
    if not result.rows:
        stream.write("(no rows)\n")


def write_result(result: QueryResult, output_format: str, stream: TextIO) -> None:
    """CSV, JSON, JSON lines or expanded lines into a text stream."""
    if output_format == "csv":
        writer = csv.writer(stream)
        writer.writerow(result.columns)
        writer.writerows([cell_text(v) for v in row] for row in result.rows)
    elif output_format == "json":
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        stream.write(json.dumps(jsonable(rows), default=str, indent=2) + "\n")
    elif output_format == "jsonl":
        for row in result.rows:
            stream.write(json_text(dict(zip(result.columns, row, strict=True))) + "\n")
    elif output_format == "line":
        write_lines(result, stream)
    else:
        raise UsageError(f"--format {output_format} writes a file; add --out PATH")


def print_result(result: QueryResult, output_format: str) -> None:
    """A query result on stdout. A table too wide for the terminal is shown one field per line instead."""
    if output_format != "table":
        write_result(result, output_format, sys.stdout)
        return
    if not _fits(result.columns, out.width):
        err.print(f"note: {len(result.columns)} columns do not fit in {out.width}; one field per line "
                  "(--format line). For files: --format csv, jsonl or parquet with --out.",
                  markup=False, highlight=False, soft_wrap=True)
        write_lines(result, sys.stdout)
        return
    table = Table()
    for column in result.columns:
        table.add_column(column, no_wrap=True, overflow="ellipsis", min_width=min(len(column), 12))
    for row in result.rows:
        table.add_row(*(Text(_short_cell(v)) for v in row))
    out.print(table)


class OutputFormat(StrEnum):
    table = "table"
    line = "line"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"


FormatOption = Annotated[OutputFormat, typer.Option(
    "--format", help="table (too wide: one field per line), line (one field per line), csv, json, jsonl, or "
    "parquet (with --out).")]


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


def engine_settings(engine: Engine, database: str, workgroup: str, output_location: str | None) -> EngineSettings:
    """The CLI's engine options as the library's one engine choice."""
    return EngineSettings(engine.value, AthenaSettings(database, workgroup, output_location))


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
