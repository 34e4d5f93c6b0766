"""The lake's single-writer lock (see storage.lock): a second writer is refused with who holds it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from trailsight.errors import LakeLockedError
from trailsight.lake.layout import LOCK_KEY
from trailsight.storage.lock import describe_holder, storage_lock
from trailsight.storage.store import Storage


@contextmanager
def lake_lock(lake: Storage, purpose: str) -> Iterator[None]:
    """Hold the lake's write lock; a second writer is refused with who holds it."""

    def refused(holder: dict[str, Any]) -> LakeLockedError:
        return LakeLockedError(f"the lake {lake.url} is locked by another run ({describe_holder(holder)}); wait for "
                               f"it to finish, or delete {lake.path(LOCK_KEY)} if that process is gone")

    with storage_lock(lake, LOCK_KEY, purpose, refused):
        yield
