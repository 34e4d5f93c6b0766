"""Cost plan: what the raw archive costs kept as it is, with a lifecycle rule alone, and under the policy.

CloudTrail delivers many small objects, and S3 bills per object as well as per byte: a lifecycle rule does not
move objects under 128 KB (by default), IA and Glacier Instant Retrieval bill at least 128 KB per object,
Glacier Flexible Retrieval and Deep Archive add ~40 KB per object, every transition is a request, and leaving a
class early bills its minimum duration. So the plan works per object, from the archive's own sizes.

The model: the archive observed over `days` delivery days is an average day, delivered every day from day 0
of the horizon (a new trail; the steady state shows once retention is reached). Each day's objects live
through stages (storage class from one age to another); a day's cost sums every earlier day's objects at their
age, plus the one-off requests and early-deletion charges falling on it. Every price comes from one table
(retention-prices.toml).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from trailsight.errors import PolicyError
from trailsight.resources import package_folder
from trailsight.retention.bundle import planned_bundle_sizes
from trailsight.retention.policy import (
    ARCHIVE_CLASSES,
    REQUIRED,
    STORAGE_CLASSES,
    Policy,
    TableReader,
    Transition,
    did_you_mean,
    load_policy,
    read_toml,
)
from trailsight.source.discovery import discover
from trailsight.storage.store import Storage, as_storage

DEFAULT_PRICES = package_folder("trailsight.retention") / "retention-prices.toml"
KIB = 1024
GIB = 2**30
SMALL_OBJECT_BYTES = 128 * KIB
"""S3 lifecycle's default transition minimum (TransitionDefaultMinimumObjectSize)."""
MANIFEST_WRITES_PER_BUNDLE = 4
"""Manifest at verified, uploaded and done, plus the verification record."""
SIZE_BUCKETS = ((0, KIB), (KIB, 8 * KIB), (8 * KIB, 32 * KIB), (32 * KIB, 128 * KIB), (128 * KIB, 1024 * KIB),
                (1024 * KIB, 16 * 1024 * KIB), (16 * 1024 * KIB, None))
AS_IS, LIFECYCLE_ONLY, POLICY = "as is", "lifecycle rule only", "policy"
DELIVERY = "requests: delivery (CloudTrail PUTs)"


# --- the price table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassPrice:
    """Prices and billing rules of one storage class (see retention-prices.toml for each field)."""

    storage_gb_month: float
    put_per_1000: float
    get_per_1000: float
    transition_per_1000: float
    min_days: int
    min_billable_kb: int
    overhead_kb: int
    overhead_standard_kb: int


@dataclass(frozen=True)
class Prices:
    path: str
    currency: str
    days_per_month: float
    classes: dict[str, ClassPrice]


_PRICE_FIELDS = tuple(ClassPrice.__dataclass_fields__)
_WHOLE_FIELDS = frozenset({"min_days", "min_billable_kb", "overhead_kb", "overhead_standard_kb"})


def load_prices(path: str | Path | None = None) -> Prices:
    """Read the price table (default: the retention-prices.toml shipped with trailsight)."""
    file = Path(path) if path else DEFAULT_PRICES
    data = read_toml(file, f"no price table at {file}; write one with "
                           "`trailsight retention defaults --prices > retention-prices.toml` and edit it")
    return prices_from_dict(data, str(file))


def prices_from_dict(data: dict[str, Any], path: str = "prices") -> Prices:
    """Validate a parsed price table: every storage class, every field, no negative price."""
    top = TableReader(path, "top level", {k: v for k, v in data.items() if k != "classes"})
    currency = top.text("currency", "USD")
    days_per_month = top.number("days_per_month", 30.4375, minimum=28)
    if days_per_month > 31:
        raise PolicyError(f"{path}: days_per_month is {days_per_month:g}; a month has 28 to 31 days")
    top.done()
    classes_table = data.get("classes", {})
    if not isinstance(classes_table, dict):
        raise PolicyError(f"{path}: [classes] must be a table of storage classes")
    classes = {}
    for name, table in classes_table.items():
        if name not in STORAGE_CLASSES:
            raise PolicyError(f"{path}: [classes.{name}] is not a storage class{did_you_mean(name, STORAGE_CLASSES)}")
        section = TableReader(path, f"classes.{name}", table)
        values: dict[str, Any] = {}
        for key in _PRICE_FIELDS:
            if key in _WHOLE_FIELDS:
                values[key] = section.integer(key, REQUIRED)
            else:
                values[key] = section.number(key, REQUIRED)
        section.done()
        classes[name] = ClassPrice(**values)
    missing = [c for c in STORAGE_CLASSES if c not in classes]
    if missing:
        raise PolicyError(f"{path}: no prices for {', '.join(missing)}; add a [classes.{missing[0]}] table")
    return Prices(path, currency, float(days_per_month), classes)


# --- the archive's inventory -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeBucket:
    label: str
    low: int
    high: int | None
    objects: int
    bytes: int


def _size_label(low: int, high: int | None) -> str:
    def human(n: int) -> str:
        return f"{n // (1024 * KIB)} MB" if n >= 1024 * KIB else f"{n // KIB} KB"

    return f"< {human(high)}" if low == 0 and high else f">= {human(low)}" if high is None else \
        f"{human(low)} - {human(high)}"


@dataclass
class Inventory:
    """Sizes of the raw archive's objects over `days` delivery days, and of the bundles the policy would make."""

    first_day: date | None
    last_day: date | None
    days: int
    event_files: np.ndarray
    other_objects: np.ndarray
    bundles: np.ndarray

    @property
    def objects(self) -> int:
        return len(self.event_files) + len(self.other_objects)

    @property
    def bytes(self) -> int:
        return int(self.event_files.sum() + self.other_objects.sum())

    def size_distribution(self) -> list[SizeBucket]:
        sizes = np.concatenate([self.event_files, self.other_objects])
        result = []
        for low, high in SIZE_BUCKETS:
            inside = (sizes >= low) & (sizes < high) if high else sizes >= low
            result.append(SizeBucket(_size_label(low, high), low, high, int(inside.sum()), int(sizes[inside].sum())))
        return result

    def summary(self) -> dict[str, Any]:
        small = int((np.concatenate([self.event_files, self.other_objects]) < SMALL_OBJECT_BYTES).sum())
        return {
            "first_day": self.first_day and self.first_day.isoformat(),
            "last_day": self.last_day and self.last_day.isoformat(), "days": self.days,
            "objects": self.objects, "bytes": self.bytes, "event_files": len(self.event_files),
            "other_objects": len(self.other_objects), "objects_under_128k": small,
            "objects_per_day": round(self.objects / self.days, 1), "bytes_per_day": round(self.bytes / self.days),
            "bundles": len(self.bundles), "bundle_bytes": int(self.bundles.sum()),
            "bundles_under_128k": int((self.bundles < SMALL_OBJECT_BYTES).sum()),
            "size_distribution": [vars(b) for b in self.size_distribution()],
        }


def take_inventory(source: str | Path | Storage, start: date | None = None, end: date | None = None) -> Inventory:
    """List the archive (or the delivery days [start, end] of it, a cheaper sample of a huge bucket)."""
    storage = as_storage(source)
    found = discover(storage, start, end)
    others = [*found.digests, *found.others]
    dated = [o.delivery_date for o in [*found.event_files, *others] if o.delivery_date]
    first = start or (min(dated) if dated else None)
    last = end or (max(dated) if dated else None)
    days = (last - first).days + 1 if first and last else 1
    bundles = planned_bundle_sizes(found.event_files)
    return Inventory(first, last, days, np.array([o.size for o in found.event_files], dtype=np.int64),
                     np.array([o.size for o in others], dtype=np.int64), np.array(bundles, dtype=np.int64))


# --- the model ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """Objects sit in `storage_class` from age `start` to `end` (days; None: beyond the horizon)."""

    storage_class: str
    start: int
    end: int | None
    by_transition: bool = False


@dataclass(frozen=True)
class Cohort:
    """One average day's objects sharing a life: their sizes, each weighing 1 / days observed."""

    sizes: np.ndarray
    weight: float

    @property
    def count(self) -> float:
        return len(self.sizes) * self.weight

    def gib(self, min_billable: int = 0) -> float:
        """Billed GiB with a minimum billable size per object."""
        return float(np.maximum(self.sizes, min_billable).sum()) * self.weight / GIB

    def split(self, threshold: int = SMALL_OBJECT_BYTES) -> tuple[Cohort, Cohort]:
        """(objects under the threshold, the others)."""
        small = self.sizes < threshold
        return Cohort(self.sizes[small], self.weight), Cohort(self.sizes[~small], self.weight)


class Ledger:
    """Daily costs by component over the horizon."""

    def __init__(self, days: int) -> None:
        self.ages = np.arange(days, dtype=np.float64)
        self.lines: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(self.ages)))

    def add(self, component: str, daily: np.ndarray | float) -> None:
        if np.any(daily):
            self.lines[component] = self.lines[component] + daily

    def present(self, start: int, end: int | None) -> np.ndarray:
        """How many days' cohorts are between ages start and end on each day."""
        upper = self.ages + 1 if end is None else np.minimum(end, self.ages + 1)
        return np.clip(upper - start, 0, None)

    def once_from(self, age: int) -> np.ndarray:
        """1 on each day a cohort reaches `age` (every day from day `age` on)."""
        return (self.ages >= age).astype(np.float64)


def cost_stages(ledger: Ledger, cohort: Cohort, stages: Iterable[Stage], prices: Prices) -> None:
    """Storage, per-object overheads, transitions and early deletions of one cohort along its stages."""
    if not len(cohort.sizes):
        return
    standard = prices.classes["STANDARD"]
    per_day = 1 / prices.days_per_month
    for stage in stages:
        price = prices.classes[stage.storage_class]
        present = ledger.present(stage.start, stage.end)
        data = cohort.gib()
        padding = cohort.gib(price.min_billable_kb * KIB) - data
        index = cohort.count * price.overhead_kb * KIB / GIB
        index_standard = cohort.count * price.overhead_standard_kb * KIB / GIB
        ledger.add(f"storage: {stage.storage_class}", present * data * price.storage_gb_month * per_day)
        ledger.add("overhead: 128 KB minimum size", present * padding * price.storage_gb_month * per_day)
        ledger.add("overhead: archive index per object", present * per_day * (
            index * price.storage_gb_month + index_standard * standard.storage_gb_month))
        if stage.by_transition:
            ledger.add("requests: lifecycle transitions",
                       ledger.once_from(stage.start) * cohort.count * price.transition_per_1000 / 1000)
        if stage.end is not None and stage.end - stage.start < price.min_days:
            billed = data + padding + index
            ledger.add(f"early deletion: {stage.storage_class}", ledger.once_from(stage.end) * billed
                       * price.storage_gb_month * (price.min_days - (stage.end - stage.start)) * per_day)


def transitions_small_objects(storage_class: str, setting: str) -> bool:
    """Whether S3 lifecycle moves objects under 128 KB into a class, under the bucket's minimum-size setting."""
    return setting == "varies_by_storage_class" and storage_class in ARCHIVE_CLASSES


def lifecycle_stages(tiers: Iterable[Transition], small: bool, setting: str, end: int | None,
                     start: Stage = Stage("STANDARD", 0, None)) -> list[Stage]:
    """Stages of objects moved by lifecycle rules through `tiers` (ages), then expired at `end`."""
    stages, current = [], start
    for tier in tiers:
        if tier.storage_class == current.storage_class or (
                small and not transitions_small_objects(tier.storage_class, setting)):
            continue
        stages.append(Stage(current.storage_class, current.start, tier.after_days, current.by_transition))
        current = Stage(tier.storage_class, tier.after_days, None, True)
    stages.append(Stage(current.storage_class, current.start, end, current.by_transition))
    return stages


@dataclass
class ScenarioCost:
    """One way of keeping the archive: its cost month by month, and where the money goes."""

    name: str
    description: str
    monthly: list[float]
    components: dict[str, float]
    last_month_components: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.monthly)

    def year_totals(self) -> list[float]:
        return [sum(self.monthly[i:i + 12]) for i in range(0, len(self.monthly), 12)]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "total": self.total,
                "first_month": self.monthly[0], "last_month": self.monthly[-1], "year_totals": self.year_totals(),
                "monthly": self.monthly, "components": self.components,
                "last_month_components": self.last_month_components}


def _finish(name: str, description: str, ledger: Ledger, months: int, days_per_month: float) -> ScenarioCost:
    month_of_day = np.minimum((ledger.ages / days_per_month).astype(int), months - 1)
    totals = np.zeros(months)
    components, last = {}, {}
    for component, daily in sorted(ledger.lines.items()):
        by_month = np.bincount(month_of_day, weights=daily, minlength=months)
        totals += by_month
        components[component] = float(daily.sum())
        last[component] = float(by_month[-1])
    return ScenarioCost(name, description, [float(v) for v in totals], components, last)


def _delivery_requests(ledger: Ledger, cohorts: Iterable[Cohort], prices: Prices) -> None:
    count = sum(c.count for c in cohorts)
    ledger.add(DELIVERY,
               ledger.once_from(0) * count * prices.classes["STANDARD"].put_per_1000 / 1000)


def project_costs(inventory: Inventory, policy: Policy, prices: Prices, years: int) -> list[ScenarioCost]:
    """The three scenarios over `years`, from an inventory (the arithmetic; `cost_plan` takes the inventory)."""
    months = years * 12
    days = math.ceil(months * prices.days_per_month)
    weight = 1 / inventory.days
    events = Cohort(inventory.event_files, weight)
    others = Cohort(inventory.other_objects, weight)
    bundles = Cohort(inventory.bundles, weight)
    setting, end = policy.minimum_object_size, policy.retain_days or None
    keep, first_class = policy.keep_as_delivered_days, policy.bundle_storage_class
    standard = prices.classes["STANDARD"]

    as_is = Ledger(days)
    _delivery_requests(as_is, (events, others), prices)
    for cohort in (events, others):
        cost_stages(as_is, cohort, [Stage("STANDARD", 0, None)], prices)

    rule_only = Ledger(days)
    _delivery_requests(rule_only, (events, others), prices)
    for cohort in (events, others):
        for part, small in zip(cohort.split(), (True, False), strict=True):
            cost_stages(rule_only, part, lifecycle_stages(policy.bundle_tiers(), small, setting, end), prices)

    compacted = Ledger(days)
    _delivery_requests(compacted, (events, others), prices)
    cost_stages(compacted, events, [Stage("STANDARD", 0, keep)], prices)
    cost_stages(compacted, others, [Stage("STANDARD", 0, end)], prices)
    per_bundle = (standard.put_per_1000 * (1 + MANIFEST_WRITES_PER_BUNDLE) + standard.get_per_1000
                  + (prices.classes[first_class].put_per_1000 if first_class != "STANDARD" else 0)) / 1000
    compacted.add("requests: compaction", compacted.once_from(keep) * (
        events.count * standard.get_per_1000 / 1000 + bundles.count * per_bundle))
    written = Stage(first_class, keep, None)
    for part, small in zip(bundles.split(), (True, False), strict=True):
        cost_stages(compacted, part, lifecycle_stages(policy.transitions, small, setting, end, written), prices)

    horizon = f"{years} years"
    return [
        _finish(AS_IS, f"every raw file stays in STANDARD, nothing expires ({horizon})", as_is, months,
                prices.days_per_month),
        _finish(LIFECYCLE_ONLY, f"a lifecycle rule moves raw files to {first_class} at {keep} days, then as the "
                f"policy's transitions, and expires them ({setting})", rule_only, months, prices.days_per_month),
        _finish(POLICY, f"raw files stay {keep} days, then one bundle per day, account and region in "
                f"{first_class}, then the policy's transitions and expiry", compacted, months, prices.days_per_month),
    ]


@dataclass
class CostPlan:
    """The archive's inventory and what each scenario costs; `notes` say where the money goes."""

    source: str
    policy: str
    prices: str
    currency: str
    years: int
    inventory: Inventory
    current_monthly_as_is: float
    scenarios: list[ScenarioCost]
    notes: list[str] = field(default_factory=list)

    def scenario(self, name: str) -> ScenarioCost:
        return next(s for s in self.scenarios if s.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "policy": self.policy, "prices": self.prices, "currency": self.currency,
                "years": self.years, "inventory": self.inventory.summary(),
                "current_monthly_as_is": self.current_monthly_as_is,
                "scenarios": [s.as_dict() for s in self.scenarios], "notes": self.notes}


def default_years(policy: Policy) -> int:
    """The retention period in whole years (rounded), or 5 years when raw data is kept forever."""
    return min(30, max(1, round(policy.retain_days / 365.25))) if policy.retain_days else 5


def cost_plan(source: str | Path | Storage, policy: Policy | None = None, prices: Prices | None = None, *,
              years: int | None = None, start: date | None = None, end: date | None = None,
              inventory: Inventory | None = None) -> CostPlan:
    """Inventory the raw archive and cost the three scenarios; `start`/`end` sample a range of delivery days."""
    policy = policy or load_policy()
    prices = prices or load_prices()
    years = years or default_years(policy)
    if not 1 <= years <= 30:
        raise PolicyError(f"years is {years}; give 1 to 30")
    storage = as_storage(source)
    inventory = inventory if inventory is not None else take_inventory(storage, start, end)
    scenarios = project_costs(inventory, policy, prices, years)
    current = inventory.bytes / GIB * prices.classes["STANDARD"].storage_gb_month
    plan = CostPlan(storage.url, policy.path, prices.path, prices.currency, years, inventory, current, scenarios)
    plan.notes = _notes(plan, policy, prices)
    return plan


def _notes(plan: CostPlan, policy: Policy, prices: Prices) -> list[str]:
    inventory, notes = plan.inventory, []
    if not inventory.objects:
        return ["the archive holds no CloudTrail objects in that range; nothing to cost"]
    sizes = np.concatenate([inventory.event_files, inventory.other_objects])
    small = float((sizes < SMALL_OBJECT_BYTES).mean())
    notes.append(f"{small:.0%} of raw objects are under 128 KB (median {int(np.median(sizes)):,} bytes): "
                 + ("a lifecycle rule leaves them in STANDARD (all_storage_classes_128K)"
                    if policy.minimum_object_size == "all_storage_classes_128K"
                    else "moved to GLACIER / DEEP_ARCHIVE each carries ~40 KB of billed overhead"))
    if len(inventory.bundles):
        notes.append(f"the policy turns {inventory.objects / inventory.days:,.0f} raw objects a day into "
                     f"{len(inventory.bundles) / inventory.days:,.1f} bundles a day (median "
                     f"{int(np.median(inventory.bundles)):,} bytes)")
        under = int((inventory.bundles < SMALL_OBJECT_BYTES).sum())
        if under:
            notes.append(f"{under} of {len(inventory.bundles)} bundles are under 128 KB (quiet account-regions): "
                         "billed as 128 KB in IA / Glacier IR, and not moved by lifecycle transitions")
    for scenario in plan.scenarios:
        early = sum(v for k, v in scenario.components.items() if k.startswith("early deletion"))
        if early:
            notes.append(f"{scenario.name}: {early:,.2f} {prices.currency} of early-deletion charges over "
                         f"{plan.years} years (objects leave a class before its minimum duration)")
    as_is, best = plan.scenario(AS_IS), min(plan.scenarios, key=lambda s: s.total)
    delivery = as_is.components.get(DELIVERY, 0.0)
    if as_is.total and delivery / as_is.total > 0.25:
        notes.append(f"CloudTrail's own PUT requests are {delivery / as_is.total:.0%} of the as-is cost and the same "
                     "in every scenario: no retention choice reduces them")
    if best.name != AS_IS and as_is.total:
        notes.append(f"cheapest over {plan.years} years: {best.name}, {1 - best.total / as_is.total:.0%} less "
                     "than keeping the archive as is")
    notes.append(f"prices from {prices.path}: indicative; check them against the S3 pricing page")
    return notes

