"""`trailsight deploy`: the daily and backfill deployments created from the installed package's prefect.yaml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from trailsight.cli.common import app
from trailsight.errors import UsageError
from trailsight.resources import package_folder


def prefect_command() -> str:
    """The `prefect` program of this environment (beside the Python running trailsight), else the one on PATH."""
    beside = Path(sys.executable).parent / "prefect"
    found = str(beside) if beside.exists() else shutil.which("prefect")
    if not found:
        raise UsageError("the `prefect` command is not installed in this environment; reinstall trailsight")
    return found


@app.command()
def deploy(
    pool: Annotated[str, typer.Option("--pool", metavar="NAME", help="Prefect work pool the runs go to "
                                      "(create it first: prefect work-pool create NAME --type process).")]
    = "trailsight-process",
    param: Annotated[list[str] | None, typer.Option("--param", metavar="KEY=VALUE", help="Parameter default for "
                                                    "both deployments, e.g. --param source=s3://my-trail-bucket; "
                                                    "repeat for more.")] = None,
) -> None:
    """Create the `daily` (scheduled 01:15 UTC) and `backfill` deployments on the Prefect API that PREFECT_API_URL
    names. Their entrypoints import trailsight.flows from the installed package, so no checkout is needed; runs
    start in the folder this command runs from.

    Example: trailsight deploy --param source=s3://my-trail-bucket --param lake_url=s3://my-lake/trailsight
    """
    shipped = package_folder("trailsight.flows") / "prefect.yaml"
    for value in param or []:
        if "=" not in value:
            raise UsageError(f"--param {value!r}: write KEY=VALUE, e.g. --param source=s3://my-trail-bucket")
    overrides = [arg for value in param or [] for arg in ("--param", value)]
    command = [prefect_command(), "--no-prompt", "deploy", "--all", "--prefect-file", str(shipped), "--pool", pool,
               *overrides]
    raise typer.Exit(subprocess.run(command, check=False).returncode)
