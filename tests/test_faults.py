"""Faults a run meets in production: throttled and dropped S3 requests, a full disk, a read-only lake, a rival run.

Each fault is met by the real CLI in a child process, so exit codes, stderr and locks are the real ones, and each
test compares the lake afterwards with a clean run. Kill -9 at every atomic rename is covered in test_lake.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import WriteLog, day_start, log_key, make_event

from trailsight.lake.ingest import ingest
from trailsight.lake.layout import LOCK_KEY
from trailsight.query.duckdb_engine import run_sql
from trailsight.storage.aws import client, split_s3_url
from trailsight.storage.store import Storage, copy_objects, transient_reason

QUERY = "SELECT eventid, eventhash, event_date, account, region FROM cloudtrail ORDER BY eventid, account"
DAY1, DAY2 = date(2024, 5, 1), date(2024, 5, 2)


# --- a small archive and helpers ----------------------------------------------------------------------------


def write_archive(write_log: WriteLog) -> None:
    """Two days, four deliveries a day, an organization copy of some events (duplicates to de-duplicate)."""
    for day in (1, 2):
        for hour in (0, 6, 12, 23):
            when = day_start(2024, 5, day).replace(hour=hour, minute=55)
            events = [make_event(when + timedelta(seconds=s)) for s in range(25)]
            write_log(log_key(when + timedelta(minutes=8)), events)
            write_log(log_key(when + timedelta(minutes=8), account="222233334444", org="o-abcdefghij"), events[:5])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder, hidden ones included, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(*args: str, env: dict[str, str] | None = None, preamble: str = "",
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`trailsight ARGS` in a fresh interpreter, after `preamble` (which may install a fault)."""
    code = f"{preamble}\nfrom trailsight.cli.main import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI's single `Error:` line; fails when there is a traceback or more than one line of error."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# --- S3 faults at the HTTP level ------------------------------------------------------------------------------

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
INTERNAL = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
            b"<Message>We encountered an internal error. Please try again.</Message></Error>")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length", "expect",
              "te", "trailer", "upgrade"}


def request_kind(method: str, path: str, headers: http.client.HTTPMessage) -> str:
    """LIST, GET, HEAD, PUT, LOCK (the conditional create), POST (multipart), DELETE."""
    url = urlsplit(path)
    if method == "PUT" and headers.get("If-None-Match") == "*":
        return "LOCK"
    if method == "GET" and url.path.strip("/").count("/") == 0:
        return "LIST"
    return method


class FaultyS3Proxy:
    """A tiny HTTP proxy in front of moto that fails chosen requests the way S3 and networks do.

    `plan` maps a request kind to the fate of its 1st, 2nd, ... request: `ok` forwards it, `slowdown` answers
    503 SlowDown, `internal` answers 500 InternalError, `reset` drops the connection before forwarding, and
    `lost` forwards it (the write happens) then drops the connection, so the client never sees the reply.
    """

    def __init__(self, upstream: str, plan: dict[str, list[str]]) -> None:
        self.upstream = urlsplit(upstream)
        self.plan = plan
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stall between them

            def log_message(self, *args: object) -> None:
                pass

            def handle_any(self) -> None:
                body = self.read_body()
                kind = request_kind(self.command, self.path, self.headers)
                with proxy.lock:
                    fates = proxy.plan.get(kind, [])
                    fate = fates[proxy.seen[kind]] if proxy.seen[kind] < len(fates) else "ok"
                    proxy.seen[kind] += 1
                    if fate != "ok":
                        proxy.injected[f"{kind} {fate}"] += 1
                if fate == "slowdown":
                    return self.reply(503, SLOW_DOWN)
                if fate == "internal":
                    return self.reply(500, INTERNAL)
                if fate == "reset":
                    return self.reset()
                status, headers, data = proxy.forward(self.command, self.path, self.headers, body)
                if fate == "lost":
                    return self.reset()
                return self.reply(status, data, headers)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

            def read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def reply(self, status: int, data: bytes, headers: list[tuple[str, str]] | None = None) -> None:
                self.send_response(status)
                length = str(len(data))
                for name, value in headers or [("Content-Type", "application/xml")]:
                    if name.lower() == "content-length" and self.command == "HEAD":
                        length = value
                    elif name.lower() not in HOP_BY_HOP | {"server", "date"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def reset(self) -> None:
                """Close with RST, as a load balancer or a flaky network does."""
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def forward(self, method: str, path: str, headers: http.client.HTTPMessage,
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            connection.request(method, path, body=body,
                               headers={k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP})
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    @property
    def planned(self) -> int:
        return sum(1 for fates in self.plan.values() for fate in fates if fate != "ok")

    def __enter__(self) -> FaultyS3Proxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def via(proxy: FaultyS3Proxy) -> dict[str, str]:
    return {"TRAILSIGHT_S3_ENDPOINT": proxy.url, "AWS_ENDPOINT_URL": proxy.url}


@pytest.mark.parametrize(("message", "transient"), [
    ("AWS Error SLOW_DOWN during ListObjectsV2 operation: Please reduce your request rate.", True),
    ("AWS Error INTERNAL_FAILURE during GetObject operation", True),
    ("AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 56, Failure when receiving data", True),
    ("An error occurred (SlowDown) when calling the PutObject operation", True),
    ("HTTP 503 Service Unavailable", True),
    ("AWS Error ACCESS_DENIED during GetObject operation: Access Denied", False),
    ("Path does not exist 'bucket/AWSLogs/1/CloudTrail/x/2024/05/01/1_CloudTrail_x_20240501T0500Z_ab.json.gz'", False),
])
def test_throttling_and_server_errors_are_retried_in_every_spelling_s3_clients_print(
        message: str, transient: bool) -> None:
    assert (transient_reason(OSError(message)) is not None) is transient


# Every kind of request fails, each way S3 and networks fail, spread so that no single call needs more than two
# retries. `lost` on PUT proves a retried part upload is harmless; on the lock it is the test below.
TRANSIENT_PLAN = {
    "LIST": ["slowdown", "ok", "reset", "ok", "internal"],
    "HEAD": ["slowdown", "ok", "reset"],
    "GET": ["slowdown", "ok", "reset", "ok", "internal"],
    "LOCK": ["slowdown", "reset"],
    "POST": ["slowdown", "ok", "reset"],
    "PUT": ["reset", "ok", "lost", "ok", "slowdown"],
    "DELETE": ["slowdown", "internal"],
}


def test_s3_to_s3_ingest_retries_throttling_errors_and_resets_and_loses_nothing(
        tmp_path: Path, write_log: WriteLog, s3_bucket: str, moto_endpoint: str) -> None:
    write_archive(write_log)
    copy_objects(Storage(tmp_path / "source"), Storage(f"{s3_bucket}/trails"))
    clean = ingest(f"{s3_bucket}/trails", f"{s3_bucket}/clean", DAY1, DAY2, workers=1)
    with FaultyS3Proxy(moto_endpoint, TRANSIENT_PLAN) as proxy:
        result = run_cli("ingest", "--source", f"{s3_bucket}/trails", "--lake", f"{s3_bucket}/lake",
                         "--start", str(DAY1), "--end", str(DAY2), "--workers", "2", "--json", env=via(proxy))
    assert result.returncode == 0, result.stderr[-2000:]
    assert sum(proxy.injected.values()) == proxy.planned, proxy.injected  # every planned fault was met
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("events_read", "events_written", "duplicates", "files_converted")} == {
        "events_read": clean.events_read, "events_written": clean.events_written,
        "duplicates": clean.duplicates, "files_converted": clean.files_converted}
    assert run_sql(f"{s3_bucket}/lake", QUERY).rows == run_sql(f"{s3_bucket}/clean", QUERY).rows
    bucket, _ = split_s3_url(s3_bucket)
    assert client("s3").list_objects_v2(Bucket=bucket, Prefix=f"lake/{LOCK_KEY}")["KeyCount"] == 0


def test_lost_reply_to_the_lock_write_does_not_make_a_run_refuse_itself(
        tmp_path: Path, write_log: WriteLog, s3_bucket: str, moto_endpoint: str) -> None:
    write_archive(write_log)
    copy_objects(Storage(tmp_path / "source"), Storage(f"{s3_bucket}/trails"))
    with FaultyS3Proxy(moto_endpoint, {"LOCK": ["lost"]}) as proxy:
        result = run_cli("ingest", "--source", f"{s3_bucket}/trails", "--lake", f"{s3_bucket}/lake",
                         "--workers", "1", "--json", env=via(proxy))
    assert proxy.injected == Counter({"LOCK lost": 1})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["events_written"] == ingest(tmp_path / "source", tmp_path / "lake",
                                                                 workers=1).events_written


# --- a full disk and a read-only lake -------------------------------------------------------------------------

# Installed in the child: files opened for writing under FAULT_LAKE share FAULT_BYTES_LEFT bytes, after which
# writes fail with ENOSPC, as on a full disk. Used where no small filesystem can be mounted.
DISK_WITH_BYTES_LEFT = """
import builtins, errno, os
_LAKE = os.path.realpath(os.environ["FAULT_LAKE"])
_left = [int(os.environ["FAULT_BYTES_LEFT"])]

class _Full:
    def __init__(self, f):
        self._f = f
    def write(self, data):
        size = memoryview(data).nbytes
        if size > _left[0]:
            _left[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _left[0] -= size
        return self._f.write(data)
    def __getattr__(self, name):
        return getattr(self._f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self._f.close()

def _in_lake(path):
    path = os.path.realpath(path)
    return path == _LAKE or path.startswith(_LAKE + os.sep)

def _writing(mode):
    return any(c in mode for c in "wax+")

_open, _fdopen = builtins.open, os.fdopen
def _patched_open(file, mode="r", *args, **kwargs):
    f = _open(file, mode, *args, **kwargs)
    named = isinstance(file, (str, bytes, os.PathLike))
    return _Full(f) if named and _writing(mode) and _in_lake(os.fsdecode(file)) else f
def _patched_fdopen(fd, mode="r", *args, **kwargs):
    f = _fdopen(fd, mode, *args, **kwargs)
    return _Full(f) if _writing(mode) and _in_lake(os.readlink(f"/proc/self/fd/{fd}")) else f
builtins.open, os.fdopen = _patched_open, _patched_fdopen
"""


@pytest.fixture
def previous_lake(tmp_path: Path, write_log: WriteLog) -> Path:
    """A lake holding the first day, ready to be damaged by a failed run of the second."""
    write_archive(write_log)
    lake = tmp_path / "lake"
    ingest(tmp_path / "source", lake, DAY1, DAY1, workers=1)
    return lake


def assert_unchanged_and_recoverable(lake: Path, before: dict[str, bytes], source: Path, clean: Path) -> None:
    """Same files byte for byte, same answers, no lock or temporary file left, and a re-run completes."""
    assert snapshot(lake) == before
    ingest(source, clean, DAY1, DAY1, workers=1)
    assert run_sql(lake, QUERY).rows == run_sql(clean, QUERY).rows
    ingest(source, lake, DAY2, DAY2, workers=1)
    ingest(source, clean, DAY2, DAY2, workers=1)
    assert run_sql(lake, QUERY).rows == run_sql(clean, QUERY).rows


@pytest.mark.parametrize(("bytes_left", "fails_at"), [(0, "_trailsight/lock"), (400, ".parquet")])
def test_full_disk_gives_one_error_line_and_leaves_the_previous_lake_intact(
        tmp_path: Path, previous_lake: Path, bytes_left: int, fails_at: str) -> None:
    before = snapshot(previous_lake)
    result = run_cli("ingest", "--source", str(tmp_path / "source"), "--lake", str(previous_lake),
                     "--date", str(DAY2), "--workers", "1", preamble=DISK_WITH_BYTES_LEFT,
                     env={"FAULT_LAKE": str(previous_lake), "FAULT_BYTES_LEFT": str(bytes_left)})
    assert result.returncode == 1
    line = error_line(result)
    assert "No space left on device" in line and fails_at in line, line
    assert_unchanged_and_recoverable(previous_lake, before, tmp_path / "source", tmp_path / "clean")


@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size_kib: int = 1024) -> Iterator[Path]:
    """A real small filesystem (needs the right to mount, e.g. root with CAP_SYS_ADMIN); skips otherwise."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path, leave: int) -> None:
    """Fill a filesystem until the kernel says ENOSPC, then give back `leave` bytes."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))


@pytest.mark.parametrize(("pages_left", "fails_at"), [(0, "_trailsight/lock"), (1, ".parquet")])
def test_full_tmpfs_gives_one_error_line_and_leaves_the_previous_lake_intact(
        tmp_path: Path, write_log: WriteLog, pages_left: int, fails_at: str) -> None:
    write_archive(write_log)
    with tiny_tmpfs(tmp_path / "disk") as disk:
        lake = disk / "lake"
        ingest(tmp_path / "source", lake, DAY1, DAY1, workers=1)
        fill(disk, leave=pages_left * 4096)
        before = snapshot(lake)
        result = run_cli("ingest", "--source", str(tmp_path / "source"), "--lake", str(lake),
                         "--date", str(DAY2), "--workers", "1")
        assert result.returncode == 1
        line = error_line(result)
        assert "No space left on device" in line and fails_at in line, line
        (disk / "filler").unlink()
        assert_unchanged_and_recoverable(lake, before, tmp_path / "source", tmp_path / "clean")


# Installed in the child when the lake cannot be made read-only for real: EROFS on every write under it.
READ_ONLY_FILESYSTEM = """
import builtins, errno, os
_LAKE = os.path.realpath(os.environ["FAULT_LAKE"])
def _in_lake(path):
    path = os.path.realpath(os.fsdecode(path))
    return path == _LAKE or path.startswith(_LAKE + os.sep)
def _refuse(path):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
_open, _os_open, _mkdir = builtins.open, os.open, os.mkdir
def _patched_open(file, mode="r", *a, **k):
    if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and _in_lake(file):
        _refuse(file)
    return _open(file, mode, *a, **k)
def _patched_os_open(path, flags, *a, **k):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and _in_lake(path):
        _refuse(path)
    return _os_open(path, flags, *a, **k)
def _patched_mkdir(path, *a, **k):
    if _in_lake(path) and not os.path.isdir(path):
        _refuse(path)
    return _mkdir(path, *a, **k)
builtins.open, os.open, os.mkdir = _patched_open, _patched_os_open, _patched_mkdir
"""


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make a folder read-only for real (chmod, or chattr +i for root); yields a preamble to use if neither works."""
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    if os.geteuid() != 0:
        for path in folders:
            path.chmod(0o555)
        try:
            yield ""
        finally:
            for path in folders:
                path.chmod(0o755)
        return
    marked = subprocess.run(["chattr", "+i", *map(str, folders)], capture_output=True)
    if marked.returncode:
        subprocess.run(["chattr", "-i", *map(str, folders)], capture_output=True)
        yield READ_ONLY_FILESYSTEM
        return
    try:
        yield ""
    finally:
        subprocess.run(["chattr", "-i", *map(str, folders)], check=True)


def test_read_only_lake_gives_one_error_line_and_is_left_as_it_was(tmp_path: Path, previous_lake: Path) -> None:
    before, rows = snapshot(previous_lake), run_sql(previous_lake, QUERY).rows
    with read_only(previous_lake) as preamble:
        result = run_cli("ingest", "--source", str(tmp_path / "source"), "--lake", str(previous_lake),
                         "--date", str(DAY2), "--workers", "1", preamble=preamble,
                         env={"FAULT_LAKE": str(previous_lake)})
        assert result.returncode == 1
        line = error_line(result)
        assert f"cannot create {previous_lake}/{LOCK_KEY}" in line, line
        assert snapshot(previous_lake) == before
        assert run_sql(previous_lake, QUERY).rows == rows
    assert_unchanged_and_recoverable(previous_lake, before, tmp_path / "source", tmp_path / "clean")


# --- two runs at once -----------------------------------------------------------------------------------------

# Installed in both children: a run that holds the lock waits for a release file before writing anything, so
# the two runs surely overlap and the test decides when the winner may go on.
HOLD_AFTER_LOCK = """
import os, time
import trailsight.lake.ingest as _lake
_init = _lake.PartitionWriter.__init__
def _held(self, *args, **kwargs):
    open(os.environ["FAULT_HOLDING"] + "." + str(os.getpid()), "w").close()
    while not os.path.exists(os.environ["FAULT_RELEASE"]):
        time.sleep(0.02)
    _init(self, *args, **kwargs)
_lake.PartitionWriter.__init__ = _held
"""


def test_two_concurrent_ingests_one_is_refused_with_the_lock_message_and_the_lake_is_intact(
        tmp_path: Path, previous_lake: Path) -> None:
    before = snapshot(previous_lake)
    env = {**os.environ, "FAULT_HOLDING": str(tmp_path / "holding"), "FAULT_RELEASE": str(tmp_path / "release")}
    code = f"{HOLD_AFTER_LOCK}\nfrom trailsight.cli.main import main\nmain()\n"
    args = ["ingest", "--source", str(tmp_path / "source"), "--lake", str(previous_lake), "--date", str(DAY2),
            "--workers", "1"]
    runs = [subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while all(run.poll() is None for run in runs) and time.monotonic() < deadline:
            time.sleep(0.05)
        (loser,) = [run for run in runs if run.poll() is not None]
        (winner,) = [run for run in runs if run is not loser]
        _, stderr = loser.communicate()
        assert loser.returncode == 1
        line = error_line(subprocess.CompletedProcess(loser.args, 1, "", stderr))
        assert f"the lake {previous_lake} is locked by another run (ingest" in line
        assert f"pid {winner.pid} " in line
        assert (tmp_path / f"holding.{winner.pid}").exists()
        assert {k: v for k, v in snapshot(previous_lake).items() if k != LOCK_KEY} == before  # loser wrote nothing
        (tmp_path / "release").touch()
        _, stderr = winner.communicate(timeout=60)
        assert winner.returncode == 0, stderr[-2000:]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    clean = tmp_path / "clean"
    ingest(tmp_path / "source", clean, DAY1, DAY2, workers=1)
    assert run_sql(previous_lake, QUERY).rows == run_sql(clean, QUERY).rows
    assert not (previous_lake / LOCK_KEY).exists()
