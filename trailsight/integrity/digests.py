"""Digest verification: prove that a day's CloudTrail log files are the ones CloudTrail delivered.

CloudTrail writes one digest per hour per account, region and trail. A digest lists every log file delivered in
its hour with the SHA-256 of the file's *uncompressed* bytes, links to the previous digest (its key, the SHA-256
of its uncompressed bytes and its signature) and is signed with SHA256withRSA. `verify_digests` checks, for one
UTC delivery day:

- every log file listed by a digest covering the day exists and its uncompressed SHA-256 matches;
- every log file in the day's folders is listed by some digest (an extra file is reported);
- each chain (account, region, trail) links without a gap over the whole day: a deleted or unreadable digest,
  or a digest altered after the next one was written, is reported;
- when public keys are given, each digest's signature verifies.

Where the signature is: S3 keeps it in the digest object's metadata (`x-amz-meta-signature`, hex), which S3 copies
preserve. A local copy of a bucket loses object metadata, so for local folders the signature is read from a
sidecar file `<digest key>.signature` holding the same hex string (the generator writes one when it signs).
Metadata wins when both exist.

Public keys come from a file, since fetching them (`cloudtrail:ListPublicKeys`) needs AWS: a JSON object mapping
each `digestPublicKeyFingerprint` to a PEM public key, or the output of `aws cloudtrail list-public-keys`
(`{"PublicKeyList": [{"Fingerprint": ..., "Value": <base64 DER>}]}`) as it is.

Bad digests and bad files are findings in the result, never exceptions; only a source that cannot be listed or
read at all raises (`StorageError`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from trailsight.convert.records import DEFAULT_MAX_UNCOMPRESSED, inflate, inflate_chunks
from trailsight.errors import BadInput, StorageError, UsageError
from trailsight.source.discovery import LogObject, ObjectKind, discover
from trailsight.storage.store import Storage, as_storage

SIGNATURE_ALGORITHM = "SHA256withRSA"
SIGNATURE_SUFFIX = ".signature"
MAX_DIGEST_BYTES = 64 * 1024 * 1024
DEFAULT_WORKERS = 16
HASH_CHUNK = 1024 * 1024
_STAMP_AND_SUFFIX = len("_20240501T010131Z.json.gz")
_REQUIRED = ("digestS3Object", "digestStartTime", "digestEndTime", "logFiles")

PublicKeys = Mapping[str, rsa.RSAPublicKey]


class ProblemKind(StrEnum):
    """What can be wrong; each problem carries one of these."""

    MISSING_LOG = "missing-log"  # listed by a digest, absent from the source
    HASH_MISMATCH = "hash-mismatch"  # listed and present, but its content changed
    UNREADABLE_LOG = "unreadable-log"  # listed and present, but not a readable gzip file
    UNLISTED_LOG = "unlisted-log"  # in the day's log folders, listed by no digest
    NO_DIGESTS = "no-digests"  # an account and region with log files but no digest at all (validation off?)
    UNREADABLE_DIGEST = "unreadable-digest"  # not gzip, not JSON, or not shaped like a digest
    MOVED_DIGEST = "moved-digest"  # the digest names another location than where it is
    CHAIN_GAP = "chain-gap"  # a digest is missing, or part of the day is covered by none
    CHAIN_MISMATCH = "chain-mismatch"  # a digest differs from what the next digest recorded about it
    MISSING_SIGNATURE = "missing-signature"
    UNKNOWN_KEY = "unknown-public-key"
    BAD_SIGNATURE = "bad-signature"


@dataclass(frozen=True)
class DigestProblem:
    """One finding about one object (`key` is relative to the source root)."""

    kind: ProblemKind
    key: str
    detail: str


@dataclass
class DigestVerification:
    """The outcome for one source and day; `ok` is true when nothing was found wrong."""

    source: str
    day: str
    digests: int = 0  # digests read that cover part of the day
    chains: int = 0  # account/region/trail chains seen
    log_files_listed: int = 0  # distinct log files those digests list
    log_files_valid: int = 0  # of which present with the recorded SHA-256
    log_files_in_folders: int = 0  # log files in the day's folders
    signatures_checked: bool = False
    signatures_valid: int = 0
    problems: list[DigestProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        """Number of problems of each kind, for one-line summaries."""
        result: dict[str, int] = {}
        for problem in self.problems:
            result[problem.kind.value] = result.get(problem.kind.value, 0) + 1
        return result

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = [{"kind": p.kind.value, "key": p.key, "detail": p.detail} for p in self.problems]
        return {**data, "ok": self.ok, "problem_counts": self.counts()}


# --- signatures ------------------------------------------------------------------------------------------


def signing_string(doc: Mapping[str, Any], digest_bytes: bytes) -> bytes:
    """The data CloudTrail signs, as AWS documents it for custom validators.

    digestEndTime, `digestS3Bucket/digestS3Object`, the hex SHA-256 of the uncompressed digest and the previous
    digest's hex signature (the literal `null` for the first digest of a chain), separated by newlines.
    """
    previous = doc.get("previousDigestSignature")
    return "\n".join([
        str(doc.get("digestEndTime")),
        f"{doc.get('digestS3Bucket')}/{doc.get('digestS3Object')}",
        hashlib.sha256(digest_bytes).hexdigest(),
        "null" if previous is None else str(previous),
    ]).encode()


def sign_digest(private_key: rsa.RSAPrivateKey, doc: Mapping[str, Any], digest_bytes: bytes) -> str:
    """Hex SHA256withRSA (PKCS#1 v1.5) signature of a digest, the form S3 metadata carries."""
    return private_key.sign(signing_string(doc, digest_bytes), padding.PKCS1v15(), hashes.SHA256()).hex()


def public_key_fingerprint(key: rsa.RSAPublicKey) -> str:
    """MD5 of the DER public key: trailsight's fingerprint for its own test keys (AWS publishes its own)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.md5(der, usedforsecurity=False).hexdigest()


def _load_key(text: str) -> rsa.RSAPublicKey:
    data = text.strip()
    key = (serialization.load_pem_public_key(data.encode()) if data.startswith("-----BEGIN")
           else serialization.load_der_public_key(base64.b64decode(data, validate=True)))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def load_public_keys(source: str | Path | Mapping[str, str]) -> dict[str, rsa.RSAPublicKey]:
    """Public keys by fingerprint, from a JSON file (or an already-read mapping of fingerprint to PEM)."""
    where = "the public keys given" if isinstance(source, Mapping) else str(source)
    if isinstance(source, Mapping):
        raw: Any = dict(source)
    else:
        try:
            raw = orjson.loads(Path(source).read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read public keys file {source}: {exc.strerror or exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"public keys file {source} is not JSON: {exc}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("PublicKeyList"), list):
        raw = {str(k.get("Fingerprint")): k.get("Value") for k in raw["PublicKeyList"] if isinstance(k, dict)}
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"{where}: expected a JSON object mapping fingerprint to PEM public key")
    keys = {}
    for fingerprint, text in raw.items():
        try:
            keys[str(fingerprint)] = _load_key(str(text))
        except (ValueError, TypeError, binascii.Error) as exc:
            raise UsageError(f"{where}: the key for fingerprint {fingerprint} is not an RSA public key "
                             f"in PEM or base64 DER ({exc})") from exc
    return keys


def uncompressed_sha256(data: bytes, limit: int = DEFAULT_MAX_UNCOMPRESSED) -> str:
    """Hex SHA-256 of a gzip file's content (all members), hashed as it inflates: never held whole in memory."""
    digest = hashlib.sha256()
    for chunk in inflate_chunks(data, limit, HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _verify_signature(key: rsa.RSAPublicKey, signature_hex: str, doc: Mapping[str, Any], raw: bytes) -> bool:
    try:
        key.verify(bytes.fromhex(signature_hex), signing_string(doc, raw), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


# --- reading digests -------------------------------------------------------------------------------------


@dataclass
class _Digest:
    """A digest read from the source: its key, bytes and document, or why it could not be read."""

    obj: LogObject
    raw: bytes = b""
    doc: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    base: str = ""  # the part of digestS3Object before the key relative to the source root
    moved: bool = False  # digestS3Object is not where the digest was found
    signature: str | None = None

    @property
    def key(self) -> str:
        return self.obj.key

    @property
    def start(self) -> datetime:
        return _parse_time(self.doc["digestStartTime"])

    @property
    def end(self) -> datetime:
        return _parse_time(self.doc["digestEndTime"])

    def relative(self, s3_key: str) -> str:
        """Key, relative to the source root, of an object the digest names by its bucket key."""
        return s3_key.removeprefix(self.base)


def _parse_time(value: Any) -> datetime:
    return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _shape_error(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "not a JSON object"
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        return f"not a CloudTrail digest (no {', '.join(missing)})"
    if not isinstance(doc["logFiles"], list) or not all(
            isinstance(f, dict) and isinstance(f.get("s3Object"), str) and isinstance(f.get("hashValue"), str)
            for f in doc["logFiles"]):
        return "logFiles is not a list of {s3Object, hashValue}"
    try:
        _parse_time(doc["digestStartTime"]), _parse_time(doc["digestEndTime"])
    except ValueError:
        return "digestStartTime/digestEndTime are not UTC times"
    return None


def _read_digest(storage: Storage, obj: LogObject, want_signature: bool) -> _Digest:
    digest = _Digest(obj)
    try:
        digest.raw = inflate(storage.read_bytes(obj.key), MAX_DIGEST_BYTES)
        doc = orjson.loads(digest.raw)
    except BadInput as exc:
        digest.error = str(exc)
        return digest
    except orjson.JSONDecodeError as exc:
        digest.error = f"not JSON: {exc}"
        return digest
    digest.error = _shape_error(doc)
    if digest.error:
        return digest
    digest.doc = doc
    named = str(doc["digestS3Object"])
    digest.moved = not (named == obj.key or named.endswith("/" + obj.key))
    digest.base = "" if digest.moved else named[: len(named) - len(obj.key)]
    if want_signature:
        digest.signature = _signature_of(storage, obj.key)
    return digest


def _signature_of(storage: Storage, key: str) -> str | None:
    """Hex signature from S3 metadata, else from the `<key>.signature` sidecar of a local copy."""
    signature = storage.user_metadata(key).get("signature")
    if signature is None and storage.exists(key + SIGNATURE_SUFFIX):
        signature = storage.read_bytes(key + SIGNATURE_SUFFIX).decode("ascii", "replace")
    return signature.strip().lower() if signature is not None else None


def _chain_id(obj: LogObject) -> tuple[str, str, str]:
    """Digests of one trail for one account and region: same folder root and same name before the time stamp."""
    name = obj.key.rsplit("/", 1)[-1]
    return obj.key.rsplit("/CloudTrail-Digest/", 1)[0], obj.region, name[:-_STAMP_AND_SUFFIX]


def _select_digests(digests: Iterable[LogObject], day: date) -> dict[tuple[str, str, str], list[LogObject]]:
    """Per chain: the digests delivered on the day, and the next day's first two.

    The first covers the day's last hour; the second records the first's hash, so a change to it shows.
    """
    chains: dict[tuple[str, str, str], list[LogObject]] = {}
    for obj in digests:
        chains.setdefault(_chain_id(obj), []).append(obj)
    selected = {}
    for chain, objs in chains.items():
        objs.sort(key=lambda o: (o.delivered_at or datetime.min.replace(tzinfo=UTC), o.key))
        today = [o for o in objs if o.delivery_date == day]
        later = [o for o in objs if o.delivery_date and o.delivery_date > day]
        if today or later:
            selected[chain] = today + later[:2]
    return selected


# --- verification ----------------------------------------------------------------------------------------


class _Verifier:
    """Holds the state of one verification so the steps stay small functions."""

    def __init__(self, storage: Storage, day: date, keys: PublicKeys | None, workers: int) -> None:
        self.storage = storage
        self.day = day
        self.day_start = datetime.combine(day, datetime.min.time(), UTC)
        self.day_end = self.day_start + timedelta(days=1)
        self.keys = keys
        self.workers = workers
        self.result = DigestVerification(storage.url, day.isoformat(), signatures_checked=keys is not None)

    def problem(self, kind: ProblemKind, key: str, detail: str) -> None:
        self.result.problems.append(DigestProblem(kind, key, detail))

    def run(self, accounts: Iterable[str], regions: Iterable[str]) -> DigestVerification:
        found = discover(self.storage, self.day, self.day + timedelta(days=1), accounts, regions)
        chains = _select_digests(found.digests, self.day)
        self.result.chains = len(chains)
        want_signature = self.keys is not None
        expected: dict[str, tuple[str, str]] = {}  # log key -> (recorded SHA-256, digest listing it)
        with ThreadPoolExecutor(self.workers) as pool:
            # One chain at a time: only its digests are held, and only their file lists are kept.
            for objs in chains.values():
                digests = list(pool.map(lambda o: _read_digest(self.storage, o, want_signature), objs))
                for digest in self.check_chain(digests):
                    self.result.digests += 1
                    for entry in digest.doc["logFiles"]:
                        expected.setdefault(digest.relative(entry["s3Object"]),
                                            (entry["hashValue"].lower(), digest.key))
            present = {o.key for o in (*found.event_files, *found.others)}
            self.result.log_files_listed = len(expected)
            self.result.log_files_valid = sum(pool.map(
                lambda key: self.check_log(key, *expected[key], key in present), sorted(expected)))
        self.check_unlisted(found.event_files, found.others, set(expected), {(c[0], c[1]) for c in chains})
        self.result.problems.sort(key=lambda p: (p.kind.value, p.key, p.detail))
        return self.result

    def check_chain(self, chain: list[_Digest]) -> list[_Digest]:
        """Report unreadable, moved and badly signed digests and broken links; return those covering the day."""
        good: list[_Digest] = []
        unreadable: set[str] = set()  # already reported: a link to one of these is not a second finding
        for digest in chain:
            if digest.error:
                unreadable.add(digest.key)
                self.problem(ProblemKind.UNREADABLE_DIGEST, digest.key, digest.error)
            elif digest.moved:
                unreadable.add(digest.key)
                self.problem(ProblemKind.MOVED_DIGEST, digest.key,
                             f"it names {digest.doc['digestS3Object']} as its location")
            else:
                good.append(digest)
        for previous, digest in pairwise(good):
            self.check_link(previous, digest, unreadable)
        covering = [d for d in good if d.start < self.day_end and d.end > self.day_start]
        for digest in covering:
            self.check_signature(digest)
        self.check_coverage(covering, good, unreadable)
        return covering

    def check_signature(self, digest: _Digest) -> None:
        if self.keys is None:
            return
        fingerprint = str(digest.doc.get("digestPublicKeyFingerprint"))
        algorithm = digest.doc.get("digestSignatureAlgorithm", SIGNATURE_ALGORITHM)
        if not digest.signature:
            self.problem(ProblemKind.MISSING_SIGNATURE, digest.key,
                         "no x-amz-meta-signature metadata and no .signature sidecar")
        elif algorithm != SIGNATURE_ALGORITHM:
            self.problem(ProblemKind.BAD_SIGNATURE, digest.key, f"unsupported signature algorithm {algorithm}")
        elif fingerprint not in self.keys:
            self.problem(ProblemKind.UNKNOWN_KEY, digest.key, f"no public key given for fingerprint {fingerprint}")
        elif not _verify_signature(self.keys[fingerprint], digest.signature, digest.doc, digest.raw):
            self.problem(ProblemKind.BAD_SIGNATURE, digest.key,
                         f"the signature does not verify with the public key {fingerprint}")
        else:
            self.result.signatures_valid += 1

    def check_link(self, previous: _Digest, digest: _Digest, unreadable: set[str]) -> None:
        """`digest` must name `previous` as its predecessor, with previous's hash and signature."""
        named = digest.doc.get("previousDigestS3Object")
        if named is None:
            self.result.notes.append(f"{digest.key} starts a new chain (logging or validation was restarted); "
                                     f"no digest covers {_fmt(previous.end)} to {_fmt(digest.start)}")
            return
        if digest.relative(str(named)) != previous.key:
            if digest.relative(str(named)) not in unreadable:
                self.problem(ProblemKind.CHAIN_GAP, digest.key,
                             f"its previous digest {named} is missing: nothing proves the deliveries between "
                             f"{_fmt(previous.end)} and {_fmt(digest.start)}")
            return
        recorded = str(digest.doc.get("previousDigestHashValue"))
        actual = hashlib.sha256(previous.raw).hexdigest()
        if recorded != actual:
            self.problem(ProblemKind.CHAIN_MISMATCH, previous.key,
                         f"its SHA-256 is {actual} but the next digest {digest.key} recorded {recorded}: "
                         "it was changed after delivery")
        elif (previous.signature and digest.doc.get("previousDigestSignature") is not None
              and digest.doc["previousDigestSignature"] != previous.signature):
            self.problem(ProblemKind.CHAIN_MISMATCH, previous.key,
                         f"its signature is not the one the next digest {digest.key} recorded")

    def check_coverage(self, covering: list[_Digest], good: list[_Digest], unreadable: set[str]) -> None:
        """The chain's digests must reach back to the day's start and forward to its end."""
        if not covering:
            return
        first, last = covering[0], covering[-1]
        if first.start > self.day_start:
            named = first.doc.get("previousDigestS3Object")
            if named is None:
                self.result.notes.append(f"{first.key} is the first digest of its chain (from {_fmt(first.start)})")
            elif first.relative(str(named)) not in unreadable:
                self.problem(ProblemKind.CHAIN_GAP, first.key,
                             f"no digest covers {_fmt(self.day_start)} to {_fmt(first.start)}; "
                             f"its previous digest {named} is missing")
        if last.end < self.day_end and last is good[-1]:
            self.problem(ProblemKind.CHAIN_GAP, last.key,
                         f"no digest covers {_fmt(last.end)} to {_fmt(self.day_end)} "
                         "(deleted, or not delivered yet)")

    def check_log(self, key: str, recorded: str, digest_key: str, listed_by_listing: bool) -> bool:
        try:
            self.storage.path(key)
        except StorageError:
            self.problem(ProblemKind.MISSING_LOG, key,
                         f"listed in {digest_key} under a key that would leave the source")
            return False
        if not (listed_by_listing or self.storage.exists(key)):
            self.problem(ProblemKind.MISSING_LOG, key, f"listed in {digest_key} but not in the source")
            return False
        try:
            actual = uncompressed_sha256(self.storage.read_bytes(key))
        except BadInput as exc:
            self.problem(ProblemKind.UNREADABLE_LOG, key, f"listed in {digest_key}; {exc}")
            return False
        if actual != recorded:
            self.problem(ProblemKind.HASH_MISMATCH, key,
                         f"uncompressed SHA-256 is {actual}, {digest_key} recorded {recorded}: the file was changed")
            return False
        return True

    def check_unlisted(self, event_files: list[LogObject], others: list[LogObject], listed: set[str],
                       chained: set[tuple[str, str]]) -> None:
        """Objects in the day's log folders that no digest lists were not delivered by CloudTrail as they are.

        Where an account and region has no digest at all, one finding says so instead of one per file.
        """
        in_folders = [o for o in event_files if o.kind is ObjectKind.LOG and o.delivery_date == self.day]
        self.result.log_files_in_folders = len(in_folders)
        strays = [o for o in others if "/CloudTrail/" in o.key and o.delivery_date == self.day]
        undigested: dict[tuple[str, str], int] = {}
        for obj in (*in_folders, *strays):
            if obj.key in listed:
                continue
            root = obj.key.rsplit("/CloudTrail/", 1)[0]
            if (root, obj.region) in chained:
                self.problem(ProblemKind.UNLISTED_LOG, obj.key, "in the day's log folder but listed in no digest")
            else:
                undigested[(root, obj.region)] = undigested.get((root, obj.region), 0) + 1
        for (root, region), count in undigested.items():
            self.problem(ProblemKind.NO_DIGESTS, f"{root}/CloudTrail/{region}/{self.day:%Y/%m/%d}",
                         f"{count} file(s) delivered but no digest found for this account and region "
                         "(is log file validation enabled on the trail?)")


def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def verify_digests(
    source: str | Path | Storage,
    day: date,
    accounts: Iterable[str] = (),
    regions: Iterable[str] = (),
    public_keys: str | Path | Mapping[str, str] | None = None,
    workers: int = DEFAULT_WORKERS,
) -> DigestVerification:
    """Check a delivery day's log files against CloudTrail's hourly digests (see the module docstring).

    `public_keys` is a file (or mapping) of fingerprint to public key; without it signatures are not checked.
    Objects are read by `workers` threads: the work is waiting on storage, not computing.
    """
    storage = as_storage(source)
    keys = load_public_keys(public_keys) if public_keys is not None else None
    return _Verifier(storage, day, keys, max(1, workers)).run(tuple(accounts), tuple(regions))
