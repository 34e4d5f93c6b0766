"""Hourly chained CloudTrail digest files over the delivered log files, optionally signed with a test key."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
from isal import igzip

from trailsight.synth.delivery import _LogFile
from trailsight.synth.primitives import _SECONDS_PER_DAY, _day_epoch, _iso
from trailsight.synth.tunables import GZIP_LEVEL, SIGNATURE_ALGORITHM, UNSIGNED_SIGNATURE
from trailsight.synth.world import REGIONS, _World


class _DigestSigner:
    """Signing hook: the default leaves digests unsigned (an empty signature, the world's fingerprint).

    AWS signs SHA256withRSA over a string built from the document and stores the signature in S3 metadata;
    the chain (``previousDigestSignature``) threads the value through.
    """

    fingerprint: str | None = None  # the digestPublicKeyFingerprint to write; None keeps the world's

    def sign(self, doc: dict[str, Any], digest_bytes: bytes) -> str:
        return UNSIGNED_SIGNATURE


class _RsaDigestSigner(_DigestSigner):
    """Signs with a test RSA key exactly as CloudTrail does, so verification can be tested end to end."""

    def __init__(self, key_path: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        from trailsight.integrity.digests import public_key_fingerprint

        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{key_path} is not an RSA private key")
        self.key = key
        self.fingerprint = public_key_fingerprint(key.public_key())

    def sign(self, doc: dict[str, Any], digest_bytes: bytes) -> str:
        from trailsight.integrity.digests import sign_digest

        return sign_digest(self.key, doc, digest_bytes)


def _write_digests(
    world: _World,
    out: Path,
    prefix: str,
    day_list: list[date],
    files: list[_LogFile],
    signer: _DigestSigner | None = None,
) -> int:
    """Hourly chained digest files per account and region, one per hour even when empty."""
    signer = signer or _DigestSigner()
    by_unit: dict[tuple[str, str], list[_LogFile]] = {}
    for f in files:
        by_unit.setdefault((f.account, f.region), []).append(f)
    first = _day_epoch(day_list[0])
    last_delivery = max((f.delivered for f in files), default=_day_epoch(day_list[-1]) + _SECONDS_PER_DAY - 1)
    last_needed = max(last_delivery, _day_epoch(day_list[-1]) + _SECONDS_PER_DAY - 1)
    key_root = f"{prefix}/AWSLogs" if prefix else "AWSLogs"
    count = 0
    for acct in world.accounts:
        org = f"{acct.org_id}/" if acct.org_id else ""
        for region in REGIONS:
            unit_files = sorted(by_unit.get((acct.id, region), []), key=lambda f: (f.delivered, f.key))
            offset = acct.digest_offset_s[region]
            # The first period starts with the first day and ends `offset` seconds past 01:00; the
            # following ones are exactly one hour, like AWS's (e.g. 14:01:31 -> 15:01:31).
            start, end = first, first + 3600 + offset
            i = 0
            prev: tuple[str, str, str] | None = None  # (key, sha256, signature)
            while True:
                listed = []
                while i < len(unit_files) and unit_files[i].delivered < end:
                    listed.append(unit_files[i])
                    i += 1
                dt = datetime.fromtimestamp(end, UTC)
                folder = f"{key_root}/{org}{acct.id}/CloudTrail-Digest/{region}/{dt:%Y/%m/%d}"
                name = (
                    f"{acct.id}_CloudTrail-Digest_{region}_{acct.trail_name}_{acct.trail_home}_"
                    f"{dt:%Y%m%dT%H%M%SZ}.json.gz"
                )
                key = f"{folder}/{name}"
                doc = {
                    "awsAccountId": acct.id,
                    "digestStartTime": _iso(start),
                    "digestEndTime": _iso(end),
                    "digestS3Bucket": world.bucket,
                    "digestS3Object": key,
                    "digestPublicKeyFingerprint": signer.fingerprint or world.key_fingerprint,
                    "digestSignatureAlgorithm": SIGNATURE_ALGORITHM,
                    "newestEventTime": _iso(max(f.newest for f in listed)) if listed else None,
                    "oldestEventTime": _iso(min(f.oldest for f in listed)) if listed else None,
                    "previousDigestS3Bucket": world.bucket if prev else None,
                    "previousDigestS3Object": prev[0] if prev else None,
                    "previousDigestHashValue": prev[1] if prev else None,
                    "previousDigestHashAlgorithm": "SHA-256" if prev else None,
                    "previousDigestSignature": prev[2] if prev else None,
                    "logFiles": [
                        {
                            "s3Bucket": world.bucket,
                            "s3Object": f.key,
                            "hashValue": f.sha256,
                            "hashAlgorithm": "SHA-256",
                            "newestEventTime": _iso(f.newest),
                            "oldestEventTime": _iso(f.oldest),
                        }
                        for f in listed
                    ],
                }
                raw = orjson.dumps(doc)
                path = out / folder
                path.mkdir(parents=True, exist_ok=True)
                (path / name).write_bytes(igzip.compress(raw, GZIP_LEVEL, mtime=0))
                count += 1
                signature = signer.sign(doc, raw)
                if signature:
                    (path / f"{name}.signature").write_text(signature)
                prev = (key, hashlib.sha256(raw).hexdigest(), signature)
                if i >= len(unit_files) and end > last_needed:
                    break
                start, end = end, end + 3600
    return count
