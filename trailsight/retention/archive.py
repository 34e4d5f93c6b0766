"""Archive a delivery day: verify it against the lake, compact it into bundles, then delete the originals.

Layout beside `AWSLogs/` under the archive root, with `<prefix>` from the policy (default `trailsight-archive/`):

  <prefix>bundles/YYYY/MM/DD/<group>.tar                           one bundle per delivery day, account and region
  <prefix>manifests/YYYY/MM/DD/<group>.json                        the group's state: bundles, files, checksums, phase
  <prefix>manifests/YYYY/MM/DD/<group>.<n>.verification.json.gz    per file: counts and the eventIDs found in the lake
  <prefix>locks/YYYY/MM/DD.lock                                    held while a run archives or restores the day

`<group>` is `[user prefix/][o-org/]ACCOUNT/REGION`. Files that arrive after a group was archived go into
`<group>.2.tar` and so on. A bundle is a plain tar whose first member, `trailsight-index.json`, lists every
original (key, size, SHA-256); the originals follow byte for byte under their own keys, so `tar -xf` rebuilds
the archive's tree too.

Each group moves through phases recorded in its manifest before the next step starts:
verified (files checked against the lake, bundle checksum known) -> uploaded (bundle written, read back and
its checksum matched) -> done (originals deleted). A run that stops anywhere resumes from the recorded phase:
an uploaded bundle is never written twice, an original is deleted only once its bundle is confirmed and only
while it still holds the bytes bundled (a rewritten original stays, and the next run bundles it as `<group>.<n>`),
and a day with any file failing verification is left exactly as it was. The bundle format is in bundle.py,
verification in verify.py, manifests in manifest.py, restore in restore.py.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from trailsight.errors import ArchiveError, StorageError
from trailsight.lake.lock import lake_lock
from trailsight.retention.bundle import (
    Member,
    bundle_key,
    day_lock_key,
    group_parts,
    manifest_key,
    verification_key,
    write_bundle,
)
from trailsight.retention.bundle_store import BundleStore
from trailsight.retention.manifest import MANIFEST_FORMAT, BundleState, Manifest, load_manifests, write_manifest
from trailsight.retention.policy import Policy, load_policy
from trailsight.retention.verify import (
    GroupVerification,
    LakeIndex,
    group_files,
    read_in_order,
    read_tagged_in_order,
    verify_group,
)
from trailsight.source.discovery import LogObject, discover
from trailsight.storage.lock import describe_holder, pid_alive, storage_lock
from trailsight.storage.store import Storage, as_storage

MIN_BILLABLE_BYTES = 128 * 1024


TEMP_PREFIX = "trailsight-archive-"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class GroupArchive:
    """What happened to one (account, region) of the day."""

    group: str
    account: str
    region: str
    status: str  # archived | already archived | unverified | not touched
    files: int = 0
    bytes: int = 0
    records: int = 0
    in_lake: int = 0
    quarantined: int = 0
    bundles: list[str] = field(default_factory=list)
    bundle_bytes: int = 0
    storage_class: str | None = None
    files_deleted: int = 0
    steps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class ArchiveResult:
    """One day's archive run. `status` is archived, already archived, unverified or nothing to archive."""

    day: date
    source: str
    lake: str
    policy: str
    status: str
    groups: list[GroupArchive]

    @property
    def ok(self) -> bool:
        return self.status != "unverified"

    @property
    def files_deleted(self) -> int:
        return sum(g.files_deleted for g in self.groups)

    @property
    def bundles_written(self) -> int:
        return sum(1 for g in self.groups for step in g.steps if step.startswith("wrote bundle"))

    @property
    def problems(self) -> list[str]:
        return [p for g in self.groups for p in g.problems]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat(), "ok": self.ok, "files_deleted": self.files_deleted,
                "bundles_written": self.bundles_written}


def archive_day(source: str | Path | Storage, lake: str | Path | Storage, day: date, policy: Policy | None = None,
                *, today: date | None = None, force: bool = False, workdir: str | Path | None = None,
                ) -> ArchiveResult:
    """Verify the day's raw files against the lake, bundle them per account and region, then delete them.

    Refuses days still inside the policy's as-delivered period unless `force`. Holds the source day's lock (no
    other archive or restore of that day interleaves) and the lake's lock (no ingest changes the lake while it is
    being checked). Safe to run again at any time.
    """
    policy = policy or load_policy()
    source, lake = as_storage(source), as_storage(lake)
    today = today or datetime.now(UTC).date()
    earliest = policy.earliest_archive_date(day)
    if today < earliest and not force:
        raise ArchiveError(f"{day} is inside the policy's {policy.keep_as_delivered_days} days as delivered; "
                           f"archive it on or after {earliest} (or pass --force)")
    purpose = f"archive {day} of {source.url} against {lake.url}"
    parent = Path(workdir) if workdir else Path(tempfile.gettempdir())
    remove_dead_runs_folders(parent)
    with day_lock(source, policy, day, purpose), lake_lock(lake, purpose), \
            tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=parent) as temp:
        return _Archive(source, lake, day, policy, Path(temp)).run()


@contextmanager
def day_lock(source: Storage, policy: Policy, day: date, purpose: str) -> Iterator[None]:
    """Hold the lock of one delivery day of the raw archive (beside its bundles): two runs archiving one source
    day, whatever lake each checks against, would otherwise list, bundle and delete over each other."""
    key = day_lock_key(policy, day)

    def refused(holder: dict[str, Any]) -> ArchiveError:
        return ArchiveError(f"delivery day {day} of {source.url} is being archived or restored by another run "
                            f"({describe_holder(holder)}); wait for it to finish, or delete {source.path(key)} if "
                            "that process is gone")

    with storage_lock(source, key, purpose, refused):
        yield


def remove_dead_runs_folders(parent: Path) -> None:
    """Remove the temporary folders (copies of raw files) of archive runs that were killed."""
    for stale in parent.glob(f"{TEMP_PREFIX}*"):
        pid = stale.name.removeprefix(TEMP_PREFIX).split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


class _Archive:
    """One archive run over one delivery day."""

    def __init__(self, source: Storage, lake: Storage, day: date, policy: Policy, temp: Path) -> None:
        self.source, self.lake, self.day, self.policy, self.temp = source, lake, day, policy, temp
        self.bundles = BundleStore(source)
        self.tar_paths: dict[str, Path] = {}
        # Tags (see Storage.read_tagged) of the originals' bytes read by this run, by (key, SHA-256): an original
        # is deleted only while it still holds bytes a confirmed bundle holds.
        self.tags: dict[tuple[str, str], str] = {}

    def _bundled_copies(self, manifest: Manifest | None, present: list[LogObject]) -> set[str]:
        """Keys on disk whose bytes are already in one of the group's bundles (a crash before their deletion, or
        a restore). Any other file, a rewritten original too, is new: it gets verified and bundled."""
        versions: dict[str, set[tuple[int, str]]] = {}
        for state in manifest.bundles if manifest else []:
            for member in state.files:
                versions.setdefault(member.key, set()).add((member.size, member.sha256))
        candidates = [o.key for o in present if any(size == o.size for size, _ in versions.get(o.key, ()))]
        copies = set()
        for key, data, tag in read_tagged_in_order(self.source, candidates):
            sha = hashlib.sha256(data).hexdigest()
            if (len(data), sha) in versions[key]:
                self.tags[(key, sha)] = tag
                copies.add(key)
        return copies

    def _drop_unwritten(self, manifest: Manifest, bundled: set[str], result: GroupArchive) -> bool:
        """Forget bundles verified but never written whose originals changed or went since (they could never be
        rebuilt): nothing of theirs was deleted, and their files are verified afresh."""
        dropped = [state for state in manifest.bundles if state.phase == "verified"
                   and any(m.key not in bundled for m in state.files) and self.bundles.head(state.key) is None]
        for state in dropped:
            manifest.bundles.remove(state)
            result.steps.append(f"dropped bundle {state.key}, verified but never written: its originals changed "
                                "since; they are verified afresh")
        if dropped:
            write_manifest(self.source, self._manifest_key(manifest), manifest)
        return bool(dropped)

    def run(self) -> ArchiveResult:
        found = discover(self.source, self.day, self.day)
        present = group_files(found.event_files)
        manifests = load_manifests(self.source, self.policy, self.day)
        results: dict[str, GroupArchive] = {}
        new_files: dict[str, list[LogObject]] = {}
        for group in sorted(set(present) | set(manifests)):
            account, region = group_parts(group)
            results[group] = GroupArchive(group, account, region, "not touched")
            bundled = self._bundled_copies(manifests.get(group), present.get(group, []))
            if group in manifests and self._drop_unwritten(manifests[group], bundled, results[group]):
                bundled = self._bundled_copies(manifests[group], present.get(group, []))
            fresh = [obj for obj in present.get(group, []) if obj.key not in bundled]
            if fresh:
                new_files[group] = fresh

        # 1. Verify every new file of the day before anything is written: a failing day stays as it is.
        checks: dict[str, GroupVerification] = {}
        folders: dict[str, Path] = {}
        index = LakeIndex(self.lake)
        for number, (group, files) in enumerate(sorted(new_files.items())):
            folders[group] = self.temp / str(number)
            folders[group].mkdir()
            checks[group] = verify_group(self.source, index, self.policy, group, files, keep_in=folders[group],
                                         tags=self.tags)
            results[group].problems += [f.problem for f in checks[group].files if f.problem]
        if any(r.problems for r in results.values()):
            for result in results.values():
                result.status = "unverified" if result.problems else "not touched"
            return self._result("unverified", results)

        # 2. Finish what earlier runs started, then bundle the new files, group by group.
        for group, result in results.items():
            manifest = manifests.get(group) or Manifest(self.day.isoformat(), group)
            on_disk = {o.key: o for o in present.get(group, [])}
            for state in manifest.bundles:
                self._finish(manifest, state, on_disk, result)
            if group in checks:
                state = self._new_bundle(manifest, checks[group], new_files[group], folders[group], result)
                self._finish(manifest, state, on_disk, result)
            self._describe(manifest, result)
        if not new_files and not any(g.steps for g in results.values()):
            status = "already archived" if results else "nothing to archive"
        else:
            status = "archived"
        return self._result(status, results)

    def _result(self, status: str, results: dict[str, GroupArchive]) -> ArchiveResult:
        return ArchiveResult(self.day, self.source.url, self.lake.url, self.policy.path, status,
                             [results[g] for g in sorted(results)])

    def _manifest_key(self, manifest: Manifest) -> str:
        return manifest_key(self.policy, self.day, manifest.group)

    def _new_bundle(self, manifest: Manifest, check: GroupVerification, files: list[LogObject], folder: Path,
                    result: GroupArchive) -> BundleState:
        """Build the bundle from the verified bytes, record it (phase verified) and its verification."""
        number = max((b.number for b in manifest.bundles), default=0) + 1
        ordered = sorted(files, key=lambda o: o.key)
        members = [Member(f.key, f.size, f.sha256, int(o.delivered_at.timestamp()) if o.delivered_at else 0)
                   for f, o in zip(check.files, ordered, strict=True)]
        paths = {m.key: folder / str(i) for i, m in enumerate(members)}
        tar_path = folder / "bundle.tar"
        with open(tar_path, "wb") as out:
            sha, size = write_bundle(out, members, lambda m: paths[m.key].read_bytes(), self._header(manifest))
        state = BundleState(number, bundle_key(self.policy, self.day, manifest.group, number), "verified",
                            self.policy.bundle_storage_class, sha, size, members, check.totals(),
                            verification_key(self.policy, self.day, manifest.group, number), {"verified": _now()})
        record = {"format": MANIFEST_FORMAT, "day": self.day.isoformat(), "group": manifest.group,
                  "bundle": state.key, "lake": self.lake.url, "verified_at": state.times["verified"],
                  "totals": state.events, "files": [asdict(f) for f in check.files]}
        self.source.write_bytes(state.verification, _gzip(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)))
        manifest.bundles.append(state)
        write_manifest(self.source, self._manifest_key(manifest), manifest)
        result.steps.append(f"verified {len(members)} files ({state.events['in_lake']:,} events in the lake, "
                            f"{state.events['quarantined']:,} in quarantine)")
        self.tar_paths[state.key] = tar_path
        return state

    def _header(self, manifest: Manifest) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "group": manifest.group}

    def _finish(self, manifest: Manifest, state: BundleState, on_disk: dict[str, LogObject],
                result: GroupArchive) -> None:
        """Take one bundle from its recorded phase to done; each phase is recorded before the next starts."""
        if state.phase == "verified":
            found = self.bundles.head(state.key)
            if found is not None and found.sha256 == state.sha256 and found.size == state.size:
                how = self.bundles.confirm(state.key, state.sha256, state.size, state.storage_class)
                result.steps.append(f"found bundle {state.key} already written ({how})")
            else:
                tar_path = self.tar_paths.get(state.key) or self._rebuild(manifest, state)
                how = self.bundles.put(state.key, tar_path, state.sha256, state.storage_class)
                result.steps.append(f"wrote bundle {state.key} ({state.size:,} bytes; {how})")
            state.phase, state.times["uploaded"] = "uploaded", _now()
            write_manifest(self.source, self._manifest_key(manifest), manifest)
        leftovers = [m for m in state.files if m.key in on_disk and (m.key, m.sha256) in self.tags]
        if state.phase == "uploaded" or leftovers:
            if leftovers:
                how = self.bundles.confirm(state.key, state.sha256, state.size, state.storage_class)
                try:
                    kept = set(self.source.delete_if({m.key: self.tags[(m.key, m.sha256)] for m in leftovers}))
                except StorageError as exc:
                    raise StorageError(f"{exc}; the bundle is safe, run the archive again to finish") from None
                deleted = [m for m in leftovers if m.key not in kept]
                for member in deleted:
                    on_disk.pop(member.key)
                result.files_deleted += len(deleted)
                word = "deleted" if state.phase == "uploaded" else "deleted again (restored earlier)"
                result.steps.append(f"{word} {len(deleted)} originals of {state.key} (bundle {how})")
                if kept:
                    result.steps.append(f"kept {len(kept)} originals rewritten since they were read (e.g. "
                                        f"{min(kept)}); the next run bundles them")
            if state.phase != "done":
                state.phase, state.times["done"] = "done", _now()
                write_manifest(self.source, self._manifest_key(manifest), manifest)

    def _rebuild(self, manifest: Manifest, state: BundleState) -> Path:
        """Rebuild a bundle recorded as verified but never written (the run stopped); same bytes, same checksum."""
        tar_path = self.temp / f"rebuild-{state.number}-{uuid.uuid4().hex}.tar"
        try:
            contents = dict(read_in_order(self.source, [m.key for m in state.files]))
        except StorageError as exc:
            raise ArchiveError(f"an original of {state.key} (verified, not yet written) cannot be read ({exc}); put "
                               f"it back, or move {self._manifest_key(manifest)} away and archive again") from None
        with open(tar_path, "wb") as out:
            sha, size = write_bundle(out, state.files, lambda m: contents[m.key], self._header(manifest))
        if (sha, size) != (state.sha256, state.size):
            raise ArchiveError(f"rebuilt bundle {state.key} differs from the one verified; nothing was deleted, "
                               f"move {self._manifest_key(manifest)} away and archive the day again")
        return tar_path

    def _describe(self, manifest: Manifest, result: GroupArchive) -> None:
        result.bundles = [b.key for b in manifest.bundles]
        result.files = sum(len(b.files) for b in manifest.bundles)
        result.bytes = sum(m.size for b in manifest.bundles for m in b.files)
        result.bundle_bytes = sum(b.size for b in manifest.bundles)
        for name in ("records", "in_lake", "quarantined"):
            setattr(result, name, sum(b.events.get(name, 0) for b in manifest.bundles))
        result.storage_class = None if not self.source.has_storage_classes else (
            manifest.bundles[-1].storage_class if manifest.bundles else None)
        done = manifest.bundles and all(b.phase == "done" for b in manifest.bundles)
        result.status = ("archived" if result.steps else "already archived") if done else "not touched"
        small = [b.key for b in manifest.bundles if b.size < MIN_BILLABLE_BYTES]
        if small and result.steps:
            result.steps.append(f"note: {len(small)} bundle(s) under 128 KiB (few files that day); billed as 128 KiB "
                                "in IA / Glacier IR")


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)
