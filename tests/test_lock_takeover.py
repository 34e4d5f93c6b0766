"""Two runs that find the same stale lock: exactly one takes it over (compare-and-swap), with real processes.

A driver slows the step between reading the stale lock and taking it over, as a slow S3 round trip would, then
holds the lock for a while and records when it entered and left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trailsight.lake.layout import LOCK_KEY
from trailsight.storage.store import Storage

HOLD_THE_LOCK = """
import sys, time
from trailsight.errors import LakeLockedError
from trailsight.lake import lock
from trailsight.storage import store

def slowly(function):
    def slow(*args, **kwargs):
        time.sleep(float(sys.argv[3]))
        return function(*args, **kwargs)
    return slow

# Before the fix the takeover was lock._replace_stale_lock; since, it is Storage.replace_if.
if hasattr(lock, "_replace_stale_lock"):
    lock._replace_stale_lock = slowly(lock._replace_stale_lock)
if hasattr(store.Storage, "replace_if"):
    store.Storage.replace_if = slowly(store.Storage.replace_if)
try:
    with lock.lake_lock(store.Storage(sys.argv[1]), "a test run"):
        with open(sys.argv[2], "a") as log:
            log.write(f"{time.monotonic()} enter\\n")
        time.sleep(1.5)
        with open(sys.argv[2], "a") as log:
            log.write(f"{time.monotonic()} leave\\n")
except LakeLockedError as exc:
    print(exc, file=sys.stderr)
    sys.exit(3)
"""


def plant_stale_lock(lake: Storage) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lake.write_bytes(LOCK_KEY, json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": "x",
                                           "purpose": "a killed ingest"}).encode())


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return Storage(tmp_path / "lake")
    return Storage(f"{request.getfixturevalue('s3_bucket')}/lake")


def test_two_runs_taking_over_one_stale_lock_never_hold_it_together(lake: Storage, tmp_path: Path) -> None:
    plant_stale_lock(lake)
    log = tmp_path / "held.log"
    runs = [subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, lake.url, str(log), "0.5"],
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(run.wait(timeout=60), run.stderr.read() if run.stderr else "") for run in runs]
    events = sorted((float(t), what) for t, what in (line.split() for line in log.read_text().splitlines()))
    # Entered, left, (entered, left): one holder at a time, whichever order the runs came in.
    assert [what for _, what in events] in (["enter", "leave"], ["enter", "leave", "enter", "leave"]), events
    refused = [err for code, err in outcomes if code != 0]
    assert all("locked by another run (a test run, pid" in err for err in refused), outcomes
    assert len(refused) == 2 - len(events) // 2
    assert not lake.exists(LOCK_KEY)


def test_lock_is_released_only_by_its_holder(lake: Storage) -> None:
    from trailsight.lake.lock import lake_lock

    with lake_lock(lake, "first"):
        mine = lake.read_bytes(LOCK_KEY)
        lake.write_bytes(LOCK_KEY, b'{"pid": 1, "purpose": "someone else"}')
    assert lake.read_bytes(LOCK_KEY) != mine and lake.exists(LOCK_KEY)
