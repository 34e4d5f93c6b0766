"""The lake's single-writer lock: an exclusive create, with takeover of a lock left by a dead process."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson

from trailsight.errors import LakeLockedError, StorageError
from trailsight.lake.layout import LOCK_KEY
from trailsight.storage.store import Storage


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def lake_lock(lake: Storage, purpose: str) -> Iterator[None]:
    """Hold the lake's write lock; a second writer is refused with who holds it."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat(),
              "purpose": purpose}
    payload = orjson.dumps(holder)
    if not lake.create_exclusive(LOCK_KEY, payload):
        try:
            current = orjson.loads(lake.read_bytes(LOCK_KEY))
        except (StorageError, orjson.JSONDecodeError):
            current = {}
        # Our own write can look like someone else's: when its reply is lost, the retried conditional PUT fails.
        ours = current == holder
        stale = current.get("host") == holder["host"] and not _pid_alive(int(current.get("pid", 0) or 0))
        if not (ours or (stale and _replace_stale_lock(lake, payload))):
            raise LakeLockedError(
                f"the lake {lake.url} is locked by another run ({current.get('purpose', '?')}, pid "
                f"{current.get('pid', '?')} on {current.get('host', '?')} since {current.get('since', '?')}); "
                f"wait for it to finish, or delete {lake.path(LOCK_KEY)} if that process is gone"
            )
    try:
        yield
    finally:
        lake.delete(LOCK_KEY)


def _replace_stale_lock(lake: Storage, payload: bytes) -> bool:
    """A lock left by a dead process on this host is taken over (a killed run must not block the next)."""
    lake.delete(LOCK_KEY)
    return lake.create_exclusive(LOCK_KEY, payload)
