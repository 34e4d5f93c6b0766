"""Cost plan arithmetic on known inputs, the price table's validation, and the inventory of a real archive."""

from __future__ import annotations

import gzip
import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import day_start, log_key, make_event

from trailsight.errors import PolicyError
from trailsight.lake.ingest import ingest
from trailsight.retention.archive import archive_day
from trailsight.retention.costs import (
    AS_IS,
    GIB,
    KIB,
    LIFECYCLE_ONLY,
    POLICY,
    Inventory,
    cost_plan,
    load_prices,
    prices_from_dict,
    project_costs,
)
from trailsight.retention.policy import Policy, policy_from_dict
from trailsight.storage.store import Storage

# Round prices: STANDARD costs 0.001 per GiB-day with 30-day months.
CLASS = {"put_per_1000": 0.0, "get_per_1000": 0.0, "transition_per_1000": 0.0, "min_days": 0, "min_billable_kb": 0,
         "overhead_kb": 0, "overhead_standard_kb": 0}
PRICES = prices_from_dict({"currency": "USD", "days_per_month": 30, "classes": {
    "STANDARD": {**CLASS, "storage_gb_month": 0.03, "put_per_1000": 0.005, "get_per_1000": 0.0004},
    "STANDARD_IA": {**CLASS, "storage_gb_month": 0.015, "min_days": 30, "min_billable_kb": 128},
    "ONEZONE_IA": {**CLASS, "storage_gb_month": 0.012, "min_days": 30, "min_billable_kb": 128},
    "GLACIER_IR": {**CLASS, "storage_gb_month": 0.006, "put_per_1000": 0.02, "transition_per_1000": 0.02,
                   "min_days": 90, "min_billable_kb": 128},
    "GLACIER": {**CLASS, "storage_gb_month": 0.003, "min_days": 90, "overhead_kb": 32, "overhead_standard_kb": 8},
    "DEEP_ARCHIVE": {**CLASS, "storage_gb_month": 0.0015, "put_per_1000": 0.05, "transition_per_1000": 0.05,
                     "min_days": 180, "overhead_kb": 32, "overhead_standard_kb": 8},
}}, "test-prices")
DAYS = 360  # one year of 30-day months


def policy(keep: int = 30, retain: int = 0, storage_class: str = "GLACIER_IR", transitions: list[Any] | None = None,
           minimum: str = "all_storage_classes_128K") -> Policy:
    return policy_from_dict({
        "raw": {"keep_as_delivered_days": keep, "retain_days": retain},
        "bundles": {"storage_class": storage_class, "transitions": transitions or []},
        "lifecycle": {"transition_default_minimum_object_size": minimum},
    })


def inventory(events: list[int], bundles: list[int], others: list[int] = (), days: int = 1) -> Inventory:  # type: ignore[assignment]
    return Inventory(None, None, days, np.array(events, dtype=np.int64), np.array(others, dtype=np.int64),
                     np.array(bundles, dtype=np.int64))


def scenarios(inv: Inventory, pol: Policy) -> dict[str, Any]:
    return {s.name: s for s in project_costs(inv, pol, PRICES, years=1)}


def cohort_days(start: int, end: int | None = None) -> int:
    """Sum over the year's days of how many daily cohorts are between ages start and end."""
    return sum(max(0, min(end if end is not None else t + 1, t + 1) - start) for t in range(DAYS))


def test_one_gib_a_day_kept_as_is_costs_the_sum_of_every_day_stored() -> None:
    result = scenarios(inventory([GIB], [GIB]), policy())[AS_IS]
    assert result.monthly[0] == pytest.approx(465 * 0.001 + 30 * 0.005 / 1000)  # days 1..30 of stored GiB
    assert result.monthly[-1] == pytest.approx(sum(range(331, 361)) * 0.001 + 30 * 0.005 / 1000)
    assert result.components == pytest.approx({"storage: STANDARD": cohort_days(0) * 0.001,
                                               "requests: delivery (CloudTrail PUTs)": DAYS * 0.005 / 1000})
    assert len(result.monthly) == 12 and result.total == pytest.approx(sum(result.components.values()))


def test_lifecycle_rule_leaves_small_objects_in_standard_by_default() -> None:
    small = inventory([KIB] * 1000, [1000 * 2 * KIB])
    result = scenarios(small, policy(storage_class="DEEP_ARCHIVE"))
    assert result[LIFECYCLE_ONLY].components == pytest.approx(result[AS_IS].components)


def test_small_objects_moved_to_deep_archive_pay_transitions_and_40_kb_each() -> None:
    small = inventory([KIB] * 1000, [1000 * 2 * KIB])
    result = scenarios(small, policy(storage_class="DEEP_ARCHIVE", minimum="varies_by_storage_class"))
    parts = result[LIFECYCLE_ONLY].components
    in_deep = cohort_days(30)
    assert parts["requests: lifecycle transitions"] == pytest.approx((DAYS - 30) * 1000 * 0.05 / 1000)
    assert parts["storage: DEEP_ARCHIVE"] == pytest.approx(in_deep * 1000 * KIB / GIB * 0.0015 / 30)
    assert parts["overhead: archive index per object"] == pytest.approx(
        in_deep * 1000 * (32 * KIB * 0.0015 + 8 * KIB * 0.03) / GIB / 30)
    assert parts["storage: STANDARD"] == pytest.approx((cohort_days(0) - in_deep) * 1000 * KIB / GIB * 0.001)
    # Each 1 KB object now bills 33 KB in the archive class plus 8 KB in STANDARD: dearer than staying put.
    assert result[LIFECYCLE_ONLY].total > result[AS_IS].total


def test_bundles_under_128_kb_are_billed_as_128_kb_in_glacier_ir() -> None:
    result = scenarios(inventory([KIB] * 10, [64 * KIB]), policy(storage_class="GLACIER_IR"))[POLICY]
    in_class = cohort_days(30)
    assert result.components["storage: GLACIER_IR"] == pytest.approx(in_class * 64 * KIB / GIB * 0.006 / 30)
    assert result.components["overhead: 128 KB minimum size"] == pytest.approx(in_class * 64 * KIB / GIB * 0.006 / 30)


def test_compaction_requests_are_one_get_per_raw_file_and_a_few_writes_per_bundle() -> None:
    result = scenarios(inventory([KIB] * 100, [GIB, GIB]), policy(storage_class="GLACIER_IR"))[POLICY]
    per_day = 100 * 0.0004 / 1000 + 2 * (5 * 0.005 + 0.0004 + 0.02) / 1000
    assert result.components["requests: compaction"] == pytest.approx((DAYS - 30) * per_day)
    assert result.components["storage: STANDARD"] == pytest.approx(
        (cohort_days(0) - cohort_days(30)) * 100 * KIB / GIB * 0.001)


def test_leaving_a_class_before_its_minimum_duration_is_billed() -> None:
    early = policy(storage_class="GLACIER_IR", transitions=[{"after_days": 60, "storage_class": "DEEP_ARCHIVE"}])
    result = scenarios(inventory([KIB], [GIB]), early)[POLICY]
    # 30 days in GLACIER_IR of its 90: 60 more days of 1 GiB at 0.006 a month, for each day's bundle from day 60.
    assert result.components["early deletion: GLACIER_IR"] == pytest.approx((DAYS - 60) * 0.006 * 60 / 30)
    assert result.components["requests: lifecycle transitions"] == pytest.approx((DAYS - 60) * 0.05 / 1000)


def test_expiry_stops_storage_and_deep_archive_expired_early_is_billed() -> None:
    result = scenarios(inventory([GIB], [GIB]), policy(retain=100, storage_class="DEEP_ARCHIVE"))
    assert result[LIFECYCLE_ONLY].components["storage: DEEP_ARCHIVE"] == pytest.approx(
        cohort_days(30, 100) * 0.0015 / 30)
    assert result[POLICY].components["early deletion: DEEP_ARCHIVE"] == pytest.approx(
        (DAYS - 100) * (1 + 32 * KIB / GIB) * 0.0015 * 110 / 30)


def test_daily_averages_come_from_the_days_observed() -> None:
    two_days = scenarios(inventory([GIB, GIB], [GIB, GIB], days=2), policy())
    one_day = scenarios(inventory([GIB], [GIB]), policy())
    assert two_days[POLICY].total == pytest.approx(one_day[POLICY].total)


def test_typical_small_file_archive_is_cheapest_under_the_policy() -> None:
    day = inventory([20_000] * 2000 + [900] * 500, [25_000_000] * 4, others=[1500] * 96)
    plan = cost_plan("unused", policy(keep=30, retain=2557, transitions=[
        {"after_days": 365, "storage_class": "DEEP_ARCHIVE"}]), PRICES, inventory=day)
    totals = {s.name: s.total for s in plan.scenarios}
    assert totals[POLICY] < totals[LIFECYCLE_ONLY] <= totals[AS_IS]
    assert plan.years == 7 and len(plan.scenario(POLICY).monthly) == 84
    assert plan.notes[0].startswith("100% of raw objects are under 128 KB")
    assert any(n.startswith("cheapest over 7 years: policy") for n in plan.notes)


def test_the_shipped_price_table_loads() -> None:
    prices = load_prices()
    assert prices.classes["DEEP_ARCHIVE"].overhead_kb + prices.classes["DEEP_ARCHIVE"].overhead_standard_kb == 40
    assert prices.classes["GLACIER_IR"].min_billable_kb == 128 and prices.classes["DEEP_ARCHIVE"].min_days == 180


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["classes"].pop("GLACIER"), r"no prices for GLACIER; add a \[classes.GLACIER\] table"),
    (lambda d: d["classes"]["STANDARD"].update(storage_gb_mnth=1), r"storage_gb_mnth is not a setting"),
    (lambda d: d["classes"]["STANDARD"].update(put_per_1000=-1), r"put_per_1000 must be a number >= 0"),
    (lambda d: d["classes"].update(GLACIER_DEEP={}), r"\[classes.GLACIER_DEEP\] is not a storage class"),
    (lambda d: d.update(days_per_month=45), r"days_per_month is 45; a month has 28 to 31 days"),
])
def test_invalid_price_table_is_one_line_naming_the_fix(change: Any, message: str) -> None:
    data = json.loads(json.dumps({"days_per_month": 30, "classes": {
        name: vars(price) for name, price in PRICES.classes.items()}}))
    change(data)
    with pytest.raises(PolicyError, match=message):
        prices_from_dict(data, "prices.toml")


def test_inventory_counts_objects_sizes_and_the_bundles_archive_would_write(tmp_path: Path) -> None:
    source, lake = Storage(tmp_path / "source"), Storage(tmp_path / "lake")
    rng = random.Random(3)
    day = date(2024, 5, 1)
    for number, region in enumerate(["us-east-1", "us-east-1", "eu-west-1"]):
        when = day_start(2024, 5, 1).replace(hour=number)
        events = [make_event(when, awsRegion=region, requestParameters={"x": rng.randbytes(1500 * (number + 1)).hex()})]
        source.write_bytes(log_key(when, region=region, suffix=f"{number:016x}"),
                           gzip.compress(json.dumps({"Records": events}).encode(), mtime=0))
    digest = ("AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/05/01/"
              "111122223333_CloudTrail-Digest_us-east-1_x.json.gz")
    source.write_bytes(digest, b"{}")
    plan = cost_plan(source, policy(keep=1, retain=10), PRICES)
    summary = plan.inventory.summary()
    assert (summary["objects"], summary["event_files"], summary["other_objects"], summary["days"]) == (4, 3, 1, 1)
    assert sum(b["objects"] for b in summary["size_distribution"]) == 4
    assert summary["size_distribution"][0]["objects"] == 1  # the 2-byte digest is under 1 KB
    ingest(source, lake, day, day, workers=1)
    archived = archive_day(source, lake, day, policy(keep=1, retain=10), today=day + timedelta(days=2))
    assert sorted(plan.inventory.bundles.tolist()) == sorted(g.bundle_bytes for g in archived.groups)
