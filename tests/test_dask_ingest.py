"""Ingest on a real Dask cluster: a scheduler and two worker processes on 127.0.0.1 (LocalCluster), local folders
and moto's S3 server. The lake must be the single-machine lake, byte for byte, and a worker killed mid-run must
leave nothing half-visible, with a re-run equal to a clean run."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import log_key, make_event

import trailsight.lake.distributed as distributed_ingest
from trailsight.errors import UsageError
from trailsight.lake.distributed import STAGING_PREFIX, ingest_on_cluster
from trailsight.lake.ingest import ingest
from trailsight.storage.store import Storage, copy_objects

distributed = pytest.importorskip("distributed")

DAY = date(2024, 5, 1)
OTHER_ACCOUNT = "999988887777"


def lake_state(lake: Storage) -> dict[str, str]:
    """Every object a reader can see (the lake's bookkeeping under _trailsight aside), by key, with its digest."""
    return {obj.key: hashlib.sha256(lake.read_bytes(obj.key)).hexdigest()
            for obj in lake.list_files() if not obj.key.startswith("_trailsight/")}


def write_raw(source: Path, key: str, data: bytes) -> None:
    path = source / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated day, plus what makes sharding hard: events whose account and region are not their file's (so
    two shards stage rows of one partition), the same events in two shards (duplicates), a broken file and a
    broken record (quarantine)."""
    source = tmp_path_factory.mktemp("dask-archive") / "source"
    for account in ("111122223333", "222233334444", "333344445555"):
        for region in ("us-east-1", "eu-west-1"):
            for hour in range(0, 24, 4):  # the last file's events are late: they land in the next day
                when = datetime(2024, 5, 1, hour, 0, tzinfo=UTC)
                events = [make_event(when.replace(minute=m), f"Call{m % 7}", recipientAccountId=account,
                                     awsRegion=region) for m in range(0, 60, 2)]
                write_raw(source, log_key(when.replace(minute=5), account, region),
                          gzip.compress(json.dumps({"Records": events}).encode(), mtime=0))
    delivered = datetime(2024, 5, 1, 12, 5, tzinfo=UTC)
    stray = [make_event(datetime(2024, 5, 1, 12, 0, s, tzinfo=UTC), recipientAccountId=OTHER_ACCOUNT,
                        awsRegion="eu-west-1") for s in range(20)]
    body = gzip.compress(json.dumps({"Records": stray}).encode(), mtime=0)
    write_raw(source, log_key(delivered, region="us-east-1", suffix="a"), body)
    write_raw(source, log_key(delivered, account=OTHER_ACCOUNT, region="eu-west-1", suffix="b"), body)
    write_raw(source, log_key(delivered, region="us-west-2", suffix="c"), b"not gzip at all")
    broken = gzip.compress(json.dumps({"Records": [stray[0], "not an event"]}).encode(), mtime=0)
    write_raw(source, log_key(delivered, region="ap-south-1", suffix="d"), broken)
    return source


@pytest.fixture(scope="module")
def reference(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, Any]]:
    lake = tmp_path_factory.mktemp("dask-reference") / "lake"
    summary = ingest(archive, lake, DAY, DAY, workers=1)
    assert summary.duplicates >= 20 and summary.events_quarantined >= 1 and summary.files_quarantined == 1
    return lake_state(Storage(lake)), summary.as_dict()


@pytest.fixture(scope="module")
def cluster(moto_endpoint: str) -> Any:
    """Started after moto's environment is set, so the worker processes reach the same S3 endpoint."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as local:
        yield local


COUNTS = ("files_found", "files_converted", "files_quarantined", "events_read", "events_written", "duplicates",
          "events_quarantined", "partitions", "quarantine")


def test_cluster_ingest_of_a_shared_folder_is_the_single_machine_lake(archive: Path, reference: Any, cluster: Any,
                                                                      tmp_path: Path) -> None:
    expected, counts = reference
    summary = ingest_on_cluster(archive, tmp_path / "lake", cluster.scheduler_address, DAY, DAY)
    assert lake_state(Storage(tmp_path / "lake")) == expected
    assert {k: summary.as_dict()[k] for k in COUNTS} == {k: counts[k] for k in COUNTS}
    assert summary.balanced
    assert not list(Storage(tmp_path / "lake").list_files("_trailsight/staging"))
    assert not Storage(tmp_path / "lake").exists("_trailsight/lock")


def test_cluster_ingest_between_s3_buckets_is_the_single_machine_lake(archive: Path, reference: Any, cluster: Any,
                                                                      s3_bucket: str) -> None:
    expected, counts = reference
    copy_objects(Storage(archive), Storage(f"{s3_bucket}/trails"))
    summary = ingest_on_cluster(f"{s3_bucket}/trails", f"{s3_bucket}/lake", cluster.scheduler_address, DAY, DAY)
    assert lake_state(Storage(f"{s3_bucket}/lake")) == expected
    assert (summary.events_read, summary.events_written, summary.duplicates) == (
        counts["events_read"], counts["events_written"], counts["duplicates"])


def test_a_worker_killed_mid_run_leaves_nothing_half_visible_and_a_rerun_is_a_clean_run(
        archive: Path, reference: Any, cluster: Any, tmp_path: Path) -> None:
    expected, counts = reference
    lake = Storage(tmp_path / "lake")
    with distributed.Client(cluster.scheduler_address) as client:
        pids = list(client.run(os.getpid).values())
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["summary"] = ingest_on_cluster(archive, lake.url, cluster.scheduler_address, DAY, DAY)
        except Exception as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 60
    while not list(lake.list_files(STAGING_PREFIX)) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert runner.is_alive(), "the run ended before a worker could be killed"
    os.kill(pids[0], signal.SIGKILL)
    runner.join(120)
    for key in lake_state(lake):
        if key.endswith(".parquet"):
            pq.read_metadata(lake.path(key))  # whole files only: a torn write would not parse
    assert not [o.key for o in lake.list_files() if "/." in o.key or o.key.endswith(".tmp")]
    if "summary" in outcome:  # Dask reran the lost tasks on the other worker
        assert outcome["summary"].balanced and lake_state(lake) == expected
    again = ingest_on_cluster(archive, lake.url, cluster.scheduler_address, DAY, DAY)
    assert lake_state(lake) == expected
    assert again.balanced and again.events_read == counts["events_read"]
    assert not list(lake.list_files(STAGING_PREFIX))


def test_an_unreachable_scheduler_is_a_clear_error(archive: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed_ingest, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(UsageError, match="cannot reach the Dask scheduler at tcp://127\\.0\\.0\\.1:9"):
        ingest_on_cluster(archive, tmp_path / "lake", "tcp://127.0.0.1:9", DAY, DAY)


def test_cli_ingest_with_dask_runs_on_the_cluster(archive: Path, reference: Any, cluster: Any, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from trailsight.cli.main import run

    expected, counts = reference
    assert run(["ingest", "--source", str(archive), "--lake", str(tmp_path / "lake"), "--date", DAY.isoformat(),
                "--dask", cluster.scheduler_address, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["events_written"] == counts["events_written"] and printed["balanced"]
    assert lake_state(Storage(tmp_path / "lake")) == expected
    assert len(list(Storage(tmp_path / "lake").list_files("_trailsight/runs"))) == 1


def test_the_daily_and_backfill_flows_take_a_dask_address() -> None:
    from trailsight.flows.daily import backfill, daily

    assert daily.validate_parameters({"dask_address": "tcp://scheduler:8786"})["dask_address"] == (
        "tcp://scheduler:8786")
    assert backfill.validate_parameters({"start": DAY, "end": DAY, "dask_address": "tcp://scheduler:8786"})[
        "dask_address"] == "tcp://scheduler:8786"


def _fail_now() -> None:
    raise RuntimeError("this task fails")


def _finish_later(marker: str) -> None:
    time.sleep(1)
    Path(marker).write_text("done")


def test_a_failed_task_waits_for_the_rest_of_its_wave_before_the_error_goes_up(cluster: Any, tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    with distributed.Client(cluster.scheduler_address) as client:
        futures = [client.submit(_finish_later, str(marker), pure=False), client.submit(_fail_now, pure=False)]
        with pytest.raises(RuntimeError, match="this task fails"):
            distributed_ingest._wave(client, futures)
    assert marker.read_text() == "done"  # the lock would only now be released
