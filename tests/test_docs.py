"""The README stays true: its test command is the one CI runs, and every command is documented."""

from __future__ import annotations

from pathlib import Path

import typer

from trailsight.cli.main import app  # main registers every command group on the app

PROJECT_ROOT = Path(__file__).resolve().parent.parent

README = (PROJECT_ROOT / "README.md").read_text()


def test_readme_test_command_is_the_one_ci_runs() -> None:
    ci_lines = (PROJECT_ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] in README.splitlines()


def test_readme_main_command_runs_the_demo() -> None:
    command = "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e . && .venv/bin/trailsight demo"
    assert command in README


def test_every_cli_command_is_in_the_readme() -> None:
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        assert f"trailsight {name}" in README, f"`trailsight {name}` is not documented in README.md"
