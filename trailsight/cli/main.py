"""The `trailsight` command: its command groups put together, and errors turned into one `Error:` line."""

from __future__ import annotations

import os
import sys

import click
import typer
from botocore.exceptions import BotoCoreError, ClientError

# Each command group registers its commands on `app` when imported.
from trailsight.cli import compact, lake, reports, sample  # noqa: F401
from trailsight.cli.athena import athena_app
from trailsight.cli.common import app, err
from trailsight.cli.retention import lifecycle_app, retention_app
from trailsight.errors import TrailsightError

app.add_typer(athena_app, name="athena")



app.add_typer(lifecycle_app, name="lifecycle")


app.add_typer(retention_app, name="retention")


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
