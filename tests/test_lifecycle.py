"""Bucket lifecycle rules from the policy, on moto's HTTP S3: merged, diffed, applied, read back, checked."""

from __future__ import annotations

import re
from typing import Any

import pytest

from trailsight.errors import LifecycleError
from trailsight.retention.lifecycle import apply_lifecycle, check_lifecycle, desired_rules, plan_lifecycle
from trailsight.retention.policy import Policy, load_policy, policy_from_dict
from trailsight.storage.aws import client, split_s3_url

FOREIGN = [
    {"ID": "team-tmp-cleanup", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 3}},
    {"ID": "logs-by-tag", "Filter": {"Tag": {"Key": "class", "Value": "scratch"}}, "Status": "Disabled",
     "Expiration": {"Days": 1}},
]


def policy(**bundles: Any) -> Policy:
    return policy_from_dict({
        "raw": {"keep_as_delivered_days": 30, "retain_days": 2557},
        "bundles": {"storage_class": "GLACIER_IR",
                    "transitions": [{"after_days": 365, "storage_class": "DEEP_ARCHIVE"}], **bundles},
        "lake": {"keep_days": 400},
    })


def bucket_rules(url: str) -> list[dict[str, Any]]:
    return client("s3").get_bucket_lifecycle_configuration(Bucket=split_s3_url(url)[0])["Rules"]


def put_rules(url: str, rules: list[dict[str, Any]]) -> None:
    client("s3").put_bucket_lifecycle_configuration(Bucket=split_s3_url(url)[0],
                                                    LifecycleConfiguration={"Rules": rules})


def by_id(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["ID"]: r for r in rules}


def test_rules_follow_the_policy_with_days_counted_from_creation() -> None:
    rules = by_id(desired_rules(policy(), lake_prefix="lake/"))
    housekeeping = {"NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}
    assert rules == {
        "trailsight-raw": {"ID": "trailsight-raw", "Filter": {"Prefix": "AWSLogs/"}, "Status": "Enabled",
                           "Expiration": {"Days": 2557}, **housekeeping},
        "trailsight-bundles": {"ID": "trailsight-bundles", "Filter": {"Prefix": "trailsight-archive/bundles/"},
                               "Status": "Enabled", "Transitions": [{"Days": 335, "StorageClass": "DEEP_ARCHIVE"}],
                               "Expiration": {"Days": 2527}, **housekeeping},
        "trailsight-manifests": {"ID": "trailsight-manifests", "Filter": {"Prefix": "trailsight-archive/manifests/"},
                                 "Status": "Enabled", "Expiration": {"Days": 2527}, **housekeeping},
        "trailsight-lake": {"ID": "trailsight-lake", "Filter": {"Prefix": "lake/"}, "Status": "Enabled",
                            "Expiration": {"Days": 400}, **housekeeping},
    }


def test_raw_data_kept_forever_only_cleans_delete_markers() -> None:
    forever = policy_from_dict({"raw": {"keep_as_delivered_days": 30, "retain_days": 0},
                                "bundles": {"storage_class": "DEEP_ARCHIVE"}})
    rules = by_id(desired_rules(forever))
    assert rules["trailsight-raw"]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert "Expiration" not in rules["trailsight-bundles"] and "Transitions" not in rules["trailsight-bundles"]


def test_plan_on_a_bucket_without_rules_adds_every_policy_rule(s3_bucket: str) -> None:
    plan = plan_lifecycle(s3_bucket, policy())
    assert not plan.had_configuration and not plan.in_sync
    assert [(c.action, c.rule_id) for c in plan.changes] == [
        ("add", "trailsight-raw"), ("add", "trailsight-bundles"), ("add", "trailsight-manifests")]
    assert "+ add rule trailsight-bundles" in plan.diff()
    assert '"StorageClass": "DEEP_ARCHIVE"' in plan.diff()


def test_apply_keeps_rules_trailsight_did_not_create(s3_bucket: str) -> None:
    put_rules(s3_bucket, FOREIGN)
    plan = plan_lifecycle(s3_bucket, policy())
    assert plan.kept == ["team-tmp-cleanup", "logs-by-tag"]
    result = apply_lifecycle(s3_bucket, policy(), plan=plan)
    assert result.applied and result.check.in_sync, result.check.drift
    rules = by_id(bucket_rules(s3_bucket))
    assert rules["team-tmp-cleanup"] == FOREIGN[0] and rules["logs-by-tag"] == FOREIGN[1]
    assert set(rules) == {"team-tmp-cleanup", "logs-by-tag", "trailsight-raw", "trailsight-bundles",
                          "trailsight-manifests"}


def test_applying_again_changes_nothing(s3_bucket: str) -> None:
    apply_lifecycle(s3_bucket, policy())
    again = apply_lifecycle(s3_bucket, policy())
    assert not again.applied and again.plan.in_sync and again.plan.diff() == ""


def test_policy_change_updates_and_removes_only_owned_rules(s3_bucket: str) -> None:
    stale = {"ID": "trailsight-old", "Filter": {"Prefix": "old/"}, "Status": "Enabled", "Expiration": {"Days": 9}}
    put_rules(s3_bucket, [*FOREIGN, stale])
    first = apply_lifecycle(s3_bucket, policy())
    assert ("remove", "trailsight-old") in [(c.action, c.rule_id) for c in first.plan.changes]
    changed = policy(transitions=[{"after_days": 200, "storage_class": "DEEP_ARCHIVE"}])
    plan = plan_lifecycle(s3_bucket, changed)
    assert [(c.action, c.rule_id) for c in plan.changes] == [("change", "trailsight-bundles")]
    assert re.search(r'\n +-\s+"Days": 335,\n +\+\s+"Days": 170,', plan.diff())
    apply_lifecycle(s3_bucket, changed, plan=plan)
    rules = by_id(bucket_rules(s3_bucket))
    assert rules["trailsight-bundles"]["Transitions"] == [{"Days": 170, "StorageClass": "DEEP_ARCHIVE"}]
    assert "trailsight-old" not in rules and rules["team-tmp-cleanup"] == FOREIGN[0]


def test_check_reports_drift_when_someone_edits_a_trailsight_rule(s3_bucket: str) -> None:
    apply_lifecycle(s3_bucket, policy())
    assert check_lifecycle(s3_bucket, policy()).in_sync
    edited = [r if r["ID"] != "trailsight-raw" else {**r, "Expiration": {"Days": 90}} for r in bucket_rules(s3_bucket)]
    put_rules(s3_bucket, [r for r in edited if r["ID"] != "trailsight-manifests"])
    check = check_lifecycle(s3_bucket, policy())
    assert not check.in_sync
    assert check.drift == ["rule trailsight-raw differs from the policy",
                           "rule trailsight-manifests is missing from the bucket"]


def test_apply_refuses_when_the_bucket_changed_since_the_plan(s3_bucket: str) -> None:
    plan = plan_lifecycle(s3_bucket, policy())
    put_rules(s3_bucket, FOREIGN)
    with pytest.raises(LifecycleError, match="changed since the plan was made; run `trailsight lifecycle plan` again"):
        apply_lifecycle(s3_bucket, policy(), plan=plan)
    assert by_id(bucket_rules(s3_bucket)).keys() == {"team-tmp-cleanup", "logs-by-tag"}


def test_two_archives_in_one_bucket_keep_each_other_rules(s3_bucket: str) -> None:
    apply_lifecycle(f"{s3_bucket}/org-a", policy())
    result = apply_lifecycle(f"{s3_bucket}/org-b", policy())
    assert result.check.in_sync
    rules = by_id(bucket_rules(s3_bucket))
    assert rules["trailsight-raw@org-a"]["Filter"] == {"Prefix": "org-a/AWSLogs/"}
    assert rules["trailsight-raw@org-b"]["Filter"] == {"Prefix": "org-b/AWSLogs/"}
    assert check_lifecycle(f"{s3_bucket}/org-a", policy()).in_sync


def test_lake_in_the_same_bucket_gets_an_expiration_rule(s3_bucket: str) -> None:
    plan = plan_lifecycle(s3_bucket, policy(), lake=f"{s3_bucket}/lake")
    lake_rule = by_id(plan.rules)["trailsight-lake"]
    assert lake_rule["Filter"] == {"Prefix": "lake/"} and lake_rule["Expiration"] == {"Days": 400}
    elsewhere = plan_lifecycle(s3_bucket, policy(), lake="s3://another-bucket/lake")
    assert "trailsight-lake" not in by_id(elsewhere.rules)
    assert any("no lake rule is planned here" in w for w in elsewhere.warnings)


def test_foreign_rule_acting_on_raw_files_is_warned_about(s3_bucket: str) -> None:
    put_rules(s3_bucket, [{"ID": "expire-everything", "Filter": {"Prefix": ""}, "Status": "Enabled",
                           "Expiration": {"Days": 60}}])
    plan = plan_lifecycle(s3_bucket, policy())
    assert any(w.startswith("rule 'expire-everything' (not trailsight's) also applies to 'AWSLogs/'")
               for w in plan.warnings)


def test_only_s3_buckets_have_lifecycle_rules(tmp_path) -> None:
    with pytest.raises(LifecycleError, match="lifecycle rules exist only on S3 buckets"):
        plan_lifecycle(str(tmp_path), load_policy())


def test_missing_bucket_is_reported(moto_endpoint: str) -> None:
    with pytest.raises(LifecycleError, match="bucket no-such-bucket-here does not exist; check --bucket"):
        plan_lifecycle("s3://no-such-bucket-here", policy())
