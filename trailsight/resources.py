"""Where the files shipped inside the package (schema, SQL, default policy, prices) are found, installed or not.

The repository keeps `schemas/`, `sql/` and `flows/` at its top level; the build maps them into the package as
`trailsight.schemas`, `trailsight.sql` and `trailsight.flows`, so one lookup serves a wheel and an editable checkout.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path


def package_folder(package: str) -> Path:
    """The folder of `package` on disk, also for the data-only packages that have no `__init__.py`."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"trailsight is installed without {package}; reinstall it")
    return Path(next(iter(spec.submodule_search_locations)))
