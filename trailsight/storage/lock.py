"""Exclusive locks kept as objects in a Storage: an exclusive create, and a compare-and-swap takeover of a lock
left by a dead process on this host (so a killed run never blocks the next, and two runs never both proceed)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

from trailsight.errors import StorageError, TrailsightError
from trailsight.storage.store import Storage

# Seconds to wait between reading a stale lock and taking it over: lets tests widen the race a slow S3 round
# trip opens, with real processes.
TAKEOVER_DELAY_ENV = "TRAILSIGHT_TEST_LOCK_TAKEOVER_DELAY"
ATTEMPTS = 3


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(holder: dict[str, Any]) -> str:
    return (f"{holder.get('purpose', '?')}, pid {holder.get('pid', '?')} on {holder.get('host', '?')} since "
            f"{holder.get('since', '?')}")


@contextmanager
def storage_lock(storage: Storage, key: str, purpose: str,
                 refused: Callable[[dict[str, Any]], TrailsightError]) -> Iterator[None]:
    """Hold the lock object `key`; raises `refused(holder)` when another live run holds it."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat(),
              "purpose": purpose}
    payload = orjson.dumps(holder)
    _acquire(storage, key, holder, payload, refused)
    try:
        yield
    finally:
        _release(storage, key, payload)


def _acquire(storage: Storage, key: str, holder: dict[str, Any], payload: bytes,
             refused: Callable[[dict[str, Any]], TrailsightError]) -> None:
    current: dict[str, Any] = {}
    for _ in range(ATTEMPTS):
        if storage.create_exclusive(key, payload):
            return
        try:
            data, tag = storage.read_tagged(key)
        except StorageError:
            continue  # released between our create and our read: try again
        try:
            current = orjson.loads(data)
        except orjson.JSONDecodeError:
            current = {}
        # Our own write can look like someone else's: when its reply is lost, the retried conditional PUT fails.
        if current == holder:
            return
        stale = current.get("host") == holder["host"] and not pid_alive(int(current.get("pid", 0) or 0))
        if not stale:
            break
        delay = float(os.environ.get(TAKEOVER_DELAY_ENV) or 0)
        if delay:
            time.sleep(delay)
        # Compare-and-swap on the stale lock's tag: of two runs that read the same stale lock, one wins.
        if storage.replace_if(key, tag, payload):
            return
    raise refused(current)


def _release(storage: Storage, key: str, payload: bytes) -> None:
    """Delete the lock only while it is still ours."""
    try:
        data, tag = storage.read_tagged(key)
    except StorageError:
        return
    if data == payload:
        storage.delete_if({key: tag})
