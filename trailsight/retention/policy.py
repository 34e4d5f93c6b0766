"""The retention policy: one TOML file says how long raw logs, their bundles and the lake are kept, and where.

Every duration counts days from a raw file's delivery date (its date folder), so one number means the same
thing to `archive`, to the bucket's lifecycle rules and to the cost plan. The file is checked as a whole when
loaded; a mistake is reported as one line naming the section, the key and what to write instead.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from trailsight.errors import PolicyError
from trailsight.resources import package_folder

DEFAULT_POLICY = package_folder("trailsight.retention") / "retention.toml"

# S3 moves objects only "down" this list (the lifecycle waterfall). INTELLIGENT_TIERING is left out on purpose:
# it never tiers objects under 128 KB and bills monitoring per object, so it does not help small log files.
STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
"""Classes whose objects must be restored (asynchronously) before they can be read."""
INFREQUENT_ACCESS_CLASSES = frozenset({"STANDARD_IA", "ONEZONE_IA"})
"""S3 transitions objects into these only after 30 days in their current class."""
MINIMUM_OBJECT_SIZE_SETTINGS = ("all_storage_classes_128K", "varies_by_storage_class")
RESTORE_TIERS = ("Bulk", "Standard", "Expedited")
RAW_PREFIX = "AWSLogs/"


@dataclass(frozen=True)
class Transition:
    """Bundles move to `storage_class` once `after_days` have passed since delivery."""

    after_days: int
    storage_class: str


@dataclass(frozen=True)
class Policy:
    """A validated retention policy (see retention.toml for what each value means)."""

    path: str
    keep_as_delivered_days: int
    retain_days: int
    bundle_storage_class: str
    transitions: tuple[Transition, ...]
    archive_prefix: str
    allow_quarantined_records: bool
    restore_days: int
    restore_tier: str
    lake_keep_days: int
    rule_id_prefix: str
    abort_incomplete_multipart_days: int
    noncurrent_version_days: int
    minimum_object_size: str

    @property
    def bundles_prefix(self) -> str:
        return f"{self.archive_prefix}bundles/"

    @property
    def manifests_prefix(self) -> str:
        return f"{self.archive_prefix}manifests/"

    def earliest_archive_date(self, day: date) -> date:
        """The first date on which the files delivered on `day` may be compacted."""
        return day + timedelta(days=self.keep_as_delivered_days)

    def bundle_tiers(self) -> tuple[Transition, ...]:
        """Where a bundle is over its life: written at `keep_as_delivered_days`, then each transition."""
        return (Transition(self.keep_as_delivered_days, self.bundle_storage_class), *self.transitions)

    def bundle_class_at(self, age_days: int) -> str | None:
        """Storage class of a bundle whose files were delivered `age_days` ago; None once expired or not yet made."""
        if age_days < self.keep_as_delivered_days or (self.retain_days and age_days >= self.retain_days):
            return None
        current = self.bundle_storage_class
        for transition in self.transitions:
            if age_days >= transition.after_days:
                current = transition.storage_class
        return current


# --- reading the file ------------------------------------------------------------------------------------


class TableReader:
    """One TOML table, read key by key; whatever is left unread at the end is an unknown key."""

    def __init__(self, path: str, name: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise PolicyError(f"{path}: [{name}] must be a table, not {type(table).__name__}; write it as [{name}]")
        self.path, self.name, self.table = path, name, dict(table)
        self.known: list[str] = []

    def _where(self, key: str) -> str:
        return f"{self.path}: [{self.name}] {key}"

    def take(self, key: str, default: Any) -> Any:
        self.known.append(key)
        if key in self.table:
            return self.table.pop(key)
        if default is REQUIRED:
            other = next(iter(self.table), None)
            if other is not None:  # a misspelt key explains a missing one better than "missing" does
                raise PolicyError(f"{self._where(other)} is not a setting{did_you_mean(other, [key, *self.known])}; "
                                  f"{key} is missing")
            raise PolicyError(f"{self._where(key)} is missing; add `{key} = ...` to the [{self.name}] table")
        return default

    def integer(self, key: str, default: Any, minimum: int = 0) -> int:
        value = self.take(key, default)
        if type(value) is not int:
            raise PolicyError(f"{self._where(key)} must be a whole number, not {value!r}")
        if value < minimum:
            raise PolicyError(f"{self._where(key)} is {value}; it must be at least {minimum}")
        return value

    def number(self, key: str, default: Any, minimum: float = 0.0) -> float:
        value = self.take(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise PolicyError(f"{self._where(key)} must be a number >= {minimum:g}, not {value!r}")
        return float(value)

    def boolean(self, key: str, default: Any) -> bool:
        value = self.take(key, default)
        if type(value) is not bool:
            raise PolicyError(f"{self._where(key)} must be true or false, not {value!r}")
        return value

    def text(self, key: str, default: Any) -> str:
        value = self.take(key, default)
        if not isinstance(value, str):
            raise PolicyError(f"{self._where(key)} must be a string, not {value!r}")
        return value

    def choice(self, key: str, default: Any, choices: tuple[str, ...]) -> str:
        return check_choice(self.text(key, default), choices, self._where(key))

    def array(self, key: str) -> list[Any]:
        value = self.take(key, [])
        if not isinstance(value, list):
            raise PolicyError(f"{self._where(key)} must be an array of tables, e.g. "
                              f"{key} = [{{ after_days = 365, storage_class = \"DEEP_ARCHIVE\" }}]")
        return value

    def done(self) -> None:
        """Refuse whatever was not read: a misspelt key must not be silently ignored."""
        unknown = next(iter(self.table), None)
        if unknown is not None:
            raise PolicyError(f"{self._where(unknown)} is not a setting{did_you_mean(unknown, self.known)}; "
                              f"known keys: {', '.join(self.known)}")


REQUIRED = object()


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_choice(value: str, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        hint = did_you_mean(value, choices) or did_you_mean(value.upper(), choices)
        raise PolicyError(f"{where} is {value!r}{hint}; use one of {', '.join(choices)}")
    return value


def _prefix(value: str, where: str) -> str:
    """A relative folder prefix ending with `/`."""
    parts = value.strip("/").split("/")
    if not value.strip("/") or value.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PolicyError(f"{where} {value!r} must be a relative folder such as \"trailsight-archive/\"")
    if parts[0] == RAW_PREFIX.rstrip("/"):
        raise PolicyError(f"{where} {value!r} is inside AWSLogs/, where CloudTrail delivers; "
                          "choose a folder beside it, e.g. \"trailsight-archive/\"")
    return "/".join(parts) + "/"


SECTIONS = ("raw", "bundles", "lake", "lifecycle")


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate a policy file (default: the retention.toml shipped with trailsight)."""
    file = Path(path) if path else DEFAULT_POLICY
    data = read_toml(file, f"no retention policy at {file}; write one with `trailsight retention defaults > "
                           "retention.toml` and edit it")
    return policy_from_dict(data, str(file))


def read_toml(file: Path, missing: str) -> dict[str, Any]:
    """A TOML file's values; a missing file raises `missing`, a broken one names the line to fix."""
    try:
        return tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise PolicyError(missing) from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{file} is not valid TOML ({exc}); fix the line it names") from None


def policy_from_dict(data: dict[str, Any], path: str = "policy") -> Policy:
    """Validate policy values already parsed from TOML (tests build policies this way)."""
    for name in data:
        if name not in SECTIONS:
            raise PolicyError(f"{path}: [{name}] is not a section{did_you_mean(name, SECTIONS)}; "
                              f"sections are {', '.join(f'[{s}]' for s in SECTIONS)}")
    raw = TableReader(path, "raw", data.get("raw", {}))
    keep = raw.integer("keep_as_delivered_days", REQUIRED, minimum=1)
    retain = raw.integer("retain_days", REQUIRED)
    raw.done()
    if retain and retain <= keep:
        raise PolicyError(f"{path}: [raw] retain_days ({retain}) must be longer than keep_as_delivered_days "
                          f"({keep}), or 0 to keep raw data forever")

    bundles = TableReader(path, "bundles", data.get("bundles", {}))
    storage_class = bundles.choice("storage_class", REQUIRED, STORAGE_CLASSES)
    transitions = _transitions(path, bundles.array("transitions"), keep, retain, storage_class)
    archive_prefix = _prefix(bundles.text("prefix", "trailsight-archive/"), f"{path}: [bundles] prefix")
    allow_quarantined = bundles.boolean("allow_quarantined_records", True)
    restore_days = bundles.integer("restore_days", 7, minimum=1)
    restore_tier = bundles.choice("restore_tier", "Bulk", RESTORE_TIERS)
    bundles.done()
    classes = {storage_class, *(t.storage_class for t in transitions)}
    if restore_tier == "Expedited" and "DEEP_ARCHIVE" in classes:
        raise PolicyError(f"{path}: [bundles] restore_tier Expedited is not offered for DEEP_ARCHIVE; "
                          "use Standard or Bulk")

    lake = TableReader(path, "lake", data.get("lake", {}))
    lake_keep = lake.integer("keep_days", 0)
    lake.done()
    if lake_keep and lake_keep <= keep:
        raise PolicyError(f"{path}: [lake] keep_days ({lake_keep}) must be longer than [raw] "
                          f"keep_as_delivered_days ({keep}): a day is verified against the lake before its raw "
                          "files are compacted; raise keep_days or use 0 to keep the lake forever")

    lifecycle = TableReader(path, "lifecycle", data.get("lifecycle", {}))
    rule_id_prefix = lifecycle.text("rule_id_prefix", "trailsight-")
    if not rule_id_prefix.strip() or len(rule_id_prefix) > 120:
        raise PolicyError(f"{path}: [lifecycle] rule_id_prefix must be 1 to 120 characters, e.g. \"trailsight-\"")
    abort_days = lifecycle.integer("abort_incomplete_multipart_upload_days", 7)
    noncurrent_days = lifecycle.integer("noncurrent_version_expiration_days", 30)
    minimum_size = lifecycle.choice("transition_default_minimum_object_size", "all_storage_classes_128K",
                                    MINIMUM_OBJECT_SIZE_SETTINGS)
    lifecycle.done()

    return Policy(
        path=path, keep_as_delivered_days=keep, retain_days=retain, bundle_storage_class=storage_class,
        transitions=transitions, archive_prefix=archive_prefix, allow_quarantined_records=allow_quarantined,
        restore_days=restore_days, restore_tier=restore_tier, lake_keep_days=lake_keep,
        rule_id_prefix=rule_id_prefix, abort_incomplete_multipart_days=abort_days,
        noncurrent_version_days=noncurrent_days, minimum_object_size=minimum_size,
    )


def _transitions(path: str, items: list[Any], keep: int, retain: int, first_class: str) -> tuple[Transition, ...]:
    """Later moves of the bundles: each later than the previous, each to a colder class, all before expiry."""
    result: list[Transition] = []
    previous_day, previous_class = keep, first_class
    for number, item in enumerate(items, start=1):
        section = TableReader(path, f"bundles.transitions #{number}", item)
        after = section.integer("after_days", REQUIRED, minimum=1)
        target = section.choice("storage_class", REQUIRED, STORAGE_CLASSES)
        section.done()
        where = f"{path}: [bundles] transition #{number}"
        if after <= previous_day:
            raise PolicyError(f"{where} after_days ({after}) must be later than {previous_day} (the bundle is made "
                              f"at keep_as_delivered_days, and transitions go in order)")
        if STORAGE_CLASSES.index(target) <= STORAGE_CLASSES.index(previous_class):
            raise PolicyError(f"{where} moves from {previous_class} to {target}; S3 only moves objects to a colder "
                              f"class ({' > '.join(STORAGE_CLASSES)})")
        if target in INFREQUENT_ACCESS_CLASSES and after - keep < 30:
            raise PolicyError(f"{where} moves bundles to {target} {after - keep} days after they are made; S3 "
                              f"needs at least 30, so use after_days >= {keep + 30}")
        if retain and after >= retain:
            raise PolicyError(f"{where} after_days ({after}) is not before retain_days ({retain}); drop it or "
                              "move it earlier")
        result.append(Transition(after, target))
        previous_day, previous_class = after, target
    return tuple(result)
