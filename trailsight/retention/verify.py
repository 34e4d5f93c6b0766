"""Verification of raw files against the lake: every event is in the lake, in its quarantine, or missing.

Read only; archiving deletes nothing until every file of a day passes.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from trailsight.convert.records import Partition, convert_object, signed_identity
from trailsight.lake.layout import QUARANTINE_PREFIX, check_lake_format, partition_hashes, partition_key
from trailsight.retention.bundle import group_of, group_parts
from trailsight.retention.policy import Policy, load_policy
from trailsight.source.discovery import LogObject, discover
from trailsight.storage.store import Storage, as_storage

READ_AHEAD = 8


class LakeIndex:
    """The eventhash values of the lake's partitions, read once each, and its quarantine entries."""

    def __init__(self, lake: Storage) -> None:
        check_lake_format(lake)
        self.lake = lake
        self.known: dict[Partition, np.ndarray] = {}

    def present(self, partition: Partition, hashes: np.ndarray) -> np.ndarray:
        known = self.known.get(partition)
        if known is None:
            known = self.known[partition] = partition_hashes(self.lake, partition)
        if not len(known):
            return np.zeros(len(hashes), dtype=bool)
        at = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
        return known[at] == hashes

    def quarantine(self, source_key: str) -> dict[str, Any] | None:
        key = f"{QUARANTINE_PREFIX}/{source_key}.quarantine.json"
        if not self.lake.exists(key):
            return None
        try:
            return orjson.loads(self.lake.read_bytes(key))
        except orjson.JSONDecodeError:
            return {"reason": "unreadable quarantine entry", "records": []}


@dataclass
class FileVerification:
    """One raw file checked against the lake: every record is in the lake, in quarantine, or missing."""

    key: str
    size: int
    sha256: str
    records: int = 0
    in_lake: int = 0
    quarantined: int = 0
    missing: int = 0
    whole_file_quarantined: bool = False
    problem: str | None = None
    event_ids: list[str] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_file(obj: LogObject, data: bytes, lake: LakeIndex, policy: Policy) -> FileVerification:
    """Convert the file as ingest does and look up each accepted event's eventhash in its lake partition."""
    day = obj.delivery_date
    ingest_hint = f"run `trailsight ingest --date {day}` and archive again"
    result = FileVerification(obj.key, len(data), hashlib.sha256(data).hexdigest())
    converted = convert_object(obj.key, data, obj.account, obj.region)
    entry = lake.quarantine(obj.key)
    result.records = converted.records_read
    if converted.file_error is not None:
        result.whole_file_quarantined = bool(entry and entry.get("reason"))
        if not result.whole_file_quarantined:
            result.problem = (f"{obj.key} cannot be converted ({converted.file_error}) and the lake has no "
                              f"quarantine entry for it; {ingest_hint}")
        elif not policy.allow_quarantined_records:
            result.problem = (f"{obj.key} is in the lake's quarantine and the policy does not allow archiving "
                              "quarantined records; fix it or set allow_quarantined_records = true")
        return result
    records = (entry or {}).get("records") or []
    excused_indexes = {r.get("index") for r in records}
    excused = np.array(sorted({signed_identity(converted.identities[i]) for i in excused_indexes
                               if isinstance(i, int) and 0 <= i < len(converted.identities)}),
                       dtype=np.int64)
    unexplained = [q.index for q in converted.quarantined if q.index not in excused_indexes]
    examples: list[str] = []
    for partition, table in sorted(converted.tables.items()):
        hashes = table.column("eventhash").to_numpy()
        found = lake.present(partition, hashes)
        set_aside = ~found & np.isin(hashes, excused)
        lost = ~found & ~set_aside
        event_ids = table.column("eventid").to_pylist()
        result.in_lake += int(found.sum())
        result.quarantined += int(set_aside.sum())
        result.missing += int(lost.sum())
        result.event_ids += [event_ids[i] for i in np.flatnonzero(found)]
        examples += [f"{event_ids[i]} in {partition_key(partition)}" for i in np.flatnonzero(lost)[:2]]
    result.quarantined += len(converted.quarantined) - len(unexplained)
    result.missing += len(unexplained)
    if result.missing:
        detail = f"e.g. eventID {examples[0]}" if examples else f"records {unexplained[:3]} are rejected now"
        result.problem = (f"{obj.key}: {result.missing} of {result.records} events are neither in the lake nor in "
                          f"its quarantine ({detail}); {ingest_hint}")
    elif result.quarantined and not policy.allow_quarantined_records:
        result.problem = (f"{obj.key}: {result.quarantined} records are in the lake's quarantine and the policy does "
                          "not allow archiving them; fix them or set allow_quarantined_records = true")
    return result


def read_in_order(storage: Storage, keys: list[str]) -> Iterator[tuple[str, bytes]]:
    """Read objects in order with a few reads in flight (latency, not bandwidth, bounds S3 reads)."""
    for key, (data, _) in _read_ahead(storage, keys, lambda k: (storage.read_bytes(k), "")):
        yield key, data


def read_tagged_in_order(storage: Storage, keys: list[str]) -> Iterator[tuple[str, bytes, str]]:
    """As `read_in_order`, with each object's tag (see Storage.read_tagged) for a later conditional delete."""
    for key, (data, tag) in _read_ahead(storage, keys, storage.read_tagged):
        yield key, data, tag


def _read_ahead(storage: Storage, keys: list[str], read: Callable[[str], tuple[bytes, str]],
                ) -> Iterator[tuple[str, tuple[bytes, str]]]:
    with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
        in_flight: deque[Future[tuple[bytes, str]]] = deque(pool.submit(read, k) for k in keys[:READ_AHEAD])
        for position, key in enumerate(keys):
            result = in_flight.popleft().result()
            if position + READ_AHEAD < len(keys):
                in_flight.append(pool.submit(read, keys[position + READ_AHEAD]))
            yield key, result


@dataclass
class GroupVerification:
    group: str
    account: str
    region: str
    files: list[FileVerification]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    def totals(self) -> dict[str, int]:
        counts = {name: sum(getattr(f, name) for f in self.files)
                  for name in ("records", "in_lake", "quarantined", "missing")}
        return {**counts, "files": len(self.files),
                "files_quarantined": sum(f.whole_file_quarantined for f in self.files)}


@dataclass
class DayVerification:
    """Whether every event of every raw file delivered on `day` is in the lake (read only; nothing is written)."""

    day: date
    source: str
    lake: str
    groups: list[GroupVerification]

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.groups)

    @property
    def problems(self) -> list[str]:
        return [f.problem for g in self.groups for f in g.files if f.problem]


def verify_group(source: Storage, lake: LakeIndex, policy: Policy, group: str, files: list[LogObject],
                  keep_in: Path | None = None, tags: dict[tuple[str, str], str] | None = None,
                  ) -> GroupVerification:
    """Verify a group's files. With `keep_in`, the bytes read are kept there (numbered in key order) to be
    bundled, and `tags` gets each file's tag by (key, SHA-256), so that only those bytes are ever deleted."""
    account, region = group_parts(group)
    checks = []
    objects = {o.key: o for o in files}
    for number, (key, data, tag) in enumerate(read_tagged_in_order(source, sorted(objects))):
        check = verify_file(objects[key], data, lake, policy)
        checks.append(check)
        if tags is not None:
            tags[(key, check.sha256)] = tag
        if keep_in is not None:
            (keep_in / str(number)).write_bytes(data)
    return GroupVerification(group, account, region, checks)


def group_files(files: Iterable[LogObject], accounts: Iterable[str] = (), regions: Iterable[str] = (),
                 ) -> dict[str, list[LogObject]]:
    wanted_accounts, wanted_regions = set(accounts), set(regions)
    groups: dict[str, list[LogObject]] = {}
    for obj in files:
        if (wanted_accounts and obj.account not in wanted_accounts) or (wanted_regions and obj.region not in
                                                                        wanted_regions):
            continue
        groups.setdefault(group_of(obj), []).append(obj)
    return groups


def verify_day(source: str | Path | Storage, lake: str | Path | Storage, day: date, policy: Policy | None = None,
               accounts: Iterable[str] = (), regions: Iterable[str] = ()) -> DayVerification:
    """Check every raw event file delivered on `day` against the lake, without changing anything."""
    policy = policy or load_policy()
    source, lake = as_storage(source), as_storage(lake)
    found = discover(source, day, day, accounts, regions)
    index = LakeIndex(lake)
    groups = [verify_group(source, index, policy, group, files)
              for group, files in sorted(group_files(found.event_files).items())]
    return DayVerification(day, source.url, lake.url, groups)
