"""AWS clients from the standard credential chain, with an optional endpoint for S3-compatible stores.

`TRAILSIGHT_S3_ENDPOINT` (or `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`) points S3 at another endpoint, e.g.
MinIO or a local moto server; `AWS_ENDPOINT_URL` is also honoured by boto3 for every other service.
Throttling and transient errors are retried by botocore's adaptive retry mode; the first retry of a process is
logged (logger `trailsight`), so a slow store does not look like a hang.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import boto3
from botocore.config import Config

from trailsight.errors import StorageError

MAX_ATTEMPTS = 8
# Requests in flight per process: a GET from S3 waits 15-50 ms on the network and costs well under a millisecond
# of CPU, so one process needs dozens in flight to keep converting (see bench/scale_bench.py). botocore's pool
# holds as many connections: its default of 10 would make the other threads wait for one.
MAX_IN_FLIGHT = 32
RETRY_CONFIG = Config(retries={"max_attempts": MAX_ATTEMPTS, "mode": "adaptive"}, connect_timeout=10,
                      read_timeout=60, max_pool_connections=MAX_IN_FLIGHT)
log = logging.getLogger("trailsight.aws")
_retry_noted: set[str] = set()
_have_credentials: set[bool] = set()
Result = TypeVar("Result")


def s3_endpoint() -> str | None:
    return (os.environ.get("TRAILSIGHT_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL"))


def region_name() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def require_credentials(url: str) -> None:
    """Fail in seconds, naming the fix, when the credential chain finds nothing.

    Without this, S3 calls without credentials fail only after about 50 s of retries, and then with a DNS error.
    """
    if _have_credentials:
        return
    if boto3.session.Session().get_credentials() is None:
        raise StorageError(f"no AWS credentials found for {url}: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY, or run `aws configure`")
    _have_credentials.add(True)


def note_retry(service: str, reason: str) -> None:
    """Say once per service and process that calls are being retried, and why, so a slow store is not a hang."""
    if service in _retry_noted:
        return
    _retry_noted.add(service)
    log.warning("%s is not answering (%s); retrying, up to %s attempts per call", service, reason, MAX_ATTEMPTS)


def _note_botocore_retry(service: str, attempts: int = 1, response: Any = None, caught_exception: Any = None,
                         **_: Any) -> None:
    status = response[0].status_code if response else None
    if caught_exception or (status and (status >= 500 or status == 429)):
        note_retry(service, f"{type(caught_exception).__name__}: {caught_exception}" if caught_exception
                   else f"HTTP {status}")


def retried(call: Callable[[], Result], transient: Callable[[OSError], str | None], service: str = "s3",
            base_delay: float = 0.1, max_delay: float = 20.0) -> Result:
    """`call()`, tried up to MAX_ATTEMPTS times while `transient` names a reason for its OSError.

    For the calls pyarrow's S3 client makes, whose own retries cannot be seen: the first retry is announced like
    botocore's. Waits grow exponentially with full jitter, as AWS recommends for throttling.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return call()
        except OSError as exc:
            reason = transient(exc)
            if reason is None or attempt == MAX_ATTEMPTS:
                raise
            note_retry(service, reason)
            time.sleep(random.uniform(0, min(max_delay, base_delay * 2**attempt)))
    raise AssertionError("unreachable")


# The environment a client is made from: a client is kept for these values as they were.
CLIENT_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE")


def client(service: str, endpoint: str | None = None) -> Any:
    """A boto3 client; S3 uses the configured S3 endpoint unless one is given.

    Clients are kept per endpoint, region and credential settings, so a changed setting (a worker given the run's
    environment, a test's own server) never reaches a client made for the old one.
    """
    if service == "s3" and endpoint is None:
        endpoint = s3_endpoint()
    return _client(service, endpoint, region_name(), tuple(os.environ.get(name) for name in CLIENT_SETTINGS))


@cache
def _client(service: str, endpoint: str | None, region: str, settings: tuple[str | None, ...]) -> Any:
    made = boto3.session.Session().client(service, region_name=region, endpoint_url=endpoint, config=RETRY_CONFIG)
    made.meta.events.register_first("needs-retry", lambda **kwargs: _note_botocore_retry(service, **kwargs))
    return made


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` to (bucket, prefix without slashes at the ends)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")
