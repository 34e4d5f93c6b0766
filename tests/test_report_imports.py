"""The report modules form no import cycle: what daily imports never imports daily back, even inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import trailsight.report as report_package

REPORT_DIR = Path(report_package.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_modules_daily_imports_do_not_import_daily_back() -> None:
    daily_imports = {m for m in imported_modules(REPORT_DIR / "daily.py") if m.startswith("trailsight.report.")}
    assert daily_imports, "daily imports report modules"
    for module in daily_imports:
        path = REPORT_DIR / f"{module.rsplit('.', 1)[1]}.py"
        assert "trailsight.report.daily" not in imported_modules(path), module


def test_severity_order_is_defined_once() -> None:
    defining = [p.name for p in sorted(REPORT_DIR.glob("*.py"))
                if '"critical", "high", "medium", "low"' in p.read_text() or '"low": 1' in p.read_text()]
    assert defining == ["severity.py"]
