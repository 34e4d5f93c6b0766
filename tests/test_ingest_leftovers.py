"""What a killed or starved parallel ingest leaves behind, with real processes: no orphaned workers, and a full
spill folder is named in the error."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import day_start, log_key, make_event

# Runs the ingest with two workers converting every batch, and stops itself once the first converted batch is
# back (its forkserver and workers are up); or, with a file size limit, lets every write above it fail as on a
# full spill folder.
DRIVER = """
import os, resource, signal, sys
from trailsight.errors import TrailsightError
from trailsight.lake import ingest as engine

source, lake, mode = sys.argv[1:4]
engine.BATCH_FILES = 1  # a batch per file: enough batches that the workers get some
real_start = engine._start_workers

def start_and_wait(pool, count):  # every batch goes to the workers, however slowly they start
    started = real_start(pool, count)
    started.wait(300)
    return started

engine._start_workers = start_and_wait
if mode == "stop":
    real_converted = engine._converted

    def converted_then_stop(tasks, pool, workers):
        stopped = False
        for batch in real_converted(tasks, pool, workers):
            if not stopped and len(pool._processes or {}) == workers:
                stopped = True
                os.kill(os.getpid(), signal.SIGSTOP)
            yield batch

    engine._converted = converted_then_stop
else:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(mode), int(mode)))
try:
    engine.ingest(source, lake, workers=2)
except TrailsightError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
"""


def write_source(root: Path, files: int = 12, events: int = 400) -> None:
    """About 4 MB of gzip, a few 1 MB batches (incompressible request parameters)."""
    rng = random.Random(5)
    when = day_start(2024, 5, 1)
    for number in range(files):
        records = [make_event(when + timedelta(minutes=number, seconds=i),
                              requestParameters={"blob": rng.randbytes(400).hex()}) for i in range(events)]
        path = root / log_key(when + timedelta(minutes=number + 5), suffix=f"{number:016x}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode(), mtime=0))


def children_of(pids: set[int]) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            if parent in pids:
                found.add(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    found, frontier = set(), {pid}
    while frontier:
        frontier = children_of(frontier) - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_workers_and_forkserver_exit_when_the_ingest_is_killed(tmp_path: Path) -> None:
    write_source(tmp_path / "source", files=40, events=60)
    run = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path / "source"), str(tmp_path / "lake"), "stop"])
    helpers: set[int] = set()
    try:
        assert wait_for(lambda: Path(f"/proc/{run.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T", 60)
        # the forkserver and two workers at least (and multiprocessing's resource tracker)
        assert wait_for(lambda: len(descendants(run.pid)) >= 3, 30), descendants(run.pid)
        helpers = descendants(run.pid)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    left = lambda: {pid for pid in helpers if alive(pid)}  # noqa: E731
    try:
        assert wait_for(lambda: not left(), 15), f"still running after their parent was killed: {left()}"
    finally:
        for pid in left():
            os.kill(pid, signal.SIGKILL)


def test_full_spill_folder_is_named_in_the_error(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    write_source(tmp_path / "source", files=20, events=120)
    # A short folder: the workers' forkserver puts its socket under TMPDIR, and a socket path has 107 bytes at most.
    spill_parent = Path(tempfile.mkdtemp(prefix="ts-spill-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(spill_parent, ignore_errors=True))
    run = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path / "source"), str(tmp_path / "lake"), "65536"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": str(spill_parent)})
    assert run.returncode == 1
    assert "Traceback" not in run.stderr, run.stderr
    line = run.stderr.strip().splitlines()[0]
    assert line.startswith(f"cannot spill rows to {spill_parent}/trailsight-ingest-"), run.stderr
    assert "free space there or point TMPDIR at a larger folder" in line
