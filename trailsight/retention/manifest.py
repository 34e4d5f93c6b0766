"""Each group's manifest: its bundles, their files and checksums, and the phase each bundle has reached."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import orjson

from trailsight.errors import ArchiveError
from trailsight.retention.bundle import Member, day_path
from trailsight.retention.policy import Policy
from trailsight.storage.store import Storage

MANIFEST_FORMAT = 1


@dataclass
class BundleState:
    """One bundle of a group, as recorded in the group's manifest."""

    number: int
    key: str
    phase: str  # verified | uploaded | done
    storage_class: str
    sha256: str
    size: int
    files: list[Member]
    events: dict[str, int]
    verification: str
    times: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "files": [asdict(m) for m in self.files]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleState:
        return cls(**{**data, "files": [Member(**m) for m in data["files"]]})


@dataclass
class Manifest:
    day: str
    group: str
    bundles: list[BundleState] = field(default_factory=list)

    def as_bytes(self) -> bytes:
        body = {"format": MANIFEST_FORMAT, "day": self.day, "group": self.group,
                "bundles": [b.as_dict() for b in self.bundles]}
        return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> Manifest:
        try:
            body = orjson.loads(data)
            return cls(body["day"], body["group"], [BundleState.from_dict(b) for b in body["bundles"]])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ArchiveError(f"manifest {key} is unreadable ({exc}); restore it from a backup or move it away "
                               "(its bundles stay listed under bundles/)") from None


def write_manifest(source: Storage, key: str, manifest: Manifest) -> None:
    source.write_bytes(key, manifest.as_bytes())


def load_manifests(source: Storage, policy: Policy, day: date) -> dict[str, Manifest]:
    folder = f"{policy.manifests_prefix}{day_path(day)}"
    manifests = {}
    for obj in source.list_files(folder):
        if obj.key.endswith(".json"):
            manifest = Manifest.from_bytes(source.read_bytes(obj.key), obj.key)
            manifests[manifest.group] = manifest
    return manifests
