"""Shared fixtures: small CloudTrail archives written by the tests themselves, and the shared corpus."""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Property tests explore the same examples on every run, so CI results are reproducible.
settings.register_profile("trailsight", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("trailsight")

# Real third-party CloudTrail samples, beside the checkout (../shared/corpus) or where TRAILSIGHT_CORPUS says.
CORPUS = Path(os.environ.get("TRAILSIGHT_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus")
CORPUS_SKIP = "the shared CloudTrail corpus is not at"
ACCOUNT = "111122223333"
REGION = "us-east-1"


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS_SKIP} {CORPUS}")
    return CORPUS


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say in every run's output, not only with -rs, that the tests on real samples did not run."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if CORPUS_SKIP in str(r.longrepr)]
    if skipped:
        terminalreporter.write_sep("-", "real CloudTrail samples not tested", yellow=True)
        terminalreporter.write_line(
            f"{len(skipped)} corpus test(s) skipped: no corpus at {CORPUS}. Put the samples there "
            "(../shared/corpus beside the checkout) or set TRAILSIGHT_CORPUS=/path/to/corpus.", yellow=True)


def make_event(when: datetime | str, name: str = "DescribeInstances", **fields: Any) -> dict[str, Any]:
    """A plausible CloudTrail event; keyword arguments override or add fields."""
    stamp = when if isinstance(when, str) else when.strftime("%Y-%m-%dT%H:%M:%SZ")
    event: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLE",
            "arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
            "accountId": ACCOUNT,
            "accessKeyId": "AKIAEXAMPLE",
            "userName": "alice",
        },
        "eventTime": stamp,
        "eventSource": "ec2.amazonaws.com",
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"instancesSet": {"items": [{"instanceId": "i-0abc"}]}},
        "responseElements": None,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }
    event.update(fields)
    return event


def log_key(delivered: datetime, account: str = ACCOUNT, region: str = REGION, org: str | None = None,
            prefix: str = "", suffix: str | None = None) -> str:
    org_part = f"{org}/" if org else ""
    name = f"{account}_CloudTrail_{region}_{delivered:%Y%m%dT%H%MZ}_{suffix or uuid.uuid4().hex[:16]}.json.gz"
    return f"{prefix}AWSLogs/{org_part}{account}/CloudTrail/{region}/{delivered:%Y/%m/%d}/{name}"


WriteLog = Callable[..., Path]


@pytest.fixture
def write_log(tmp_path: Path) -> WriteLog:
    """Write `{"Records": records}` gzipped at a key under tmp_path/source (or raw bytes if given)."""

    def write(key: str, records: list[Any] | None = None, raw: bytes | None = None) -> Path:
        path = tmp_path / "source" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        data = raw if raw is not None else gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)
        path.write_bytes(data)
        return path

    return write


def day_start(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)



@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real HTTP S3/Glue/Athena/SNS endpoint (moto) on 127.0.0.1, for the whole test session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                       "TRAILSIGHT_S3_ENDPOINT": endpoint, "AWS_ENDPOINT_URL": endpoint})
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION",
            "TRAILSIGHT_S3_ENDPOINT", "AWS_ENDPOINT_URL")


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A fresh, empty bucket; returns its s3:// URL."""
    from trailsight.storage.aws import client

    name = f"bucket-{uuid.uuid4().hex[:12]}"
    client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"
