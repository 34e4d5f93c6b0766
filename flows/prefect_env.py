"""Prefect defaults for trailsight: state in the folder it runs from, no telemetry, a startup limit these machines meet.

Set before Prefect is imported (its settings are read at import); values already in the environment win.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULTS = {
    "PREFECT_HOME": str(Path.cwd() / ".prefect"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DO_NOT_TRACK": "1",
    # The library's own notices (an S3 retry) in the run's log, beside the tasks' lines.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "trailsight",
}


def configure_prefect() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
