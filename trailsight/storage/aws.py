"""AWS clients from the standard credential chain, with an optional endpoint for S3-compatible stores.

`TRAILSIGHT_S3_ENDPOINT` (or `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`) points S3 at another endpoint, e.g.
MinIO or a local moto server; `AWS_ENDPOINT_URL` is also honoured by boto3 for every other service.
Throttling and transient errors are retried by botocore's adaptive retry mode.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

RETRY_CONFIG = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)


def s3_endpoint() -> str | None:
    return (os.environ.get("TRAILSIGHT_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL"))


def region_name() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@cache
def client(service: str, endpoint: str | None = None) -> Any:
    """A boto3 client; S3 uses the configured S3 endpoint unless one is given."""
    if service == "s3" and endpoint is None:
        endpoint = s3_endpoint()
    return boto3.session.Session().client(service, region_name=region_name(), endpoint_url=endpoint,
                                          config=RETRY_CONFIG)


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` to (bucket, prefix without slashes at the ends)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")
