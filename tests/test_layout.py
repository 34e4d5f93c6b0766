"""The layout keeps its promises: stages import downwards only, the library stays free of the CLI and Prefect,
and every package and data folder of the repository ships in the wheel."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where each shipped package lives in the repository (pyproject maps flows/, sql/ and schemas/ into trailsight).
PACKAGE_DIRS = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def module_files() -> dict[str, Path]:
    """Every Python module shipped in the package, by its dotted name."""
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(PROJECT_ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            if package == "trailsight" and parts and f"trailsight.{parts[0]}" in PACKAGE_DIRS:
                continue
            modules[name] = path
    return modules


def imports_of(name: str, path: Path) -> set[str]:
    """Modules `name` imports, at module level or inside functions (a hidden import ties modules just the same)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


MODULES = module_files()
GRAPH = {name: {m for m in imports_of(name, path) if m in MODULES and m != name} for name, path in MODULES.items()}
LIBRARY = sorted(n for n in MODULES if not n.startswith(("trailsight.cli", "trailsight.flows", "trailsight.__main__")))


@pytest.mark.parametrize("module", LIBRARY)
def test_library_module_never_imports_the_cli_or_prefect(module: str) -> None:
    forbidden = {m for m in imports_of(module, MODULES[module]) if m.split(".")[0] in {"prefect", "typer", "click"}
                 or m.startswith(("trailsight.cli", "trailsight.flows"))}
    assert not forbidden, f"{module} imports {sorted(forbidden)}"


def test_no_import_cycle_between_modules() -> None:
    state: dict[str, str] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_package_folder_is_shipped() -> None:
    setuptools = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = set()
    for package, folder in PACKAGE_DIRS.items():
        for init in (PROJECT_ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(PROJECT_ROOT / folder).parts
            if package == "trailsight" and parts and f"trailsight.{parts[0]}" in PACKAGE_DIRS:
                continue
            on_disk.add(".".join([package, *parts]))
    assert on_disk == listed


def test_every_data_file_of_a_package_is_shipped() -> None:
    package_data = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, folder in PACKAGE_DIRS.items():
        root = PROJECT_ROOT / folder
        for path in root.rglob("*"):
            if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
                continue
            parts = path.parent.relative_to(root).parts
            owner = ".".join([package, *parts])
            if package == "trailsight" and parts and f"trailsight.{parts[0]}" in PACKAGE_DIRS:
                continue
            patterns = package_data.get(owner, [])
            assert any(path.match(pattern) for pattern in patterns), f"{path.relative_to(PROJECT_ROOT)} is not in " \
                f"package-data[{owner!r}]"
