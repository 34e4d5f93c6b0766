"""Stage 1, discovery: find CloudTrail objects under an archive root for a range of delivery dates.

The layout is `[prefix/]AWSLogs/[o-ORGID/]ACCOUNT/<kind>/REGION/YYYY/MM/DD/<file>`. Listing descends the
layout level by level, so only the accounts, regions and date folders asked for are ever listed.
Log files are parsed as events; digests, Insights files and anything else are recognised and set aside.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from trailsight.errors import UsageError
from trailsight.storage.store import ObjectInfo, Storage, io_threads

MAX_PREFIX_DEPTH = 4
ORG_ID = re.compile(r"^o-[a-z0-9]{10,32}$")
DATE_DIRS = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/")
DELIVERY_STAMP = re.compile(r"_(\d{8}T\d{4,6}Z)_")


class ObjectKind(StrEnum):
    LOG = "CloudTrail"
    DIGEST = "CloudTrail-Digest"
    INSIGHT = "CloudTrail-Insight"
    OTHER = "other"


@dataclass(frozen=True)
class LogObject:
    """A CloudTrail object found in an archive, with what its key says about it."""

    key: str
    size: int
    kind: ObjectKind
    account: str
    region: str
    delivery_date: date | None
    delivered_at: datetime | None
    organization: str | None = None

    @property
    def is_event_file(self) -> bool:
        """Log and Insights files hold `{"Records": [...]}` and are converted; nothing else is."""
        return self.kind in (ObjectKind.LOG, ObjectKind.INSIGHT) and self.key.endswith((".json.gz", ".json"))


@dataclass
class Discovery:
    """What a listing found, grouped by what will be done with it."""

    event_files: list[LogObject]
    digests: list[LogObject]
    others: list[LogObject]
    skipped: list[tuple[LogObject, str]] = field(default_factory=list)
    """Objects that look like log files but cannot be taken, each with the reason (never silently dropped)."""


def delivery_time(name: str) -> datetime | None:
    """Delivery timestamp written in a CloudTrail file name (`..._20240101T0005Z_...`), if any."""
    match = DELIVERY_STAMP.search(name)
    if not match:
        return None
    stamp = match.group(1)
    fmt = "%Y%m%dT%H%M%SZ" if len(stamp) == 16 else "%Y%m%dT%H%MZ"
    try:
        return datetime.strptime(stamp, fmt).replace(tzinfo=UTC)
    except ValueError:
        return None


def _child(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def inside_awslogs_hint(url: str) -> str | None:
    """What to pass instead when `url` points inside an archive (an account, region or date folder), else None.

    >>> inside_awslogs_hint("s3://b/AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01")
    '--source s3://b --account 111122223333 --region us-east-1 --date 2024-05-01'
    """
    parts = url.rstrip("/").split("/")
    if "AWSLogs" not in parts[:-1]:
        return None
    at = len(parts) - 1 - parts[::-1].index("AWSLogs")
    root = "/".join(parts[:at]) or "."
    rest = parts[at + 1:]
    if rest and ORG_ID.match(rest[0]):
        rest = rest[1:]
    hint = [f"--source {root}"]
    if rest:
        hint.append(f"--account {rest[0]}")
    if len(rest) > 2:
        hint.append(f"--region {rest[2]}")
    if len(rest) > 5:
        hint.append(f"--date {rest[3]}-{rest[4]}-{rest[5]}")
    return " ".join(hint)


def find_awslogs_roots(storage: Storage) -> list[str]:
    """Keys of every `AWSLogs` folder at the root or under a prefix of up to MAX_PREFIX_DEPTH levels."""
    if storage.root.rstrip("/").endswith("/AWSLogs") or storage.root == "AWSLogs":
        return [""]
    found: list[str] = []
    level = [""]
    for _ in range(MAX_PREFIX_DEPTH + 1):
        next_level = []
        for key in level:
            for name in storage.list_dirs(key):
                child = _child(key, name)
                if name == "AWSLogs":
                    found.append(child)
                else:
                    next_level.append(child)
        if found or not next_level:
            break
        level = next_level
    return found


def _account_dirs(storage: Storage, awslogs: str) -> Iterator[tuple[str, str, str | None]]:
    """(key, account, organization) of each account folder, looking inside organization folders."""
    names = storage.list_dirs(awslogs)
    orgs = [name for name in names if ORG_ID.match(name)]
    inside = dict(zip(orgs, _listed(storage, [_child(awslogs, org) for org in orgs]), strict=True))
    for name in names:
        if name in inside:
            for account in inside[name]:
                yield f"{_child(awslogs, name)}/{account}", account, name
        else:
            yield _child(awslogs, name), name, None


def _listed(storage: Storage, keys: list[str]) -> list[list[str]]:
    """The sub-folders of each key, listed at the same time: each LIST is a round trip to S3."""
    if storage.is_local or len(keys) < 2:
        return [storage.list_dirs(key) for key in keys]
    with io_threads() as pool:
        return list(pool.map(storage.list_dirs, keys))


def _files_listed(storage: Storage, keys: list[str]) -> list[list[ObjectInfo]]:
    """The objects under each key, listed at the same time."""
    def files(key: str) -> list[ObjectInfo]:
        return list(storage.list_files(key))

    if storage.is_local or len(keys) < 2:
        return [files(key) for key in keys]
    with io_threads() as pool:
        return list(pool.map(files, keys))


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _classify(info_key: str, size: int, kind: ObjectKind, account: str, region: str, org: str | None,
              rest: str) -> LogObject:
    match = DATE_DIRS.match(rest)
    folder_date = date(int(match[1]), int(match[2]), int(match[3])) if match else None
    name = rest.rsplit("/", 1)[-1]
    if kind is not ObjectKind.OTHER and not (match and "/" not in rest[len(match[0]):]):
        kind = ObjectKind.OTHER
    if kind is ObjectKind.DIGEST and not name.endswith(".json.gz"):
        kind = ObjectKind.OTHER  # e.g. the `.signature` sidecar a local copy keeps beside each digest
    return LogObject(info_key, size, kind, account, region, folder_date, delivery_time(name), org)


def _unreadable_name(key: str) -> str | None:
    """Why a key cannot be carried into the lake (its name is not text), or None."""
    try:
        key.encode()
    except UnicodeEncodeError:
        return ("its name is not valid UTF-8, so no lake column, report or bundle index can name it exactly; "
                "rename it (its content is untouched) and run again")
    return None


def discover(
    storage: Storage,
    start: date | None = None,
    end: date | None = None,
    accounts: Iterable[str] = (),
    regions: Iterable[str] = (),
) -> Discovery:
    """List the objects delivered between `start` and `end` (inclusive; both None means all dates)."""
    if (start is None) != (end is None):
        raise UsageError("give both a start and an end date, or neither")
    if start and end and start > end:
        raise UsageError(f"start date {start} is after end date {end}")
    storage.check_root()
    wanted_accounts, wanted_regions = set(accounts), set(regions)
    found = Discovery([], [], [])
    kinds = {k.value: k for k in ObjectKind if k is not ObjectKind.OTHER}
    hint = inside_awslogs_hint(storage.url)
    if hint:
        raise UsageError(f"{storage.url} is inside a CloudTrail archive; give the folder that holds AWSLogs/ and "
                         f"choose what to read with options: {hint}")
    # Level by level, each level's folders listed at once: an organisation trail has thousands of account and
    # region folders, and listing them one round trip after another took minutes (bench/scale_bench.py).
    account_dirs = [(key, account, org) for awslogs in find_awslogs_roots(storage)
                    for key, account, org in _account_dirs(storage, awslogs)
                    if not wanted_accounts or account in wanted_accounts]
    kind_names = _listed(storage, [key for key, _, _ in account_dirs])
    kind_dirs = [(f"{key}/{name}", kinds.get(name, ObjectKind.OTHER), account, org)
                 for (key, account, org), names in zip(account_dirs, kind_names, strict=True) for name in names]
    region_names = _listed(storage, [key for key, _, _, _ in kind_dirs])
    region_dirs = [(f"{key}/{region}", kind, account, region, org)
                   for (key, kind, account, org), regions in zip(kind_dirs, region_names, strict=True)
                   for region in regions if not wanted_regions or region in wanted_regions]
    folders = [(folder, region_dir) for region_dir in region_dirs
               for folder in ([f"{region_dir[0]}/{d:%Y/%m/%d}" for d in _days(start, end)] if start and end
                              else [region_dir[0]])]
    for (_, (region_key, kind, account, region, org)), infos in zip(
            folders, _files_listed(storage, [folder for folder, _ in folders]), strict=True):
        for info in infos:
            rest = info.key[len(region_key) + 1 :]
            obj = _classify(info.key, info.size, kind, account, region, org, rest)
            reason = _unreadable_name(info.key)
            if reason:
                found.skipped.append((obj, reason))
            elif obj.is_event_file:
                found.event_files.append(obj)
            elif obj.kind is ObjectKind.DIGEST:
                found.digests.append(obj)
            else:
                found.others.append(obj)
    return found
