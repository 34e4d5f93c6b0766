"""The `trailsight` command: its command groups put together, and errors turned into one `Error:` line."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click
import typer
from botocore.exceptions import BotoCoreError, ClientError

# Each command group registers its commands on `app` when imported.
from trailsight.cli import compact, deploy, detect, lake, reports, sample  # noqa: F401
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


class PlainStderr(logging.Handler):
    """The library's notices (retries, progress) as `warning: ...` lines on the stderr of the moment."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr, flush=True)


def _show_library_notices() -> None:
    logger = logging.getLogger("trailsight")
    if not any(isinstance(h, PlainStderr) for h in logger.handlers):
        logger.addHandler(PlainStderr(logging.INFO))
        logger.setLevel(logging.INFO)


def plain_metavars(command: Any, parent: Any = None) -> None:
    """Help that reads `--date DATE`, `--workers INTEGER`, `--json`, not Typer's `<str>`, `<list[str]>`, `<bool>`."""
    ctx = command.context_class(command, info_name=command.name, parent=parent)
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.param_type_name == "argument":
            param.display_type_rich = lambda ctx: None  # its name (QUERY) is already in the first column
        elif param.metavar is None and param.param_type_name == "option":
            described = param.type_descriptor
            annotation = described.annotation
            long_name = max(param.opts, key=len).lstrip("-").upper()
            if described.is_choice and len(described.choices or ()) <= 3:
                param.metavar = "|".join(str(getattr(c, "value", c)) for c in described.choices or ())
            elif described.is_path:
                param.metavar = "PATH"
            else:
                param.metavar = {int: "INTEGER", float: "NUMBER"}.get(annotation, long_name)
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub, ctx)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; domain errors become one `Error:` line, never a traceback."""
    _show_library_notices()
    command = typer.main.get_command(app)
    plain_metavars(command)
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
