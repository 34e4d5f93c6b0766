"""The retention policy file: the shipped default loads, and every mistake is one line naming the fix."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from trailsight.errors import PolicyError
from trailsight.retention.policy import DEFAULT_POLICY, Transition, load_policy, policy_from_dict


def valid(**sections: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"raw": {"keep_as_delivered_days": 30, "retain_days": 400},
                            "bundles": {"storage_class": "GLACIER_IR"}}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def test_the_shipped_policy_loads() -> None:
    policy = load_policy()
    assert policy.path == str(DEFAULT_POLICY)
    assert policy.keep_as_delivered_days < policy.lake_keep_days
    assert policy.bundles_prefix == "trailsight-archive/bundles/"


def test_omitted_settings_take_documented_defaults() -> None:
    policy = policy_from_dict(valid())
    assert (policy.archive_prefix, policy.restore_tier, policy.rule_id_prefix) == (
        "trailsight-archive/", "Bulk", "trailsight-")
    assert policy.minimum_object_size == "all_storage_classes_128K" and policy.lake_keep_days == 0


def test_bundle_class_follows_the_transitions_until_expiry() -> None:
    policy = policy_from_dict(valid(raw={"retain_days": 1000}, bundles={
        "transitions": [{"after_days": 200, "storage_class": "GLACIER"},
                        {"after_days": 500, "storage_class": "DEEP_ARCHIVE"}]}))
    assert policy.transitions == (Transition(200, "GLACIER"), Transition(500, "DEEP_ARCHIVE"))
    assert [policy.bundle_class_at(age) for age in (10, 30, 199, 200, 500, 999, 1000)] == [
        None, "GLACIER_IR", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE", "DEEP_ARCHIVE", None]
    assert policy.earliest_archive_date(date(2024, 5, 1)) == date(2024, 5, 31)


@pytest.mark.parametrize(("data", "message"), [
    ({"raws": {}}, r"\[raws\] is not a section \(did you mean raw\?\)"),
    (valid(raw={"keep_days": 3}), r"\[raw\] keep_days is not a setting \(did you mean retain_days\?\)"),
    ({"bundles": {"storage_class": "GLACIER_IR"}}, r"\[raw\] keep_as_delivered_days is missing; add"),
    (valid(raw={"retain_days": 20}), r"retain_days \(20\) must be longer than keep_as_delivered_days \(30\)"),
    (valid(raw={"keep_as_delivered_days": "30"}), r"must be a whole number, not '30'"),
    (valid(bundles={"storage_class": "GLACIER_IRR"}), r"'GLACIER_IRR' \(did you mean GLACIER_IR\?\); use one of"),
    (valid(bundles={"storage_class": "INTELLIGENT_TIERING"}), r"use one of STANDARD, "),
    (valid(bundles={"transitions": [{"after_days": 20, "storage_class": "DEEP_ARCHIVE"}]}),
     r"transition #1 after_days \(20\) must be later than 30"),
    (valid(bundles={"transitions": [{"after_days": 90, "storage_class": "STANDARD_IA"}]}),
     r"moves from GLACIER_IR to STANDARD_IA; S3 only moves objects to a colder class"),
    (valid(bundles={"storage_class": "STANDARD", "transitions": [{"after_days": 40, "storage_class": "STANDARD_IA"}]}),
     r"S3 needs at least 30, so use after_days >= 60"),
    (valid(bundles={"transitions": [{"after_days": 400, "storage_class": "DEEP_ARCHIVE"}]}),
     r"after_days \(400\) is not before retain_days \(400\)"),
    (valid(bundles={"transitions": [{"after_days": 90, "class": "DEEP_ARCHIVE"}]}), r"class is not a setting"),
    (valid(bundles={"prefix": "AWSLogs/archive"}), r"is inside AWSLogs/, where CloudTrail delivers"),
    (valid(bundles={"prefix": "../up"}), r"must be a relative folder"),
    (valid(bundles={"storage_class": "DEEP_ARCHIVE", "restore_tier": "Expedited"}),
     r"Expedited is not offered for DEEP_ARCHIVE"),
    (valid(lake={"keep_days": 10}), r"\[lake\] keep_days \(10\) must be longer than \[raw\] keep_as_delivered_days"),
    (valid(lifecycle={"transition_default_minimum_object_size": "128K"}), r"use one of all_storage_classes_128K"),
])
def test_invalid_policy_is_one_line_naming_the_fix(data: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message) as caught:
        policy_from_dict(data, "retention.toml")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("retention.toml")


def test_missing_or_broken_policy_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"no retention policy at .*; write one with `trailsight retention defaults"):
        load_policy(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[raw\nkeep = 1\n")
    with pytest.raises(PolicyError, match="is not valid TOML"):
        load_policy(broken)
