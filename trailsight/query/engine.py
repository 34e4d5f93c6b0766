"""One interface for the engines the reports run on, and the one place that picks an engine.

The reports only run `sql/` files (with bound parameters), join small tables they hand over (`register`) and ask
for a derived table to be ready (`use_derived`); DuckDB and Athena each do that their own way behind `Engine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

import pyarrow as pa

from trailsight.errors import UsageError
from trailsight.query.athena import AthenaEngine, AthenaSettings
from trailsight.query.duckdb_engine import DuckDBEngine
from trailsight.storage.store import Storage

ENGINES = ("duckdb", "athena")


class Engine(Protocol):
    """What the reports need of a query engine."""

    name: str

    def query(self, sql: str, parameters: dict[str, Any] | None = None,
              arrays: Sequence[str] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run DuckDB-dialect SQL with `$name` parameters bound; `arrays` names the result columns holding lists.
        Returns the column names and the rows."""
        ...

    def use_derived(self, name: str, start: date, end: date) -> None:
        """Make the derived table `name` readable for event dates in [start, end]."""
        ...

    def register(self, name: str, table: pa.Table) -> None:
        """Make a small Arrow table readable as `name` by the following queries."""
        ...

    def unregister(self, name: str) -> None:
        ...

    def stats(self) -> dict[str, Any]:
        """What the engine did, for the report's summary (queries, bytes scanned, cost)."""
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class EngineSettings:
    """Which engine runs the reports, and Athena's settings when it is Athena."""

    name: str = "duckdb"
    athena: AthenaSettings = field(default_factory=AthenaSettings)

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise UsageError(f"engine must be one of {', '.join(ENGINES)}, not {self.name!r}")


def open_engine(lake: Storage, settings: EngineSettings | None = None) -> Engine:
    """The engine the settings name, over `lake` (Athena reads the lake through its Glue tables)."""
    settings = settings or EngineSettings()
    if settings.name == "athena":
        return AthenaEngine(settings.athena)
    return DuckDBEngine(lake)
