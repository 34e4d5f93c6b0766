"""The least-privilege IAM policy shipped for the pipeline: valid, scoped, and covering what the code calls."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trailsight.retention.policy import load_policy

PROJECT_ROOT = Path(__file__).resolve().parent.parent

POLICY = json.loads((PROJECT_ROOT / "policies" / "pipeline-iam-policy.json").read_text())
STATEMENTS = POLICY["Statement"]


def actions() -> set[str]:
    return {a for s in STATEMENTS for a in s["Action"]}


def test_policy_is_valid_iam_json() -> None:
    assert POLICY["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in STATEMENTS]
    assert len(sids) == len(set(sids)) and all(re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids)
    assert all(s["Effect"] == "Allow" and isinstance(s["Action"], list) for s in STATEMENTS)


def test_no_wildcard_actions_or_resources() -> None:
    for statement in STATEMENTS:
        assert not any(a == "*" or a.endswith(":*") for a in statement["Action"]), statement["Sid"]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert "*" not in resources, statement["Sid"]
        assert all(r.startswith("arn:aws:") or r == "${AlertTopicArn}" for r in resources), statement["Sid"]


def test_bucket_listing_is_limited_to_prefixes() -> None:
    for statement in STATEMENTS:
        if "s3:ListBucket" in statement["Action"] and statement["Sid"] != "AthenaResultsLocation":
            assert "s3:prefix" in statement["Condition"]["StringLike"], statement["Sid"]


def test_source_logs_are_read_only_except_for_archiving() -> None:
    writes = {"s3:PutObject", "s3:DeleteObject"}
    for statement in STATEMENTS:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if any("${SourceBucket}/" in r for r in resources) and writes & set(statement["Action"]):
            assert statement["Sid"] in ("ArchiveSourceLogs", "ArchiveBundlesAndManifests")


ARCHIVE_OBJECTS = "arn:aws:s3:::${SourceBucket}/${SourcePrefix}" + load_policy().archive_prefix + "*"


def allowed_on(resource: str) -> set[str]:
    return {a for s in STATEMENTS if resource in (s["Resource"] if isinstance(s["Resource"], list)
                                                   else [s["Resource"]]) for a in s["Action"]}


def test_archive_prefix_allows_what_archive_and_restore_call() -> None:
    # put_object, head/get_object, copy_object into the storage class, restore_object, and the removal of the
    # STANDARD staging version in a versioned bucket (Storage.set_storage_class); manifests through storage.py.
    assert {"s3:GetObject", "s3:PutObject", "s3:RestoreObject", "s3:DeleteObjectVersion"} <= allowed_on(
        ARCHIVE_OBJECTS)


def test_archive_prefix_can_be_listed() -> None:
    (listing,) = [s for s in STATEMENTS if s["Sid"] == "ListSourceLogPrefixes"]
    prefixes = listing["Condition"]["StringLike"]["s3:prefix"]
    assert "${SourcePrefix}" + load_policy().archive_prefix + "*" in prefixes


def test_versions_are_deleted_only_under_the_archive_prefix() -> None:
    for statement in STATEMENTS:
        if "s3:DeleteObjectVersion" in statement["Action"]:
            assert statement["Resource"] == ARCHIVE_OBJECTS, statement["Sid"]
    assert "s3:DeleteObjectVersion" not in allowed_on("arn:aws:s3:::${SourceBucket}/${SourcePrefix}AWSLogs/*")


def test_glue_and_athena_are_limited_to_the_own_database_and_workgroup() -> None:
    for statement in STATEMENTS:
        glue_or_athena = [a for a in statement["Action"] if a.split(":")[0] in ("glue", "athena")]
        if glue_or_athena:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all("${GlueDatabase}" in r or "${AthenaWorkgroup}" in r or r.endswith(":catalog")
                       for r in resources)


@pytest.mark.parametrize("needed", [
    "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",  # storage.py
    "glue:CreateDatabase", "glue:CreateTable", "glue:UpdateTable",  # athena.create_tables
    "athena:StartQueryExecution", "athena:GetQueryExecution",  # athena.run_query via awswrangler
    "sns:Publish",  # alerts
    "s3:RestoreObject", "s3:DeleteObjectVersion",  # archive.restore_day, archive.archive_day
    "s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration",  # lifecycle plan/apply/check
])
def test_policy_covers_the_calls_the_pipeline_makes(needed: str) -> None:
    assert needed in actions()
