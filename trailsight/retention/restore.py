"""Restore of a delivery day: the originals of its bundles put back byte for byte under their own keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from trailsight.errors import ArchivedObjectError, ArchiveError, StorageError
from trailsight.retention.archive import day_lock
from trailsight.retention.bundle import Member, bundle_group, day_path, group_parts, read_bundle
from trailsight.retention.bundle_store import BundleObject, BundleStore
from trailsight.retention.manifest import load_manifests
from trailsight.retention.policy import Policy, load_policy
from trailsight.storage.store import Storage, as_storage


@dataclass
class BundleRestore:
    key: str
    storage_class: str | None
    status: str  # restored | pending | failed
    files_written: int = 0
    files_present: int = 0
    files_superseded: int = 0  # originals rewritten after bundling: a later bundle holds the newer bytes
    detail: str = ""


@dataclass
class RestoreResult:
    """A restore of one delivery day. `status`: restored, pending (archive-class restores under way),
    failed, or nothing to restore."""

    day: date
    source: str
    target: str
    bundles: list[BundleRestore]

    @property
    def status(self) -> str:
        states = {b.status for b in self.bundles}
        if not states:
            return "nothing to restore"
        return "failed" if "failed" in states else "pending" if "pending" in states else "restored"

    @property
    def files_written(self) -> int:
        return sum(b.files_written for b in self.bundles)

    @property
    def files_present(self) -> int:
        return sum(b.files_present for b in self.bundles)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat(), "status": self.status,
                "files_written": self.files_written, "files_present": self.files_present}


def restore_day(source: str | Path | Storage, day: date, policy: Policy | None = None, *,
                target: str | Path | Storage | None = None, accounts: Iterable[str] = (),
                regions: Iterable[str] = (), overwrite: bool = False) -> RestoreResult:
    """Put the originals of a day's bundles back, byte for byte, under their own keys (in `target`, default the
    archive itself). Bundles in GLACIER / DEEP_ARCHIVE get an S3 restore request and are reported pending; run
    again once the restore has finished. Files already back are left alone, so re-running is cheap."""
    policy = policy or load_policy()
    source = as_storage(source)
    destination = as_storage(target) if target is not None else source
    if destination.url == source.url:
        with day_lock(source, policy, day, f"restore {day} of {source.url}"):
            return _restore_day(source, destination, day, policy, set(accounts), set(regions), overwrite)
    return _restore_day(source, destination, day, policy, set(accounts), set(regions), overwrite)


def _restore_day(source: Storage, destination: Storage, day: date, policy: Policy, wanted_accounts: set[str],
                 wanted_regions: set[str], overwrite: bool) -> RestoreResult:
    bundles = BundleStore(source)
    manifests = load_manifests(source, policy, day)
    found = []
    for obj in source.list_files(f"{policy.bundles_prefix}{day_path(day)}"):
        if not obj.key.endswith(".tar"):
            continue
        group, number = bundle_group(policy, day, obj.key)
        account, region = group_parts(group)
        if (wanted_accounts and account not in wanted_accounts) or (wanted_regions and region not in wanted_regions):
            continue
        found.append((group, number, obj.key))
    results = []
    for group, number, key in sorted(found):
        states = manifests[group].bundles if group in manifests else []
        newer = {m.key for state in states if state.number > number for m in state.files}
        results.append(_restore_bundle(bundles, key, destination, policy, overwrite, newer))
    return RestoreResult(day, source.url, destination.url, results)


def _restore_bundle(bundles: BundleStore, key: str, destination: Storage, policy: Policy,
                    overwrite: bool, newer: set[str]) -> BundleRestore:
    """Put one bundle's originals back; those that a later bundle holds in newer bytes are left to it."""
    found = bundles.head(key)
    if found is None:
        return BundleRestore(key, None, "failed", detail="the bundle disappeared while restoring; run again")
    result = BundleRestore(key, found.storage_class, "restored")
    if not found.readable:
        return _pending(bundles, key, found, policy, result)

    def put_back(member: Member, data: bytes) -> None:
        if member.key in newer:
            result.files_superseded += 1
            return
        if destination.exists(member.key):
            current = destination.read_bytes(member.key)
            if hashlib.sha256(current).hexdigest() == member.sha256:
                result.files_present += 1
                return
            if not overwrite:
                raise ArchiveError(f"{member.key} exists with different contents; move it away or restore with "
                                   "--overwrite")
        destination.write_bytes(member.key, data)
        result.files_written += 1

    try:
        with bundles.open(key) as stream:
            read_bundle(stream, key, put_back)
    except ArchivedObjectError:
        return _pending(bundles, key, BundleObject(found.size, found.sha256, found.storage_class, "none"), policy,
                        result)
    except (ArchiveError, StorageError) as exc:
        result.status, result.detail = "failed", str(exc)
    return result


def _pending(bundles: BundleStore, key: str, found: BundleObject, policy: Policy,
             result: BundleRestore) -> BundleRestore:
    result.status = "pending"
    if found.restore == "ongoing":
        result.detail = "S3 restore in progress; run the restore again later"
    else:
        bundles.request_restore(key, policy.restore_days, policy.restore_tier)
        result.detail = (f"S3 restore requested ({policy.restore_tier} tier, readable for {policy.restore_days} "
                         "days once done); run the restore again later")
    return result
