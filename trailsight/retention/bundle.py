"""The bundle format and where bundles, manifests and verifications live.

A bundle is a plain tar whose first member, `trailsight-index.json`, lists every original (key, size, SHA-256);
the originals follow byte for byte under their own keys, so `tar -xf` rebuilds the archive's tree. Its bytes
depend only on its members, so a bundle rebuilt after a crash has the same checksum.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import IO, Any

import orjson

from trailsight.errors import ArchiveError
from trailsight.retention.policy import Policy
from trailsight.source.discovery import LogObject

INDEX_MEMBER = "trailsight-index.json"


BUNDLE_FORMAT = "trailsight-bundle/1"


TAR_BLOCK = 512


TAR_RECORD = 20 * TAR_BLOCK


def day_path(day: date) -> str:
    return f"{day:%Y/%m/%d}"


def group_of(obj: LogObject) -> str:
    """`[user prefix/][o-org/]ACCOUNT/REGION` of a raw file: the unit that gets one bundle per day."""
    root = obj.key.split("AWSLogs/", 1)[0]
    org = f"{obj.organization}/" if obj.organization else ""
    return f"{root}{org}{obj.account}/{obj.region}"


def group_parts(group: str) -> tuple[str, str]:
    """(account, region) of a group path."""
    parts = group.split("/")
    return parts[-2], parts[-1]


def bundle_key(policy: Policy, day: date, group: str, number: int = 1) -> str:
    suffix = "" if number == 1 else f".{number}"
    return f"{policy.bundles_prefix}{day_path(day)}/{group}{suffix}.tar"


def manifest_key(policy: Policy, day: date, group: str) -> str:
    return f"{policy.manifests_prefix}{day_path(day)}/{group}.json"


def day_lock_key(policy: Policy, day: date) -> str:
    return f"{policy.archive_prefix}locks/{day_path(day)}.lock"


def verification_key(policy: Policy, day: date, group: str, number: int) -> str:
    return f"{policy.manifests_prefix}{day_path(day)}/{group}.{number}.verification.json.gz"


_BUNDLE_NAME = re.compile(r"^(?P<group>.+?)(?:\.(?P<number>\d+))?\.tar$")


def bundle_group(policy: Policy, day: date, key: str) -> tuple[str, int]:
    rest = key[len(f"{policy.bundles_prefix}{day_path(day)}/"):]
    match = _BUNDLE_NAME.match(rest)
    if not match:
        raise ArchiveError(f"unexpected object {key} among the bundles; move it out of {policy.bundles_prefix}")
    return match["group"], int(match["number"] or 1)


@dataclass(frozen=True)
class Member:
    """One original inside a bundle."""

    key: str
    size: int
    sha256: str
    mtime: int = 0


def _tar_format(names: Iterable[str]) -> int:
    """USTAR (one 512-byte header per member) when every name fits its 255 characters, else PAX."""
    for name in names:
        try:
            tarfile.TarInfo(name).tobuf(tarfile.USTAR_FORMAT)
        except ValueError:
            return tarfile.PAX_FORMAT
    return tarfile.USTAR_FORMAT


def _tar_info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, mtime, 0o644, 0, 0, "", ""
    return info


def index_bytes(members: list[Member], header: dict[str, Any]) -> bytes:
    files = [{"key": m.key, "size": m.size, "sha256": m.sha256} for m in members]
    return orjson.dumps({"format": BUNDLE_FORMAT, **header, "files": files}, option=orjson.OPT_SORT_KEYS) + b"\n"


def estimated_bundle_size(sizes: Iterable[int], index_size: int) -> int:
    """Bytes of a bundle holding originals of these sizes (USTAR headers, 512-byte padding, 10 KiB records)."""
    body = TAR_BLOCK + index_size + (-index_size) % TAR_BLOCK
    for size in sizes:
        body += TAR_BLOCK + size + (-size) % TAR_BLOCK
    body += 2 * TAR_BLOCK
    return body + (-body) % TAR_RECORD


def planned_bundle_sizes(files: Iterable[LogObject]) -> list[int]:
    """Bytes of each bundle an archive would write for these raw files: one per delivery day and group, with
    its index. Costs are planned from this without reading a single file."""
    groups: dict[tuple[date | None, str], list[Member]] = {}
    for obj in files:
        groups.setdefault((obj.delivery_date, group_of(obj)), []).append(Member(obj.key, obj.size, "0" * 64))
    return [estimated_bundle_size((m.size for m in members),
                                  len(index_bytes(members, {"day": str(day), "group": group})))
            for (day, group), members in groups.items()]


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target, self.digest, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.target.write(view)
        self.digest.update(view)
        self.size += len(view)
        return len(view)


def write_bundle(out: IO[bytes], members: list[Member], read: Callable[[Member], bytes],
                 header: dict[str, Any]) -> tuple[str, int]:
    """Write the tar (index first, then each original in order); returns its SHA-256 and size.

    The bytes depend only on the members, so rebuilding a bundle after a crash gives the same checksum.
    """
    writer = _HashingWriter(out)
    index = index_bytes(members, header)
    with tarfile.open(fileobj=writer, mode="w|", format=_tar_format(m.key for m in members)) as tar:
        tar.addfile(_tar_info(INDEX_MEMBER, len(index), 0), io.BytesIO(index))
        for member in members:
            data = read(member)
            if len(data) != member.size or hashlib.sha256(data).hexdigest() != member.sha256:
                raise ArchiveError(f"{member.key} changed since it was verified; nothing was deleted, "
                                   "run the archive again to verify the day afresh")
            tar.addfile(_tar_info(member.key, member.size, member.mtime), io.BytesIO(data))
    return writer.digest.hexdigest(), writer.size


def read_bundle(stream: IO[bytes], name: str, on_member: Callable[[Member, bytes], None] | None = None,
                ) -> tuple[dict[str, Any], list[Member]]:
    """Read a bundle front to back, checking every original against the index; a damaged bundle raises."""
    damaged = f"bundle {name} is damaged"
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            first = tar.next()
            if first is None or first.name != INDEX_MEMBER:
                raise ArchiveError(f"{damaged}: its first member is not {INDEX_MEMBER}; keep the originals")
            index = orjson.loads(_member_bytes(tar, first))
            members = [Member(f["key"], f["size"], f["sha256"]) for f in index.get("files", [])]
            expected = {m.key: m for m in members}
            seen: set[str] = set()
            while (info := tar.next()) is not None:
                member = expected.get(info.name)
                if member is None or info.name in seen or not info.isfile():
                    raise ArchiveError(f"{damaged}: unexpected member {info.name}; keep the originals")
                data = _member_bytes(tar, info)
                if len(data) != member.size or hashlib.sha256(data).hexdigest() != member.sha256:
                    raise ArchiveError(f"{damaged}: {info.name} does not match its checksum; keep the originals")
                seen.add(info.name)
                if on_member:
                    on_member(member, data)
    except (tarfile.TarError, orjson.JSONDecodeError, KeyError, TypeError, EOFError) as exc:
        raise ArchiveError(f"{damaged} ({exc}); keep the originals and archive the day again") from None
    if len(seen) != len(members):
        raise ArchiveError(f"{damaged}: {len(members) - len(seen)} listed originals are missing; keep the originals")
    return index, members


def _member_bytes(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    if handle is None:
        raise ArchiveError(f"bundle member {info.name} is not a regular file")
    return handle.read()
