"""Scheduling for real: `prefect server start`, `trailsight deploy`, a process worker running the deployments.

A generated week is backfilled through the backfill deployment, then the day after runs through the daily
deployment, then that day again: the second daily run must change nothing in the lake and alert nothing new.
Everything started here is stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from trailsight.storage.aws import client

PREFECT = str(Path(sys.executable).with_name("prefect"))
TRAILSIGHT = str(Path(sys.executable).with_name("trailsight"))
FIRST, LAST, NEXT = date(2024, 5, 1), date(2024, 5, 7), date(2024, 5, 8)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_LOGGING_LEVEL": "WARNING"}
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                pytest.fail("prefect server did not start within 120 s")
            time.sleep(0.5)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def prefect(env: dict[str, str], *args: str, cwd: Path) -> str:
    result = subprocess.run([PREFECT, "--no-prompt", *args], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout


def run_deployment(env: dict[str, str], project: Path, name: str, **parameters: str) -> None:
    """Trigger a deployment and let a worker run it to completion."""
    params = [item for key, value in parameters.items() for item in ("--param", f"{key}={value}")]
    output = prefect(env, "deployment", "run", name, *params, cwd=project)
    flow_run_id = next(line.split()[-1] for line in output.splitlines() if "UUID" in line)
    prefect(env, "worker", "start", "--pool", "trailsight-process", "--run-once", cwd=project)
    state = json.loads(subprocess.run(
        [sys.executable, "-c", STATE_OF_RUN, flow_run_id], env=env, capture_output=True, text=True, timeout=120,
    ).stdout)
    assert state["type"] == "COMPLETED", state


STATE_OF_RUN = """
import asyncio, json, sys
from prefect.client.orchestration import get_client

async def main():
    async with get_client() as client:
        run = await client.read_flow_run(sys.argv[1])
        print(json.dumps({"type": run.state.type.value, "message": run.state.message}))
asyncio.run(main())
"""


def test_week_backfilled_then_daily_through_real_deployments(prefect_server: dict[str, str], tmp_path: Path) -> None:
    from trailsight.synth.generate import generate_archive

    project = tmp_path / "elsewhere"  # no checkout here: the deployments come from the installed package
    project.mkdir()
    generate_archive(tmp_path / "archive", days=8, seed=9, end=NEXT, events_per_day=1500)
    sns, sqs = client("sns"), client("sqs")
    topic = sns.create_topic(Name="deployment-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="deployment-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    env = prefect_server
    prefect(env, "work-pool", "create", "trailsight-process", "--type", "process", cwd=project)
    deployed = subprocess.run([TRAILSIGHT, "deploy", "--param", "alert_min_severity=high"], env=env, cwd=project,
                              capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
    assert "trailsight-daily/daily" in deployed.stdout and "trailsight-backfill/backfill" in deployed.stdout

    paths = {"source": str(tmp_path / "archive"), "lake_url": str(tmp_path / "lake"),
             "report_root": str(tmp_path / "reports")}
    run_deployment(env, project, "trailsight-backfill/backfill", start=FIRST.isoformat(), end=LAST.isoformat(),
                   **paths)
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        f"2024-05-0{n}" for n in range(1, 8)]

    run_deployment(env, project, "trailsight-daily/daily", day=NEXT.isoformat(), sns_topic_arn=topic, **paths)
    lake_before = {p: p.read_bytes() for p in sorted((tmp_path / "lake").rglob("*.parquet"))}
    first_alerts = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert first_alerts, "the generated incidents should raise at least one high-severity alert"
    for message in first_alerts:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

    run_deployment(env, project, "trailsight-daily/daily", day=NEXT.isoformat(), sns_topic_arn=topic, **paths)
    assert {p: p.read_bytes() for p in sorted((tmp_path / "lake").rglob("*.parquet"))} == lake_before
    assert sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []) == []
