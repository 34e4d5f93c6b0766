"""`trailsight athena`: the Glue tables and their DDL, derived from the schema."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from trailsight.cli.common import DatabaseOption, LakeOption, out
from trailsight.query import athena

AccountsOption = Annotated[list[str], typer.Option("--account", help="An account id of the lake (repeatable); the "
                                                   "daily flow adds accounts it ingests later.")]

athena_app = typer.Typer(help="Athena: the Glue tables and their DDL, derived from the schema.", no_args_is_help=True)


@athena_app.command("ddl")
def athena_ddl(lake: LakeOption, account: AccountsOption, database: DatabaseOption = "trailsight") -> None:
    """Print the CREATE EXTERNAL TABLE statements (partition projection, Parquet) for an S3 lake, from the schema
    alone: nothing is read, so it works offline.

    Example: trailsight athena ddl --lake s3://my-bucket/lake --account 111122223333 --database audit
    """
    sys.stdout.write(athena.ddl(lake, athena.AthenaSettings(database), account))


@athena_app.command("create")
def athena_create(lake: LakeOption, account: AccountsOption, database: DatabaseOption = "trailsight") -> None:
    """Create or update the Glue database and tables for an S3 lake (idempotent; no crawler, no MSCK REPAIR).

    Example: trailsight athena create --lake s3://my-bucket/lake --account 111122223333 --database audit
    """
    for line in athena.create_tables(lake, athena.AthenaSettings(database), account):
        out.print(line)
