"""Synthetic CloudTrail archive generator.

Writes a local tree shaped exactly like a CloudTrail S3 bucket (organization trail plus a standalone trail),
with realistic events, delivery lag across midnight, duplicate deliveries, hourly chained digest files and a
set of injected incidents described in ``ground_truth.json``. The project needs it because real archives
cannot be shipped, and every later stage (conversion, detection, retention) is tested and benchmarked on it.

Design, in one paragraph: a *world* (accounts, principals, resource names, API mix) is derived from the seed
alone. Work is cut into independent *units* of (day, account, region); each unit draws its events and
delivers them into files with its own ``random.Random`` derived from the seed and the unit key, so running
units in any order or in parallel writes the same bytes. Digests need every unit's file list and are built
afterwards, per account and region, in one sequential chain.

What lands under ``out/``:

- ``[prefix/]AWSLogs/o-<org>/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_
  <YYYYMMDDTHHmmZ>_<16 alnum>.json.gz`` for the three organization-trail accounts, the same without the
  ``o-<org>/`` level for the standalone account. Folder date and file time are the delivery time.
- Files cover 5-minute windows per account and region, delivered 2-10 minutes after the window closes
  (in order, at least a minute apart); 1% of events slip into the next file; 0.3% are delivered twice,
  byte-identical, in the next or second-next file or in a batch re-sent 15 min - 2 h after midnight.
- ``.../CloudTrail-Digest/<region>/YYYY/MM/DD/<account>_CloudTrail-Digest_<region>_<trail>_<home region>_
  <YYYYMMDDTHHmmssZ>.json.gz``: one per hour per account and region (all four regions, even unused ones),
  chained, through the hour of the last delivery after the last day.
- ``ground_truth.json``: the injected incidents. Windowed ones (rate spikes, error bursts) hold their events
  in ``[start, end)``; single-event ones have ``start == end`` == the event's time.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import math
import random
import string
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import orjson
from isal import igzip

from trailsight.errors import UsageError

__all__ = ["GenerationSummary", "generate_archive"]

# ------------------------------------------------------------------------------------------------------------
# Tunables. Kept together so that a reader can see at once what shapes the archive.
# ------------------------------------------------------------------------------------------------------------

GZIP_LEVEL = 1  # isal level 1: ~20x smaller at several GB/s; the level only changes file sizes.
DELIVERY_WINDOW_S = 300  # CloudTrail delivers about every 5 minutes per account and region.
DELIVERY_LAG_S = (120, 600)  # extra lag after the window closes: events are ~2-15 minutes old on delivery.
STRAGGLER_SHARE = 0.01  # events that miss their window and ride in the next file.
DUPLICATE_SHARE = 0.003  # events delivered a second time, byte-identical, in another file.
REDELIVERY_LAG_S = (900, 7200)  # duplicates re-sent after midnight land 15 min - 2 h into the next day.
ERROR_SCALE = 2.0  # multiplies every API's error rate; 2.0 gives ~3% failed calls overall
SIGNATURE_ALGORITHM = "SHA256withRSA"
UNSIGNED_SIGNATURE = ""  # digests are not signed yet; see _DigestSigner.

_H, _A, _S = "human", "auto", "svc"  # caller groups: people, workloads, AWS services themselves
_MINUTES_PER_DAY = 1440
_SECONDS_PER_DAY = 86400
_ALNUM = string.ascii_letters + string.digits
_LOWER_ALNUM = string.ascii_lowercase + string.digits
_HEX = "0123456789abcdef"
_B32_TABLE = bytes((string.ascii_uppercase + "234567").encode()[i % 32] for i in range(256))  # byte -> A-Z2-7
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in _HEX}
_HMS = tuple(f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(_SECONDS_PER_DAY))
_MINUTES = tuple(range(_MINUTES_PER_DAY))


# ------------------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationSummary:
    """What a run wrote, so callers (CLI, benchmark, tests) need not walk the tree to know it."""

    root: Path
    days: list[date]
    log_files: int
    digest_files: int
    events: int  # distinct events written; duplicate deliveries are not counted
    duplicate_deliveries: int
    raw_bytes: int  # uncompressed JSON bytes of all log files
    gzip_bytes: int  # compressed bytes of all log files (digests excluded)
    ground_truth: Path


def generate_archive(
    out: Path,
    days: int,
    seed: int = 7,
    end: date | None = None,
    events_per_day: int = 20_000,
    workers: int = 1,
    prefix: str = "",
    signing_key: Path | None = None,
) -> GenerationSummary:
    """Write a CloudTrail-shaped archive under ``out`` and return what was written.

    ``end`` is the last generated day (default: yesterday, UTC); the days are ``end-days+1 .. end``. Files
    delivered after midnight of ``end+1`` are written too, so every event is somewhere. The same arguments
    always give byte-identical files, whatever ``workers`` is. Existing files with the same names are
    overwritten; nothing else under ``out`` is touched or removed.

    With ``signing_key`` (a PEM RSA private key, a test key: AWS's own keys are never available) digests are
    signed as CloudTrail signs them, name that key's fingerprint, chain the signatures, and each gets a
    ``<digest>.signature`` sidecar with the hex signature (where S3 would keep ``x-amz-meta-signature``).
    Without it the output is unsigned and unchanged.
    """
    if days < 1:
        raise ValueError("days must be >= 1")
    if events_per_day < 1:
        raise ValueError("events_per_day must be >= 1")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; the sample archive needs a folder (created if missing)")
    if end is None:
        end = datetime.now(UTC).date() - timedelta(days=1)
    day_list = [end - timedelta(days=days - 1 - i) for i in range(days)]
    prefix = prefix.strip("/")
    world = _world(seed)
    incidents = _plan_incidents(world, seed, day_list, events_per_day)

    tasks = _unit_tasks(world, seed, day_list, events_per_day, incidents, out, prefix)
    if workers == 1 or len(tasks) == 1:
        results = [_run_unit(t) for t in tasks]
    else:
        # Largest units first so that the pool stays busy; results are re-ordered below for determinism.
        order = sorted(range(len(tasks)), key=lambda i: -tasks[i].n_events)
        with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as pool:
            done = list(pool.map(_run_unit, [tasks[i] for i in order], chunksize=1))
        results = [r for _, r in sorted(zip(order, done, strict=True), key=lambda x: x[0])]

    log_files = [f for r in results for f in r.files]
    signer = _RsaDigestSigner(Path(signing_key)) if signing_key else None
    digest_count = _write_digests(world, out, prefix, day_list, log_files, signer)
    truth = _ground_truth(world, incidents, results)
    gt_path = out / "ground_truth.json"
    gt_path.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n")
    return GenerationSummary(
        root=out,
        days=day_list,
        log_files=len(log_files),
        digest_files=digest_count,
        events=sum(r.events for r in results),
        duplicate_deliveries=sum(r.duplicates for r in results),
        raw_bytes=sum(f.raw_bytes for f in log_files),
        gzip_bytes=sum(f.gzip_bytes for f in log_files),
        ground_truth=gt_path,
    )


def _mp_context() -> BaseContext:
    """Fork when it is safe, spawn otherwise.

    Fork needs no re-import of the caller's main module, so scripts without an ``if __name__ == "__main__"``
    guard and ``python -m trailsight`` work; but forking a process that runs other threads can deadlock the
    child, so a threaded caller (e.g. an orchestrator) gets spawn. The bytes written are the same either way.
    """
    if "fork" in get_all_start_methods() and threading.active_count() == 1:
        return get_context("fork")
    return get_context("spawn")


# ------------------------------------------------------------------------------------------------------------
# Seeds and small random helpers
# ------------------------------------------------------------------------------------------------------------


def _derive_seed(*parts: object) -> int:
    """Stable 64-bit seed from parts; sha256 so it does not depend on PYTHONHASHSEED or the process."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def _rand_str(rng: random.Random, alphabet: str, k: int) -> str:
    return "".join(rng.choices(alphabet, k=k))


def _key_id(rng: random.Random, prefix: str, k: int = 16) -> str:
    """AWS-style key or unique id (AKIA..., ASIA..., AROA...): base32 characters, as AWS uses."""
    return prefix + rng.randbytes(k).translate(_B32_TABLE).decode()


def _uuid4(rng: random.Random) -> str:
    """uuid4-shaped id from the seeded RNG (uuid.uuid4 would read os.urandom and break determinism)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def _uuid4_pair(rng: random.Random) -> tuple[str, str]:
    """Two uuid4-shaped ids from one draw (requestID and eventID of an event): the hot path needs both."""
    h = f"{rng.getrandbits(256):064x}"
    return (
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}",
        f"{h[32:40]}-{h[40:44]}-4{h[45:48]}-{_VARIANT[h[48]]}{h[49:52]}-{h[52:]}",
    )


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _b64(rng: random.Random, nbytes: int) -> str:
    return base64.b64encode(rng.randbytes(nbytes)).decode()


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _java_date(epoch: int) -> str:
    """The 'May 9, 2024, 1:07:12 AM' style several services use inside responseElements."""
    minute, second = divmod(epoch, 60)
    return f"{_java_minute(minute)}:{second:02d} {'AM' if epoch % 86400 < 43200 else 'PM'}"


@lru_cache(maxsize=4096)
def _java_minute(minute: int) -> str:
    t = datetime.fromtimestamp(minute * 60, UTC)
    return f"{t:%b} {t.day}, {t.year}, {t.hour % 12 or 12}:{t:%M}"


def _day_epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _cum(weights: Sequence[float]) -> list[float]:
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc)
    return out


def _largest_remainder(total: int, shares: Sequence[float]) -> list[int]:
    """Split an integer total by shares so the parts add up exactly (summary counts stay predictable)."""
    s = sum(shares)
    raw = [total * x / s for x in shares]
    base = [int(x) for x in raw]
    rest = total - sum(base)
    for i in sorted(range(len(raw)), key=lambda i: (base[i] - raw[i], i))[:rest]:
        base[i] += 1
    return base


# ------------------------------------------------------------------------------------------------------------
# The world: accounts, principals ("actors"), resources. Derived from the seed alone.
# ------------------------------------------------------------------------------------------------------------

REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2")
HOME_REGION = "us-east-1"
# Busy hour (UTC) per region: the daily rhythm follows the people who work there, never zero at night.
_REGION_PEAK_HOUR = {"us-east-1": 15.5, "eu-west-1": 11.0, "us-west-2": 18.5, "ap-southeast-2": 1.0}
_GLOBAL_SERVICES = {"iam.amazonaws.com", "signin.amazonaws.com", "sso.amazonaws.com"}

_GIVEN = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "yasmin",
)
_FAMILY = ("smith", "jones", "garcia", "chen", "kumar", "muller", "rossi", "dubois", "tanaka", "silva")
_APPS = ("orders", "payments", "catalog", "search", "billing", "ingest", "reports", "auth", "notify", "media")

_UA_CLI = (
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1014-aws exe/x86_64.ubuntu.22 prompt/off",
    "aws-cli/2.17.12 Python/3.11.9 Darwin/23.5.0 exe/x86_64 prompt/off",
    "aws-cli/2.13.25 Python/3.11.5 Windows/10 exe/AMD64 prompt/off",
    "aws-cli/1.32.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.213-201.855.amzn2.x86_64 md/arch#x86_64 "
    "lang/python#3.9.16 md/pyimpl#CPython cfg/retry-mode#legacy botocore/1.34.69",
)
_UA_BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15",
)
_UA_CONSOLE = ("AWS Internal", "console.amazonaws.com", *_UA_BROWSER)
_UA_BOTO = (
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.213-201.855.amzn2.x86_64 md/arch#x86_64 "
    "lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69",
    "Boto3/1.28.62 md/Botocore#1.31.62 ua/2.0 os/linux#5.10.197-186.748.amzn2.x86_64 md/arch#x86_64 "
    "lang/python#3.10.13 md/pyimpl#CPython exec-env/AWS_Lambda_python3.10 cfg/retry-mode#legacy "
    "Botocore/1.31.62",
)
_UA_SDK = (
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.2 md/GOOS#linux md/GOARCH#amd64",
    "aws-sdk-java/2.25.16 Linux/5.10.210-201.852.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS "
    "Java/17.0.10 vendor/Amazon.com_Inc. exec-env/AWS_ECS_FARGATE io/sync http/Apache cfg/retry-mode/legacy",
    "aws-sdk-nodejs/2.1592.0 linux/v18.19.1 exec-env/AWS_Lambda_nodejs18.x promise",
)
_UA_TERRAFORM = (
    "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.43.0 "
    "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.1 "
    "md/GOOS#linux md/GOARCH#amd64",
)
_UA_SSM_AGENT = ("aws-sdk-go/1.44.260 (go1.20.4; linux; amd64) amazon-ssm-agent/3.3.131.0",)


@dataclass
class _Actor:
    """A principal of the account population, or an AWS service acting on its own behalf."""

    kind: str  # IAMUser, AssumedRole, Root, AWSService, AWSAccount, FederatedUser, SAMLUser, ...
    group: str  # human, auto, svc, saml, webid, idc, root
    name: str  # user name, role name, or service host
    weight: float
    account: str
    ips: tuple[str, ...]
    agents: tuple[str, ...]
    console_share: float = 0.0
    sessions: tuple[str, ...] = ()
    principal_id: str = ""
    access_key: str = ""
    role_path: str = "/"
    mfa: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    index: int = 0


@dataclass
class _Pools:
    """Names of the resources an account-region has; fixed over days so traffic refers to the same things."""

    buckets: list[str]
    instances: list[str]
    sgs: list[str]
    vpcs: list[str]
    subnets: list[str]
    volumes: list[str]
    amis: list[str]
    keys: list[str]
    tables: list[str]
    functions: list[str]
    params: list[str]
    secrets: list[str]
    log_groups: list[str]
    alarms: list[str]
    config_rules: list[str]
    roles: list[str]
    app_roles: list[str]  # roles that workloads and pipelines assume
    users: list[str]
    detector: str


@dataclass
class _Account:
    index: int
    id: str
    name: str
    org_id: str | None  # None for the standalone account
    share: float
    region_weights: dict[str, float]
    trail_name: str
    trail_home: str
    actors: list[_Actor]
    pools: dict[str, _Pools]
    digest_offset_s: dict[str, int]
    is_management: bool = False


@dataclass
class _World:
    seed: int
    org_id: str
    bucket: str
    key_fingerprint: str
    accounts: list[_Account]
    profile_cw: dict[str, list[float]]
    profile_peak: dict[str, float]  # peak-minute share of a day's traffic, per region
    # per (account index, region): the APIs possible there with cumulative weights, and normalised shares
    unit_apis: dict[tuple[int, str], tuple[list[_Api], list[float]]]
    api_share: dict[tuple[int, str, str], float]
    # per (account index, api key): actors allowed to call it and cumulative weights
    actor_table: dict[tuple[int, str], tuple[list[_Actor], list[float]]]


def _ip(rng: random.Random, first: Sequence[int]) -> str:
    return f"{rng.choice(first)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


@lru_cache(maxsize=8)
def _world(seed: int) -> _World:
    """Build the seed's world once per process; units in any worker rebuild the same one."""
    rng = random.Random(_derive_seed(seed, "world"))
    org_id = "o-" + _rand_str(rng, _LOWER_ALNUM, 10)
    ids: list[str] = []
    while len(ids) < 6:
        cand = str(rng.randint(100_000_000_000, 999_999_999_999))
        if cand not in ids:
            ids.append(cand)
    office = tuple(_ip(rng, (81, 86, 93, 145)) for _ in range(6))
    vpn = tuple(_ip(rng, (34, 35)) for _ in range(2))
    homes = tuple(_ip(rng, (24, 71, 73, 98, 174, 188, 213)) for _ in range(24))
    accounts = []
    specs = [  # name, share, org?, region weights
        (
            "prod",
            0.42,
            True,
            {"us-east-1": 0.58, "eu-west-1": 0.22, "us-west-2": 0.14, "ap-southeast-2": 0.06},
        ),
        (
            "staging",
            0.18,
            True,
            {"us-east-1": 0.65, "eu-west-1": 0.2, "us-west-2": 0.15, "ap-southeast-2": 0.0},
        ),
        (
            "security",
            0.12,
            True,
            {"us-east-1": 0.55, "eu-west-1": 0.2, "us-west-2": 0.15, "ap-southeast-2": 0.1},
        ),
        (
            "legacy",
            0.28,
            False,
            {"us-east-1": 0.7, "eu-west-1": 0.3, "us-west-2": 0.0, "ap-southeast-2": 0.0},
        ),
    ]
    for i, (name, share, in_org, rweights) in enumerate(specs):
        acct_id = ids[i]
        nat = tuple(_ip(rng, (3, 18, 52, 54)) for _ in range(4))
        actors = _make_actors(rng, acct_id, name, i, office + vpn, homes, nat, ids[4], ids)
        pools = {r: _make_pools(rng, acct_id, name, r, actors) for r in REGIONS}
        accounts.append(
            _Account(
                index=i,
                id=acct_id,
                name=name,
                org_id=org_id if in_org else None,
                share=share,
                region_weights=rweights,
                trail_name="org-trail" if in_org else "management-events",
                trail_home=HOME_REGION,
                actors=actors,
                pools=pools,
                digest_offset_s={r: rng.randint(61, 299) for r in REGIONS},
                is_management=i == 0,
            )
        )
    profile_cw, peak = {}, {}
    for region, hour in _REGION_PEAK_HOUR.items():
        w = []
        for m in range(_MINUTES_PER_DAY):
            d = abs(m / 60 - hour)
            d = min(d, 24 - d)
            w.append(0.35 + 0.65 * math.exp(-(d * d) / (2 * 3.2 * 3.2)))
        profile_cw[region] = _cum(w)
        peak[region] = max(w) / sum(w)
    world = _World(
        seed=seed,
        org_id=org_id,
        bucket=f"aws-cloudtrail-logs-{ids[0]}-{_hex(rng, 8)}",
        key_fingerprint=_hex(rng, 32),
        accounts=accounts,
        profile_cw=profile_cw,
        profile_peak=peak,
        unit_apis={},
        api_share={},
        actor_table={},
    )
    _index_world(world)
    return world


def _make_actors(
    rng: random.Random,
    acct: str,
    acct_name: str,
    acct_index: int,
    office: tuple[str, ...],
    homes: tuple[str, ...],
    nat: tuple[str, ...],
    vendor_acct: str,
    all_ids: list[str],
) -> list[_Actor]:
    """The fixed population of one account: tens of users and roles, Zipf-skewed in activity."""
    actors: list[_Actor] = []

    def uid(prefix: str) -> str:
        return _key_id(rng, prefix, 17)

    def akey(prefix: str) -> str:
        return _key_id(rng, prefix, 16)

    people = rng.sample([f"{g}.{f}" for g in _GIVEN for f in _FAMILY], 14)
    # Human IAM users (older style), CLI and console.
    for rank, person in enumerate(people[:6]):
        ips = tuple(rng.sample(office, 2)) + tuple(rng.sample(homes, 2))
        actors.append(
            _Actor(
                "IAMUser",
                "human",
                person.split(".")[0],
                1 / (rank + 1),
                acct,
                ips,
                _UA_CLI + _UA_TERRAFORM,
                console_share=0.4,
                principal_id=uid("AIDA"),
                access_key=akey("AKIA"),
                mfa=True,
            )
        )
    # Programmatic IAM users (CI, legacy integrations).
    for rank, user in enumerate(("ci-deployer", "backup-agent", "legacy-etl", "monitoring-readonly")):
        ips = nat[:2] if user != "monitoring-readonly" else (_ip(rng, (44, 52)),)
        agents = _UA_TERRAFORM if user == "ci-deployer" else _UA_BOTO + _UA_SDK
        actors.append(
            _Actor(
                "IAMUser",
                "auto",
                user,
                0.8 / (rank + 1),
                acct,
                ips,
                agents,
                principal_id=uid("AIDA"),
                access_key=akey("AKIA"),
            )
        )
    # Human roles through Identity Center / SAML (console and CLI).
    sso_suffix = _hex(rng, 16)
    for rank, (role, path) in enumerate(
        (
            (f"AWSReservedSSO_AdministratorAccess_{sso_suffix}", "/aws-reserved/sso.amazonaws.com/"),
            (f"AWSReservedSSO_ReadOnlyAccess_{_hex(rng, 16)}", "/aws-reserved/sso.amazonaws.com/"),
            (f"AWSReservedSSO_PowerUserAccess_{_hex(rng, 16)}", "/aws-reserved/sso.amazonaws.com/"),
            ("okta-engineers", "/"),
        )
    ):
        members = tuple(f"{p}@example.com" for p in rng.sample(people, 5))
        ips = office + tuple(rng.sample(homes, 6))
        actors.append(
            _Actor(
                "AssumedRole",
                "human",
                role,
                2.0 / (rank + 1),
                acct,
                ips,
                _UA_CLI,
                console_share=0.6,
                sessions=members,
                principal_id=uid("AROA"),
                role_path=path,
                extra={"saml": "1"} if rank == 3 else {},
            )
        )
    # Automation roles: Lambda, ECS tasks, EC2 instance profiles, deploy pipelines.
    for rank, app in enumerate(rng.sample(_APPS, 8)):
        role = f"{app}-{rng.choice(('lambda', 'service', 'worker'))}-role"
        if role.endswith("lambda-role"):
            sessions, agents = (
                (f"{app}-{s}" for s in ("handler", "consumer", "scheduler")),
                _UA_BOTO + _UA_SDK[2:],
            )
        elif role.endswith("service-role"):
            sessions, agents = (_hex(rng, 32) for _ in range(4)), _UA_SDK[:2]
        else:
            sessions, agents = (f"i-0{_hex(rng, 16)}" for _ in range(3)), _UA_BOTO + _UA_SSM_AGENT
        actors.append(
            _Actor(
                "AssumedRole",
                "auto",
                role,
                6.0 / (rank + 1) ** 1.1,
                acct,
                nat,
                agents,
                sessions=tuple(sessions),
                principal_id=uid("AROA"),
            )
        )
    actors.append(
        _Actor(
            "AssumedRole",
            "auto",
            "github-actions-deploy",
            1.2,
            acct,
            tuple(_ip(rng, (4, 20, 40, 52)) for _ in range(8)),
            _UA_TERRAFORM + _UA_CLI[:1],
            sessions=("GitHubActions",),
            principal_id=uid("AROA"),
        )
    )
    actors.append(
        _Actor(
            "AssumedRole",
            "auto",
            "AWSServiceRoleForConfig",
            1.0,
            acct,
            ("config.amazonaws.com",),
            ("config.amazonaws.com",),
            sessions=("AWSConfig-Describe",),
            principal_id=uid("AROA"),
            role_path="/aws-service-role/config.amazonaws.com/",
            extra={"via": "config.amazonaws.com"},
        )
    )
    actors.append(
        _Actor(
            "AssumedRole",
            "auto",
            "AWSServiceRoleForAmazonGuardDuty",
            0.4,
            acct,
            ("guardduty.amazonaws.com",),
            ("guardduty.amazonaws.com",),
            sessions=("AmazonGuardDuty",),
            principal_id=uid("AROA"),
            role_path="/aws-service-role/guardduty.amazonaws.com/",
            extra={"via": "guardduty.amazonaws.com"},
        )
    )
    if acct_index != 0:
        mgmt = all_ids[0]
        actors.append(
            _Actor(
                "AssumedRole",
                "human",
                "OrganizationAccountAccessRole",
                0.3,
                acct,
                office,
                _UA_CLI,
                sessions=tuple(f"{p}@example.com" for p in people[:2]),
                principal_id=uid("AROA"),
                extra={"from": mgmt},
            )
        )
    # Cross-account callers: a monitoring vendor and a sibling account.
    actors.append(
        _Actor(
            "AWSAccount",
            "auto",
            "vendor",
            0.5,
            vendor_acct,
            tuple(_ip(rng, (3, 34)) for _ in range(3)),
            _UA_SDK[:1],
            principal_id=uid("AROA") + ":vendor-integration",
        )
    )
    sibling = all_ids[(acct_index + 1) % 4]
    actors.append(
        _Actor(
            "AWSAccount",
            "auto",
            "sibling",
            0.3,
            sibling,
            nat,
            _UA_BOTO,
            principal_id=uid("AROA") + ":cross-account-reader",
        )
    )
    # Federated users through GetFederationToken.
    actors.append(
        _Actor(
            "FederatedUser",
            "human",
            "reporting-portal",
            0.25,
            acct,
            nat[:1],
            _UA_SDK[1:2],
            sessions=("analyst-1", "analyst-2", "analyst-3"),
            principal_id=actors[6].principal_id,
            extra={"issuer": actors[6].name},
        )
    )
    # Identities that only appear on their own sts/sso calls.
    actors.append(
        _Actor(
            "SAMLUser",
            "saml",
            "okta",
            1.0,
            acct,
            office + tuple(rng.sample(homes, 6)),
            _UA_BROWSER,
            sessions=tuple(f"{p}@example.com" for p in people[:8]),
            principal_id=base64.b64encode(rng.randbytes(20)).decode(),
            extra={"role": "okta-engineers", "provider": "Okta"},
        )
    )
    repo = rng.choice(_APPS)
    actors.append(
        _Actor(
            "WebIdentityUser",
            "webid",
            "github",
            1.0,
            acct,
            tuple(_ip(rng, (4, 20, 40, 52)) for _ in range(8)),
            (
                "aws-sdk-nodejs/3.540.0 linux/v20.11.1 ua/2.0 os/linux#6.5.0-1017-azure lang/js "
                "md/nodejs#20.11.1",
            ),
            sessions=(f"repo:acme/{repo}:ref:refs/heads/main", f"repo:acme/{repo}:environment:production"),
            extra={
                "provider": "token.actions.githubusercontent.com",
                "role": "github-actions-deploy",
                "aud": "sts.amazonaws.com",
            },
        )
    )
    actors.append(
        _Actor(
            "WebIdentityUser",
            "webid",
            "eks",
            1.5,
            acct,
            nat,
            _UA_SDK[1:2],
            sessions=(
                f"system:serviceaccount:{rng.choice(_APPS)}:api",
                "system:serviceaccount:kube-system:ebs-csi",
            ),
            extra={
                "provider": f"oidc.eks.us-east-1.amazonaws.com/id/{_hex(rng, 32).upper()}",
                "role": next(a.name for a in actors if a.kind == "AssumedRole" and a.group == "auto"),
                "aud": "sts.amazonaws.com",
            },
        )
    )
    if acct_index == 0:
        store = f"d-{rng.randint(9000000000, 9999999999)}"
        for person in people[:6]:
            actors.append(
                _Actor(
                    "IdentityCenterUser",
                    "idc",
                    person,
                    1.0,
                    acct,
                    office + tuple(rng.sample(homes, 3)),
                    _UA_BROWSER,
                    principal_id=_uuid4(rng),
                    extra={"store": f"arn:aws:identitystore::{acct}:identitystore/{store}"},
                )
            )
    if acct_name == "legacy":
        # The standalone account still uses its root user now and then (with MFA): realistic, and rare.
        actors.append(
            _Actor(
                "Root",
                "root",
                "root",
                1.0,
                acct,
                office[:2],
                _UA_CONSOLE[2:],
                console_share=1.0,
                principal_id=acct,
                mfa=True,
            )
        )
    for i, a in enumerate(actors):
        a.index = i
    return actors


def _make_pools(rng: random.Random, acct: str, name: str, region: str, actors: list[_Actor]) -> _Pools:
    apps = rng.sample(_APPS, 6)
    return _Pools(
        buckets=[f"{name}-{a}-{s}-{acct}" for a in apps[:4] for s in ("data", "assets")]
        + [f"{name}-logs-{acct}"],
        instances=[f"i-0{_hex(rng, 16)}" for _ in range(24)],
        sgs=[f"sg-0{_hex(rng, 16)}" for _ in range(12)],
        vpcs=[f"vpc-0{_hex(rng, 16)}" for _ in range(2)],
        subnets=[f"subnet-0{_hex(rng, 16)}" for _ in range(6)],
        volumes=[f"vol-0{_hex(rng, 16)}" for _ in range(24)],
        amis=[f"ami-0{_hex(rng, 16)}" for _ in range(4)],
        keys=[_uuid4(rng) for _ in range(5)],
        tables=[f"{a}-{t}" for a in apps[:4] for t in ("items", "sessions")],
        functions=[f"{a}-{f}" for a in apps for f in ("handler", "consumer")],
        params=[f"/{name}/{a}/{p}" for a in apps for p in ("db/password", "api/url", "feature-flags")],
        secrets=[f"{name}/{a}/{s}-{_rand_str(rng, _ALNUM, 6)}" for a in apps[:4] for s in ("db", "api-key")],
        log_groups=[f"/aws/lambda/{a}-handler" for a in apps] + [f"/ecs/{a}" for a in apps[:3]],
        alarms=[f"{a}-{m}" for a in apps[:4] for m in ("5xx-rate", "latency-p99", "throttles")],
        config_rules=[
            "s3-bucket-public-read-prohibited",
            "restricted-ssh",
            "iam-user-mfa-enabled",
            "encrypted-volumes",
            "cloudtrail-enabled",
            "root-account-mfa-enabled",
        ],
        roles=[a.name for a in actors if a.kind == "AssumedRole"],
        app_roles=[
            a.name for a in actors if a.kind == "AssumedRole" and a.group == _A and "via" not in a.extra
        ],
        users=[a.name for a in actors if a.kind == "IAMUser"],
        detector=_hex(rng, 32),
    )


# ------------------------------------------------------------------------------------------------------------
# The API catalogue: ~75 APIs over ~15 services, in popularity order (Zipf weights by rank).
# ------------------------------------------------------------------------------------------------------------

Builder = Callable[["_Ctx", _Actor], tuple[Any, Any, Any, Any]]


@dataclass
class _Api:
    """One API as CloudTrail records it, with who calls it, how often it fails and how its fields look."""

    source: str
    name: str
    read_only: bool
    groups: dict[str, float]  # caller group -> weight
    build: Builder
    err_rate: float = 0.02
    errors: tuple[tuple[str | None, str], ...] = ()
    event_type: str = "AwsApiCall"
    category: str = "Management"
    version: str = "1.08"
    svc_hosts: tuple[str, ...] = ()
    request_id: str = "uuid"  # uuid, s3, none
    tls: bool = True
    weight: float = 0.0
    key: str = field(init=False)  # "eventSource:eventName", computed once: it is read for every event
    management: bool = field(init=False)

    def __post_init__(self) -> None:
        self.key = f"{self.source}:{self.name}"
        self.management = self.category == "Management"


_ACCESS_DENIED = ("AccessDenied", "@denied")
_ACCESS_DENIED_EXC = ("AccessDeniedException", "@denied")
_THROTTLING = ("ThrottlingException", "Rate exceeded")
_EC2_UNAUTH = ("Client.UnauthorizedOperation", "You are not authorized to perform this operation.")
_EC2_LIMIT = ("Client.RequestLimitExceeded", "Request limit exceeded.")
_VALIDATION = (
    "ValidationException",
    "1 validation error detected: Value '1000' at 'maxResults' failed to "
    "satisfy constraint: Member must have value less than or equal to 100",
)
_NOT_FOUND = ("ResourceNotFoundException", "Requested resource not found")


class _Ctx:
    """Everything one unit needs while building events: its RNG, account, region, day and caches."""

    def __init__(self, world: _World, acct: _Account, region: str, day: date, rng: random.Random) -> None:
        self.world = world
        self.acct = acct
        self.region = region
        self.day = day
        self.day_prefix = day.isoformat()
        self.rng = rng
        self.r = rng.random
        self.pools = acct.pools[region]
        self.now = 0  # seconds into the day of the event being built
        self._ident: dict[tuple[int, int, str], tuple[dict[str, Any], str]] = {}
        self._big: dict[str, list[Any]] = {}
        self._tls: dict[str, list[dict[str, str]]] = {}

    # -- small pickers --------------------------------------------------------------------------------------
    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.r() * len(seq))]

    def ts(self, sec: int) -> str:
        return self.day_prefix + _HMS[sec] if sec < _SECONDS_PER_DAY else _iso(_day_epoch(self.day) + sec)

    def tls_details(self, host: str) -> dict[str, str]:
        variants = self._tls.get(host)
        if variants is None:
            variants = [
                {
                    "tlsVersion": "TLSv1.3",
                    "cipherSuite": "TLS_AES_128_GCM_SHA256",
                    "clientProvidedHostHeader": host,
                },
                {
                    "tlsVersion": "TLSv1.2",
                    "cipherSuite": "ECDHE-RSA-AES128-GCM-SHA256",
                    "clientProvidedHostHeader": host,
                },
            ]
            self._tls[host] = variants
        return variants[0] if self.r() < 0.8 else variants[1]

    def actor_arn(self, actor: _Actor, session: str | None = None) -> str:
        a = self.acct.id
        if actor.kind == "IAMUser":
            return f"arn:aws:iam::{a}:user/{actor.name}"
        if actor.kind == "AssumedRole":
            return f"arn:aws:sts::{a}:assumed-role/{actor.name}/{session or actor.sessions[0]}"
        if actor.kind == "Root":
            return f"arn:aws:iam::{a}:root"
        if actor.kind == "FederatedUser":
            return f"arn:aws:sts::{a}:federated-user/{session or actor.sessions[0]}"
        if actor.kind == "AWSAccount":
            return f"arn:aws:iam::{actor.account}:root"
        if actor.kind == "AWSService":
            return actor.name
        return f"arn:aws:iam::{a}:root"

    def role_arn(self, role: str) -> str:
        for actor in self.acct.actors:
            if actor.kind == "AssumedRole" and actor.name == role:
                return f"arn:aws:iam::{self.acct.id}:role{actor.role_path}{role}"
        return f"arn:aws:iam::{self.acct.id}:role/{role}"

    def credentials(self, role: str, session: str) -> dict[str, Any]:
        ak = _key_id(self.rng, "ASIA", 16)
        exp = _day_epoch(self.day) + self.now + 3600
        return {
            "credentials": {
                "accessKeyId": ak,
                "sessionToken": "IQoJb3JpZ2luX2VjE" + _b64(self.rng, 300 + int(self.r() * 300)),
                "expiration": _java_date(exp),
            },
            "assumedRoleUser": {
                "assumedRoleId": f"{_key_id(self.rng, 'AROA', 17)}:{session}",
                "arn": f"arn:aws:sts::{self.acct.id}:assumed-role/{role}/{session}",
            },
        }

    # -- identities -----------------------------------------------------------------------------------------
    def identity(self, actor: _Actor, sec: int, console: bool) -> tuple[dict[str, Any], str]:
        """userIdentity for an actor at a time; sessions last about an hour, so this caches per hour."""
        kind = actor.kind
        if kind in ("IAMUser", "AWSAccount", "AWSService") and not console:
            key = (actor.index, -1, "")
        else:
            key = (actor.index, sec // 3600, "c" if console else "")
        hit = self._ident.get(key)
        if hit is not None:
            return hit
        made = self._make_identity(actor, sec, console)
        self._ident[key] = made
        return made

    def _session_start(self, sec: int) -> str:
        start = max(0, (sec // 3600) * 3600 - int(self.r() * 2400))
        return self.ts(start)

    def _make_identity(self, actor: _Actor, sec: int, console: bool) -> tuple[dict[str, Any], str]:
        a = self.acct.id
        rng = self.rng
        kind = actor.kind
        if kind == "AWSService":
            return {"type": "AWSService", "invokedBy": actor.name}, ""
        if kind == "AWSAccount":
            return {"type": "AWSAccount", "principalId": actor.principal_id, "accountId": actor.account}, ""
        if kind == "IAMUser":
            ident: dict[str, Any] = {
                "type": "IAMUser",
                "principalId": actor.principal_id,
                "arn": f"arn:aws:iam::{a}:user/{actor.name}",
                "accountId": a,
            }
            if console:
                ident["accessKeyId"] = _key_id(rng, "ASIA", 16)
                ident["userName"] = actor.name
                ident["sessionContext"] = {
                    "sessionIssuer": {},
                    "webIdFederationData": {},
                    "attributes": {
                        "creationDate": self._session_start(sec),
                        "mfaAuthenticated": "true" if actor.mfa else "false",
                    },
                }
            else:
                ident["accessKeyId"] = actor.access_key
                ident["userName"] = actor.name
            return ident, ident["arn"]
        if kind == "Root":
            ident = {
                "type": "Root",
                "principalId": a,
                "arn": f"arn:aws:iam::{a}:root",
                "accountId": a,
                "accessKeyId": _key_id(rng, "ASIA", 16),
                "sessionContext": {
                    "sessionIssuer": {},
                    "webIdFederationData": {},
                    "attributes": {
                        "creationDate": self._session_start(sec),
                        "mfaAuthenticated": "true" if actor.mfa else "false",
                    },
                },
            }
            return ident, ident["arn"]
        if kind == "FederatedUser":
            session = self.pick(actor.sessions)
            arn = f"arn:aws:sts::{a}:federated-user/{session}"
            ident = {
                "type": "FederatedUser",
                "principalId": f"{a}:{session}",
                "arn": arn,
                "accountId": a,
                "accessKeyId": _key_id(rng, "ASIA", 16),
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "IAMUser",
                        "principalId": actor.principal_id,
                        "arn": f"arn:aws:iam::{a}:user/{actor.extra['issuer']}",
                        "accountId": a,
                        "userName": actor.extra["issuer"],
                    },
                    "webIdFederationData": {},
                    "attributes": {"creationDate": self._session_start(sec), "mfaAuthenticated": "false"},
                },
            }
            return ident, arn
        if kind == "AssumedRole":
            session = self.pick(actor.sessions)
            arn = f"arn:aws:sts::{a}:assumed-role/{actor.name}/{session}"
            ident = {
                "type": "AssumedRole",
                "principalId": f"{actor.principal_id}:{session}",
                "arn": arn,
                "accountId": a,
                "accessKeyId": _key_id(rng, "ASIA", 16),
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": actor.principal_id,
                        "arn": f"arn:aws:iam::{a}:role{actor.role_path}{actor.name}",
                        "accountId": a,
                        "userName": actor.name,
                    },
                    "webIdFederationData": {},
                    "attributes": {"creationDate": self._session_start(sec), "mfaAuthenticated": "false"},
                },
            }
            if "via" in actor.extra:
                ident["invokedBy"] = actor.extra["via"]
            return ident, arn
        if kind in ("SAMLUser", "WebIdentityUser"):
            return {"type": kind}, ""  # replaced per event by federated_identity()
        if kind == "IdentityCenterUser":
            return (
                {
                    "type": "IdentityCenterUser",
                    "accountId": a,
                    "onBehalfOf": {"userId": actor.principal_id, "identityStoreArn": actor.extra["store"]},
                    "credentialId": _rand_str(rng, _ALNUM + "-_", 64),
                },
                "",
            )
        raise ValueError(kind)

    def vpce(self, source: str) -> str:
        """A stable VPC endpoint id per account, region and service."""
        return "vpce-0" + hashlib.sha256(f"{self.acct.id}{self.region}{source}".encode()).hexdigest()[:16]

    def federated_identity(self, actor: _Actor, rp: dict[str, Any], re: dict[str, Any]) -> dict[str, Any]:
        """SAML and web-identity callers are named by the request itself, so build them from it."""
        if actor.kind == "SAMLUser":
            session = rp["roleSessionName"]
            return {
                "type": "SAMLUser",
                "principalId": f"{actor.principal_id}:{session}",
                "userName": session,
                "identityProvider": actor.principal_id,
            }
        subject = re["subjectFromWebIdentityToken"]
        provider = actor.extra["provider"]
        return {
            "type": "WebIdentityUser",
            "principalId": f"{provider}:{actor.extra['aud']}:{subject}",
            "userName": subject,
            "identityProvider": provider,
        }

    def big(self, name: str, make: Callable[[], Any]) -> Any:
        """A few large payloads per unit, reused: automation repeats the same huge request."""
        pool = self._big.setdefault(name, [])
        if len(pool) < 3:
            pool.append(make())
            return pool[-1]
        return self.pick(pool)


# -- request/response builders -----------------------------------------------------------------------------
# Each returns (requestParameters, responseElements, resources, additionalEventData).


_READ_POLICIES = ("ReadOnlyAccess", "AdministratorAccess", "AmazonS3ReadOnlyAccess")
_ATTACHED_POLICIES = ("AmazonS3ReadOnlyAccess", "CloudWatchLogsFullAccess", "AmazonSSMManagedInstanceCore")


def _arn(ctx: _Ctx, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{ctx.region}:{ctx.acct.id}:{resource}"


def _res(arn: str, acct: str, typ: str) -> list[dict[str, str]]:
    return [{"accountId": acct, "type": typ, "ARN": arn}]


def _b_assume_role(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    role = ctx.pick(ctx.pools.app_roles)
    if actor.kind == "AWSService":
        session = {
            "lambda.amazonaws.com": role.split("-role")[0],
            "ec2.amazonaws.com": f"i-0{_hex(ctx.rng, 16)}",
            "ecs-tasks.amazonaws.com": _hex(ctx.rng, 32),
        }.get(actor.name, f"{actor.name.split('.')[0]}-session")
    else:
        session = f"{actor.name}-{int(ctx.r() * 1e10)}"
    arn = ctx.role_arn(role)
    rp = {"roleArn": arn, "roleSessionName": session}
    if ctx.r() < 0.5:
        rp["durationSeconds"] = 3600
    return rp, ctx.credentials(role, session), _res(arn, ctx.acct.id, "AWS::IAM::Role"), None


def _b_assume_saml(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    role = actor.extra["role"]
    email = ctx.pick(actor.sessions)
    arn = ctx.role_arn(role)
    provider = f"arn:aws:iam::{ctx.acct.id}:saml-provider/{actor.extra['provider']}"
    rp = {
        "sAMLAssertionID": "id" + _hex(ctx.rng, 24),
        "roleSessionName": email,
        "principalArn": provider,
        "roleArn": arn,
        "durationSeconds": 3600,
    }
    re = ctx.credentials(role, email)
    re.update(
        {
            "packedPolicySize": 3,
            "subject": email,
            "subjectType": "unspecified",
            "issuer": "http://www.okta.com/exk1a2b3c4d5e6f7g8h9",
            "audience": "https://signin.aws.amazon.com/saml",
            "nameQualifier": actor.principal_id,
        }
    )
    return (
        rp,
        re,
        _res(arn, ctx.acct.id, "AWS::IAM::Role") + _res(provider, ctx.acct.id, "AWS::IAM::SAMLProvider"),
        None,
    )


def _b_assume_web(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    role = actor.extra["role"]
    session = (
        "GitHubActions" if "github" in actor.extra["provider"] else f"botocore-session-{int(ctx.r() * 1e10)}"
    )
    arn = ctx.role_arn(role)
    rp = {"roleArn": arn, "roleSessionName": session, "durationSeconds": 3600}
    re = ctx.credentials(role, session)
    re.update(
        {
            "subjectFromWebIdentityToken": ctx.pick(actor.sessions),
            "provider": actor.extra["provider"],
            "audience": actor.extra["aud"],
        }
    )
    return rp, re, _res(arn, ctx.acct.id, "AWS::IAM::Role"), None


def _b_federation_token(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    name = f"analyst-{1 + int(ctx.r() * 3)}"
    rp = {"name": name, "durationSeconds": 43200}
    re = {
        "credentials": {
            "accessKeyId": _key_id(ctx.rng, "ASIA", 16),
            "sessionToken": "IQoJb3JpZ2luX2VjE" + _b64(ctx.rng, 300),
            "expiration": "in 12 hours",
        },
        "federatedUser": {
            "federatedUserId": f"{ctx.acct.id}:{name}",
            "arn": f"arn:aws:sts::{ctx.acct.id}:federated-user/{name}",
        },
        "packedPolicySize": 6,
    }
    return rp, re, None, None


def _b_none(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return None, None, None, None


def _b_kms(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    key = ctx.pick(ctx.pools.keys)
    arn = f"arn:aws:kms:{ctx.region}:{ctx.acct.id}:key/{key}"
    host = actor.name if actor.kind == "AWSService" else ""
    if host.startswith("s3") or (not host and ctx.r() < 0.3):
        enc = {"aws:s3:arn": f"arn:aws:s3:::{ctx.pick(ctx.pools.buckets)}/{_hex(ctx.rng, 12)}.parquet"}
    elif host.startswith("secretsmanager"):
        enc = {
            "SecretARN": _arn(ctx, "secretsmanager", "secret:" + ctx.pick(ctx.pools.secrets)),
            "SecretVersionId": _uuid4(ctx.rng),
        }
    elif host.startswith("ec2"):
        enc = {"aws:ebs:id": ctx.pick(ctx.pools.volumes)}
    elif host.startswith("lambda"):
        enc = {
            "aws:lambda:FunctionArn": _arn(ctx, "lambda", "function:" + ctx.pick(ctx.pools.functions))
        }
    else:
        enc = {"aws:dynamodb:tableName": ctx.pick(ctx.pools.tables), "aws:dynamodb:subscriberId": ctx.acct.id}
    rp: dict[str, Any] = {"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": enc}
    if ctx.r() < 0.5:
        rp["keyId"] = arn
    return rp, None, _res(arn, ctx.acct.id, "AWS::KMS::Key"), None


def _b_kms_datakey(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    rp, _, res, _ = _b_kms(ctx, actor)
    rp.pop("encryptionAlgorithm", None)
    rp["keyId"] = res[0]["ARN"]
    rp["keySpec"] = "AES_256"
    return rp, None, res, None


def _s3_extra(ctx: _Ctx, out_bytes: float, in_bytes: float) -> dict[str, Any]:
    return {
        "SignatureVersion": "SigV4",
        "CipherSuite": "TLS_AES_128_GCM_SHA256",
        "bytesTransferredIn": in_bytes,
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": _b64(ctx.rng, 57),
        "bytesTransferredOut": out_bytes,
    }


def _object_key(ctx: _Ctx) -> str:
    y, m, d = ctx.day_prefix.split("-")
    return (
        f"{ctx.pick(_APPS)}/{y}/{m}/{d}/{_hex(ctx.rng, 16)}.{ctx.pick(('json.gz', 'parquet', 'csv', 'png'))}"
    )


def _b_s3_object(ctx: _Ctx, actor: _Actor, put: bool = False) -> tuple[Any, Any, Any, Any]:
    bucket = ctx.pick(ctx.pools.buckets)
    key = _object_key(ctx)
    size = float(int(ctx.r() ** 3 * 5_000_000) + 120)
    rp = {"bucketName": bucket, "Host": f"{bucket}.s3.{ctx.region}.amazonaws.com", "key": key}
    res = [
        {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
        {"accountId": ctx.acct.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
    ]
    if put:
        rp["x-amz-server-side-encryption"] = "aws:kms"
        key_arn = _arn(ctx, "kms", f"key/{ctx.pick(ctx.pools.keys)}")
        re = {
            "x-amz-server-side-encryption-aws-kms-key-id": key_arn,
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-bucket-key-enabled": "true",
        }
        return rp, re, res, _s3_extra(ctx, 0.0, size)
    return rp, None, res, _s3_extra(ctx, size, 0.0)


def _b_s3_put(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return _b_s3_object(ctx, actor, put=True)


def _b_s3_bucket(ctx: _Ctx, actor: _Actor, sub: str) -> tuple[Any, Any, Any, Any]:
    bucket = ctx.pick(ctx.pools.buckets)
    rp = {"bucketName": bucket, "Host": f"{bucket}.s3.{ctx.region}.amazonaws.com", sub: ""}
    res = _res(f"arn:aws:s3:::{bucket}", ctx.acct.id, "AWS::S3::Bucket")
    return (
        rp,
        None,
        res,
        {
            "SignatureVersion": "SigV4",
            "CipherSuite": "TLS_AES_128_GCM_SHA256",
            "bytesTransferredIn": 0,
            "AuthenticationMethod": "AuthHeader",
            "x-amz-id-2": _b64(ctx.rng, 57),
            "bytesTransferredOut": 0,
        },
    )


def _bucket_builder(sub: str) -> Builder:
    return lambda ctx, actor: _b_s3_bucket(ctx, actor, sub)


def _b_list_buckets(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {"Host": f"s3.{ctx.region}.amazonaws.com"},
        None,
        None,
        {
            "SignatureVersion": "SigV4",
            "CipherSuite": "TLS_AES_128_GCM_SHA256",
            "bytesTransferredIn": 0,
            "AuthenticationMethod": "AuthHeader",
            "x-amz-id-2": _b64(ctx.rng, 57),
            "bytesTransferredOut": 3211,
        },
    )


def _policy_document(ctx: _Ctx, statements: int) -> str:
    stmts = []
    for i in range(statements):
        bucket = ctx.pick(ctx.pools.buckets)
        stmts.append(
            {
                "Sid": f"Stmt{i}{_hex(ctx.rng, 6)}",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:ListBucket",
                    "kms:Decrypt",
                    "kms:GenerateDataKey",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{ctx.pick(_APPS)}/*"],
                "Condition": {
                    "StringEquals": {
                        "aws:PrincipalOrgID": ctx.world.org_id,
                        "aws:SourceVpce": f"vpce-0{_hex(ctx.rng, 16)}",
                    }
                },
            }
        )
    return orjson.dumps({"Version": "2012-10-17", "Statement": stmts}).decode()


def _b_put_bucket_policy(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    bucket = ctx.pick(ctx.pools.buckets)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    rp = {
        "bucketPolicy": policy,
        "bucketName": bucket,
        "Host": f"{bucket}.s3.{ctx.region}.amazonaws.com",
        "policy": "",
    }
    return (
        rp,
        None,
        _res(f"arn:aws:s3:::{bucket}", ctx.acct.id, "AWS::S3::Bucket"),
        {
            "SignatureVersion": "SigV4",
            "CipherSuite": "TLS_AES_128_GCM_SHA256",
            "bytesTransferredIn": 312,
            "AuthenticationMethod": "AuthHeader",
            "x-amz-id-2": _b64(ctx.rng, 57),
            "bytesTransferredOut": 0,
        },
    )


def _b_create_bucket(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    bucket = f"{ctx.acct.name}-{ctx.pick(_APPS)}-tmp-{_hex(ctx.rng, 8)}"
    rp = {
        "CreateBucketConfiguration": {
            "LocationConstraint": ctx.region,
            "xmlns": "http://s3.amazonaws.com/doc/2006-03-01/",
        },
        "bucketName": bucket,
        "Host": f"{bucket}.s3.{ctx.region}.amazonaws.com",
    }
    return rp, None, _res(f"arn:aws:s3:::{bucket}", ctx.acct.id, "AWS::S3::Bucket"), None


def _ec2_filter(ctx: _Ctx) -> dict[str, Any]:
    if ctx.r() < 0.5:
        return {}
    return {"items": [{"name": "tag:app", "valueSet": {"items": [{"value": ctx.pick(_APPS)}]}}]}


# Chance that a call of the API carries a huge request (thousands of ids, a 50 KB policy, 100 evaluations),
# tuned so that about 0.2% of all events carry tens of KB of request parameters.
_BIG_SHARE: dict[str, float] = {"instancesSet": 0.012, "volumeSet": 0.02, "policy": 0.25, "evaluations": 0.02}


def _b_describe(set_name: str, pool: str | None = None, big: bool = False) -> Builder:
    """ec2 Describe*: mostly filters, sometimes one id, rarely (``big``) a list of thousands of ids."""
    id_key, id_prefix = ("instanceId", "i") if pool == "instances" else ("volumeId", "vol")

    def many_ids(ctx: _Ctx) -> dict[str, Any]:
        count = 800 + int(ctx.r() * 1400)
        return {"items": [{id_key: f"{id_prefix}-0{_hex(ctx.rng, 16)}"} for _ in range(count)]}

    def build(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
        items: Any = {}
        if pool is not None and ctx.r() < 0.3:
            items = {"items": [{id_key: ctx.pick(getattr(ctx.pools, pool))}]}
        if big and ctx.r() < _BIG_SHARE[set_name]:
            items = ctx.big(set_name, lambda: many_ids(ctx))
        rp: dict[str, Any] = {set_name: items} if set_name else {}
        rp["filterSet"] = _ec2_filter(ctx)
        if ctx.r() < 0.3:
            rp["maxResults"] = 1000
        return rp, None, None, None

    return build


def _b_describe_sg(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    rp: dict[str, Any] = {"securityGroupSet": {}, "securityGroupIdSet": {}, "filterSet": _ec2_filter(ctx)}
    if ctx.r() < 0.4:
        rp["securityGroupIdSet"] = {"items": [{"groupId": ctx.pick(ctx.pools.sgs)}]}
    return rp, None, None, None


def _b_describe_ni(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "networkInterfaceIdSet": {},
            "filterSet": {
                "items": [
                    {"name": "subnet-id", "valueSet": {"items": [{"value": ctx.pick(ctx.pools.subnets)}]}}
                ]
            },
        },
        None,
        None,
        None,
    )


def _b_run_instances(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    itype = ctx.pick(("t3.micro", "t3.medium", "m6i.large", "c6g.xlarge", "r6i.2xlarge"))
    ami = ctx.pick(ctx.pools.amis)
    sg = ctx.pick(ctx.pools.sgs)
    subnet = ctx.pick(ctx.pools.subnets)
    iid = f"i-0{_hex(ctx.rng, 16)}"
    rp = {
        "instancesSet": {"items": [{"imageId": ami, "minCount": 1, "maxCount": 1}]},
        "instanceType": itype,
        "blockDeviceMapping": {},
        "monitoring": {"enabled": False},
        "disableApiTermination": False,
        "disableApiStop": False,
        "clientToken": _uuid4(ctx.rng),
        "networkInterfaceSet": {
            "items": [{"deviceIndex": 0, "subnetId": subnet, "groupSet": {"items": [{"groupId": sg}]}}]
        },
        "tagSpecificationSet": {
            "items": [
                {
                    "resourceType": "instance",
                    "tags": [
                        {"key": "app", "value": ctx.pick(_APPS)},
                        {"key": "env", "value": ctx.acct.name},
                    ],
                }
            ]
        },
    }
    re = {
        "requestId": _uuid4(ctx.rng),
        "reservationId": f"r-0{_hex(ctx.rng, 16)}",
        "ownerId": ctx.acct.id,
        "groupSet": {},
        "instancesSet": {
            "items": [
                {
                    "instanceId": iid,
                    "imageId": ami,
                    "currentInstanceBootMode": "uefi",
                    "instanceState": {"code": 0, "name": "pending"},
                    "privateDnsName": f"ip-10-0-{int(ctx.r() * 255)}-{int(ctx.r() * 255)}.ec2.internal",
                    "amiLaunchIndex": 0,
                    "productCodes": {},
                    "instanceType": itype,
                    "launchTime": 1700000000000,
                    "placement": {"availabilityZone": f"{ctx.region}a", "tenancy": "default"},
                    "monitoring": {"state": "disabled"},
                    "subnetId": subnet,
                    "vpcId": ctx.pick(ctx.pools.vpcs),
                    "privateIpAddress": f"10.0.{int(ctx.r() * 255)}.{int(ctx.r() * 255)}",
                    "stateReason": {"code": "pending", "message": "pending"},
                    "architecture": "x86_64",
                    "rootDeviceType": "ebs",
                    "rootDeviceName": "/dev/xvda",
                    "blockDeviceMapping": {},
                    "virtualizationType": "hvm",
                    "hypervisor": "xen",
                    "groupSet": {"items": [{"groupId": sg, "groupName": "app"}]},
                    "ebsOptimized": False,
                    "enaSupport": True,
                    "capacityReservationSpecification": {"capacityReservationPreference": "open"},
                    "maintenanceOptions": {"autoRecovery": "default"},
                }
            ]
        },
        "requesterId": None,
    }
    re.pop("requesterId")
    return rp, re, None, None


def _b_instances_state(name: str) -> Builder:
    def build(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
        iid = ctx.pick(ctx.pools.instances)
        rp = {"instancesSet": {"items": [{"instanceId": iid}]}}
        if name != "TerminateInstances":
            rp["force"] = False
        new = {
            "StopInstances": (64, "stopping"),
            "StartInstances": (0, "pending"),
            "TerminateInstances": (32, "shutting-down"),
        }[name]
        re = {
            "requestId": _uuid4(ctx.rng),
            "instancesSet": {
                "items": [
                    {
                        "instanceId": iid,
                        "currentState": {"code": new[0], "name": new[1]},
                        "previousState": {"code": 16, "name": "running"},
                    }
                ]
            },
        }
        return rp, re, None, None

    return build


def _b_create_tags(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    rp = {
        "resourcesSet": {"items": [{"resourceId": ctx.pick(ctx.pools.instances)}]},
        "tagSet": {
            "items": [{"key": "owner", "value": ctx.pick(_GIVEN)}, {"key": "app", "value": ctx.pick(_APPS)}]
        },
    }
    return rp, {"requestId": _uuid4(ctx.rng), "_return": True}, None, None


def _ip_permissions(port: int, cidr: str, description: str) -> dict[str, Any]:
    return {
        "items": [
            {
                "ipProtocol": "tcp",
                "fromPort": port,
                "toPort": port,
                "groups": {},
                "ipRanges": {"items": [{"cidrIp": cidr, "description": description}]},
                "ipv6Ranges": {},
                "prefixListIds": {},
            }
        ]
    }


def _b_sg_ingress(
    ctx: _Ctx, actor: _Actor, cidr: str | None = None, port: int | None = None, revoke: bool = False
) -> tuple[Any, Any, Any, Any]:
    sg = ctx.pick(ctx.pools.sgs)
    port = port or ctx.pick((443, 5432, 6379, 8080, 3306))
    cidr = cidr or ctx.pick(("10.0.0.0/16", "10.20.0.0/16", "172.16.0.0/12", "10.0.32.0/20"))
    rp = {"groupId": sg, "ipPermissions": _ip_permissions(port, cidr, "" if revoke else "internal")}
    if revoke:
        return rp, {"requestId": _uuid4(ctx.rng), "_return": True}, None, None
    re = {
        "requestId": _uuid4(ctx.rng),
        "_return": True,
        "securityGroupRuleSet": {
            "items": [
                {
                    "groupOwnerId": ctx.acct.id,
                    "groupId": sg,
                    "securityGroupRuleId": f"sgr-0{_hex(ctx.rng, 16)}",
                    "isEgress": False,
                    "ipProtocol": "tcp",
                    "fromPort": port,
                    "toPort": port,
                    "cidrIpv4": cidr,
                }
            ]
        },
    }
    return rp, re, None, None


def _b_sg_revoke(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return _b_sg_ingress(ctx, actor, revoke=True)


def _b_create_sg(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    name = f"{ctx.pick(_APPS)}-{_hex(ctx.rng, 6)}"
    rp = {
        "groupName": name,
        "groupDescription": f"{name} managed by terraform",
        "vpcId": ctx.pick(ctx.pools.vpcs),
    }
    return (
        rp,
        {"requestId": _uuid4(ctx.rng), "_return": True, "groupId": f"sg-0{_hex(ctx.rng, 16)}"},
        None,
        None,
    )


def _b_iam_role(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"roleName": ctx.pick(ctx.pools.roles)}, None, None, None


def _b_iam_list(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return ({"maxItems": 1000} if ctx.r() < 0.5 else None), None, None, None


def _b_iam_policy_version(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "policyArn": "arn:aws:iam::aws:policy/" + ctx.pick(_READ_POLICIES),
            "versionId": f"v{1 + int(ctx.r() * 9)}",
        },
        None,
        None,
        None,
    )


def _b_create_user(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    name = f"svc-{ctx.pick(_APPS)}-{_hex(ctx.rng, 6)}"
    re = {
        "user": {
            "path": "/",
            "userName": name,
            "userId": _key_id(ctx.rng, "AIDA", 17),
            "arn": f"arn:aws:iam::{ctx.acct.id}:user/{name}",
            "createDate": "Jan 1, 2024, 12:00:00 PM",
        }
    }
    return {"userName": name}, re, None, None


def _b_create_access_key(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    user = ctx.pick(ctx.pools.users)
    re = {
        "accessKey": {
            "userName": user,
            "accessKeyId": _key_id(ctx.rng, "AKIA", 16),
            "status": "Active",
            "createDate": "Jan 1, 2024, 12:00:00 PM",
        }
    }
    return {"userName": user}, re, None, None


def _b_attach_role_policy(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "roleName": ctx.pick(ctx.pools.roles),
            "policyArn": "arn:aws:iam::aws:policy/" + ctx.pick(_ATTACHED_POLICIES),
        },
        None,
        None,
        None,
    )


def _b_put_role_policy(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    role = ctx.pick(ctx.pools.roles)
    if ctx.r() < _BIG_SHARE["policy"]:
        doc = ctx.big("policy", lambda: _policy_document(ctx, 60 + int(ctx.r() * 80)))
    else:
        doc = _policy_document(ctx, 1 + int(ctx.r() * 3))
    return {"roleName": role, "policyName": f"{role}-inline", "policyDocument": doc}, None, None, None


def _b_create_policy(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    name = f"{ctx.pick(_APPS)}-access-{_hex(ctx.rng, 6)}"
    doc = (
        ctx.big("policy", lambda: _policy_document(ctx, 60 + int(ctx.r() * 80)))
        if ctx.r() < _BIG_SHARE["policy"]
        else _policy_document(ctx, 2)
    )
    re = {
        "policy": {
            "policyName": name,
            "policyId": _key_id(ctx.rng, "ANPA", 17),
            "arn": f"arn:aws:iam::{ctx.acct.id}:policy/{name}",
            "path": "/",
            "defaultVersionId": "v1",
            "attachmentCount": 0,
            "permissionsBoundaryUsageCount": 0,
            "isAttachable": True,
            "createDate": "Jan 1, 2024, 12:00:00 PM",
            "updateDate": "Jan 1, 2024, 12:00:00 PM",
        }
    }
    return {"policyName": name, "policyDocument": doc}, re, None, None


def _b_lambda_fn(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"functionName": ctx.pick(ctx.pools.functions)}, None, None, None


def _b_lambda_update(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    fn = ctx.pick(ctx.pools.functions)
    arn = f"arn:aws:lambda:{ctx.region}:{ctx.acct.id}:function:{fn}"
    rp = {
        "functionName": fn,
        "s3Bucket": ctx.pick(ctx.pools.buckets),
        "s3Key": f"builds/{fn}/{_hex(ctx.rng, 40)}.zip",
        "publish": True,
        "dryRun": False,
    }
    re = {
        "functionName": fn,
        "functionArn": arn,
        "runtime": "python3.12",
        "role": ctx.role_arn(ctx.pick(ctx.pools.roles)),
        "handler": "app.handler",
        "codeSize": int(ctx.r() * 5e6),
        "description": "",
        "timeout": 30,
        "memorySize": 512,
        "lastModified": ctx.day_prefix + "T12:00:00.000+0000",
        "codeSha256": _b64(ctx.rng, 32),
        "version": str(1 + int(ctx.r() * 200)),
        "tracingConfig": {"mode": "PassThrough"},
        "revisionId": _uuid4(ctx.rng),
        "state": "Active",
        "lastUpdateStatus": "InProgress",
        "packageType": "Zip",
        "architectures": ["arm64"],
        "ephemeralStorage": {"size": 512},
    }
    return rp, re, None, None


def _b_invoke(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    fn = ctx.pick(ctx.pools.functions)
    arn = f"arn:aws:lambda:{ctx.region}:{ctx.acct.id}:function:{fn}"
    return (
        {
            "functionName": arn,
            "invocationType": ctx.pick(("RequestResponse", "Event")),
            "sourceArn": f"arn:aws:events:{ctx.region}:{ctx.acct.id}:rule/{fn}-schedule",
        },
        None,
        _res(arn, ctx.acct.id, "AWS::Lambda::Function"),
        None,
    )


def _b_ddb_item(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    table = ctx.pick(ctx.pools.tables)
    arn = f"arn:aws:dynamodb:{ctx.region}:{ctx.acct.id}:table/{table}"
    return (
        {"tableName": table, "key": {"pk": "HIDDEN_DUE_TO_SECURITY_REASONS"}, "consistentRead": False},
        None,
        _res(arn, ctx.acct.id, "AWS::DynamoDB::Table"),
        None,
    )


def _b_ddb_query(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    table = ctx.pick(ctx.pools.tables)
    arn = f"arn:aws:dynamodb:{ctx.region}:{ctx.acct.id}:table/{table}"
    return (
        {
            "tableName": table,
            "keyConditionExpression": "pk = :pk",
            "limit": 100,
            "select": "ALL_ATTRIBUTES",
            "expressionAttributeValues": {":pk": "HIDDEN_DUE_TO_SECURITY_REASONS"},
        },
        None,
        _res(arn, ctx.acct.id, "AWS::DynamoDB::Table"),
        None,
    )


def _b_ddb_table(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"tableName": ctx.pick(ctx.pools.tables)}, None, None, None


def _b_logs_stream(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    y, m, d = ctx.day_prefix.split("-")
    return (
        {
            "logGroupName": ctx.pick(ctx.pools.log_groups),
            "logStreamName": f"{y}/{m}/{d}/[$LATEST]{_hex(ctx.rng, 32)}",
        },
        None,
        None,
        None,
    )


def _b_logs_groups(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return ({"logGroupNamePrefix": "/aws/lambda/"} if ctx.r() < 0.5 else {"limit": 50}), None, None, None


def _b_logs_retention(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {"logGroupName": ctx.pick(ctx.pools.log_groups), "retentionInDays": ctx.pick((14, 30, 90, 365))},
        None,
        None,
        None,
    )


def _b_ssm_param(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"name": ctx.pick(ctx.pools.params), "withDecryption": ctx.r() < 0.6}, None, None, None


def _b_ssm_params(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    names = [ctx.pick(ctx.pools.params) for _ in range(1 + int(ctx.r() * 9))]
    return {"names": names, "withDecryption": True}, None, None, None


def _b_ssm_update(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "instanceId": ctx.pick(ctx.pools.instances),
            "agentVersion": "3.3.131.0",
            "agentStatus": "Active",
            "platformType": "Linux",
            "platformName": "Amazon Linux",
            "platformVersion": "2023",
            "iPAddress": f"10.0.{int(ctx.r() * 255)}.{int(ctx.r() * 255)}",
            "computerName": "ip-10-0-1-1.ec2.internal",
            "agentName": "amazon-ssm-agent",
            "availabilityZone": f"{ctx.region}a",
            "availabilityZoneId": "use1-az1",
        },
        None,
        None,
        None,
    )


def _b_ssm_describe(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"maxResults": 50}, None, None, None


def _b_secret(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    arn = f"arn:aws:secretsmanager:{ctx.region}:{ctx.acct.id}:secret:{ctx.pick(ctx.pools.secrets)}"
    return {"secretId": arn}, None, None, None


def _b_rotation(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    arn = f"arn:aws:secretsmanager:{ctx.region}:{ctx.acct.id}:secret:{ctx.pick(ctx.pools.secrets)}"
    return None, None, _res(arn, ctx.acct.id, "AWS::SecretsManager::Secret"), None


def _b_alarms(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    if ctx.r() < 0.5:
        return {"alarmNames": [ctx.pick(ctx.pools.alarms)]}, None, None, None
    return {"maxRecords": 100, "alarmTypes": ["CompositeAlarm", "MetricAlarm"]}, None, None, None


def _b_put_evaluations(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    def evaluations(n: int) -> list[dict[str, Any]]:
        return [
            {
                "complianceResourceType": "AWS::EC2::Instance",
                "complianceResourceId": f"i-0{_hex(ctx.rng, 16)}",
                "complianceType": ctx.pick(("COMPLIANT", "NON_COMPLIANT")),
                "annotation": "Evaluated by custom rule",
                "orderingTimestamp": ctx.day_prefix + "T00:00:00Z",
            }
            for _ in range(n)
        ]

    if ctx.r() < _BIG_SHARE["evaluations"]:
        evals = ctx.big("evaluations", lambda: evaluations(100))
    else:
        evals = evaluations(1 + int(ctx.r() * 3))
    return (
        {"evaluations": evals, "resultToken": _b64(ctx.rng, 96), "testMode": False},
        {"failedEvaluations": []},
        None,
        None,
    )


def _b_config_rules(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"configRuleNames": [ctx.pick(ctx.pools.config_rules)]}, None, None, None


def _b_gd(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    rp: dict[str, Any] = {"detectorId": ctx.pools.detector}
    if ctx.r() < 0.5:
        rp["findingCriteria"] = {"criterion": {"service.archived": {"eq": ["false"]}}}
        rp["maxResults"] = 50
    return rp, None, None, None


def _b_gd_findings(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "detectorId": ctx.pools.detector,
            "findingIds": [_hex(ctx.rng, 32) for _ in range(1 + int(ctx.r() * 5))],
        },
        None,
        None,
        None,
    )


def _b_trail(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    arn = f"arn:aws:cloudtrail:{HOME_REGION}:{ctx.acct.id}:trail/{ctx.acct.trail_name}"
    return {"name": arn}, None, None, None


def _b_describe_trails(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"includeShadowTrails": True}, None, None, None


def _b_lookup(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "lookupAttributes": [
                {"attributeKey": "EventName", "attributeValue": ctx.pick(("ConsoleLogin", "RunInstances"))}
            ],
            "maxResults": 50,
        },
        None,
        None,
        None,
    )


def _b_console_login(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    aed: dict[str, Any] = {
        "LoginTo": "https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_us-east-1_"
        + _hex(ctx.rng, 16),
        "MobileVersion": "No",
        "MFAUsed": "No",
    }
    if actor.kind == "IAMUser" or (actor.kind == "Root" and actor.mfa):
        aed["MFAIdentifier"] = (
            f"arn:aws:iam::{ctx.acct.id}:mfa/{actor.name}"
            if actor.kind == "IAMUser"
            else f"arn:aws:iam::{ctx.acct.id}:mfa/root-account-mfa-device"
        )
        aed["MFAUsed"] = "Yes"
    elif actor.extra.get("saml"):
        aed["SamlProviderArn"] = f"arn:aws:iam::{ctx.acct.id}:saml-provider/Okta"
    return None, {"ConsoleLogin": "Success"}, None, aed


def _b_sso_role(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {"accountId": ctx.pick([a.id for a in ctx.world.accounts[:3]]), "roleName": "AdministratorAccess"},
        None,
        None,
        None,
    )


def _b_kms_rotate(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    key = ctx.pick(ctx.pools.keys)
    return (
        None,
        None,
        _res(f"arn:aws:kms:{ctx.region}:{ctx.acct.id}:key/{key}", ctx.acct.id, "AWS::KMS::Key"),
        None,
    )


def _b_regions(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"regionSet": {}, "allRegions": ctx.r() < 0.3}, None, None, None


_SVC_ASSUME = (
    "lambda.amazonaws.com",
    "ecs-tasks.amazonaws.com",
    "ec2.amazonaws.com",
    "config.amazonaws.com",
    "events.amazonaws.com",
    "ssm.amazonaws.com",
)
_SVC_KMS = (
    "s3.amazonaws.com",
    "secretsmanager.amazonaws.com",
    "ec2.amazonaws.com",
    "lambda.amazonaws.com",
    "dynamodb.amazonaws.com",
    "logs.amazonaws.com",
)

# Error codes and messages as CloudTrail shows them; "@..." messages are filled in per event.
_E_S3_DENIED = ("AccessDenied", "Access Denied")
_E_KMS_THROTTLE = ("ThrottlingException", "You have exceeded the rate at which you may call KMS. Reduce the "
                   "frequency of your calls.")
_E_NO_KEY = ("NoSuchKey", "The specified key does not exist.")
_E_NO_ROLE = ("NoSuchEntityException", "@nosuchrole")
_E_IAM_THROTTLE = ("Throttling", "Rate exceeded")
_E_LOG_STREAM = ("ResourceAlreadyExistsException", "The specified log stream already exists")
_E_DDB_THROUGHPUT = (
    "ProvisionedThroughputExceededException",
    "The level of configured provisioned throughput for the table was exceeded. Consider "
    "increasing your provisioning level with the UpdateTable API.",
)
_E_NO_SECRET = ("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
_E_GD_BAD = (
    "BadRequestException",
    "The request is rejected because an invalid or out-of-range value is specified as an input parameter.",
)
_E_OIDC = (
    "InvalidIdentityToken",
    "No OpenIDConnect provider found in your account for https://token.actions.githubusercontent.com",
)
_E_CAPACITY = (
    "Server.InsufficientInstanceCapacity",
    "We currently do not have sufficient capacity in the Availability Zone you requested.",
)
_E_LAMBDA_CONFLICT = (
    "ResourceConflictException",
    "The operation cannot be performed at this time. An update is in progress for resource",
)
_E_BUCKET_OWNED = (
    "BucketAlreadyOwnedByYou",
    "Your previous request to create the named bucket succeeded and you already own it.",
)


def _api_catalogue() -> list[_Api]:
    """APIs in popularity order; weights are assigned from the rank (Zipf, s=1) afterwards."""
    A = _Api  # a short alias keeps the table readable
    ec2, s3, iam, sts = "ec2.amazonaws.com", "s3.amazonaws.com", "iam.amazonaws.com", "sts.amazonaws.com"
    kms, ddb, lam = "kms.amazonaws.com", "dynamodb.amazonaws.com", "lambda.amazonaws.com"
    logs, ssm, sm = "logs.amazonaws.com", "ssm.amazonaws.com", "secretsmanager.amazonaws.com"
    cw, cfg, gd = "monitoring.amazonaws.com", "config.amazonaws.com", "guardduty.amazonaws.com"
    ct, sso, signin = "cloudtrail.amazonaws.com", "sso.amazonaws.com", "signin.amazonaws.com"
    denied, denied_x, unauth = (_ACCESS_DENIED,), (_ACCESS_DENIED_EXC,), (_EC2_UNAUTH,)
    throttle, s3_denied = (_THROTTLING,), (_E_S3_DENIED,)
    s3v = {"version": "1.09", "request_id": "s3"}
    data = {"category": "Data", "version": "1.09"}
    asg, elb = ("autoscaling.amazonaws.com",), ("elasticloadbalancing.amazonaws.com",)
    # fmt: off
    apis = [
        A(sts, "AssumeRole", True, {_S: 5, _A: 3, _H: 1}, _b_assume_role, 0.012,
          (_ACCESS_DENIED, _E_IAM_THROTTLE), svc_hosts=_SVC_ASSUME),
        A(kms, "Decrypt", True, {_S: 4, _A: 4, _H: 0.3}, _b_kms, 0.01,
          (_ACCESS_DENIED_EXC, ("InvalidCiphertextException", ""), _E_KMS_THROTTLE), svc_hosts=_SVC_KMS),
        A(s3, "GetObject", True, {_A: 6, _H: 0.5}, _b_s3_object, 0.035, (_E_NO_KEY, _E_S3_DENIED),
          request_id="s3", **data),
        A(ec2, "DescribeInstances", True, {_A: 4, _H: 2, _S: 0.5},
          _b_describe("instancesSet", "instances", True), 0.02, (_EC2_UNAUTH, _EC2_LIMIT),
          svc_hosts=asg + elb),
        A(logs, "CreateLogStream", False, {_A: 1}, _b_logs_stream, 0.04, (_E_LOG_STREAM,)),
        A(kms, "GenerateDataKey", True, {_S: 4, _A: 3, _H: 0.2}, _b_kms_datakey, 0.008, denied_x,
          svc_hosts=_SVC_KMS),
        A(ssm, "UpdateInstanceInformation", False, {_A: 1}, _b_ssm_update, 0.005, throttle),
        A(ddb, "GetItem", True, {_A: 1}, _b_ddb_item, 0.004, (_E_DDB_THROUGHPUT,), **data),
        A(ssm, "GetParameter", True, {_A: 5, _H: 1}, _b_ssm_param, 0.03,
          (("ParameterNotFound", ""), _ACCESS_DENIED_EXC)),
        A(s3, "PutObject", False, {_A: 6, _H: 0.3}, _b_s3_put, 0.01, s3_denied, request_id="s3", **data),
        A(sts, "GetCallerIdentity", True, {_A: 3, _H: 2}, _b_none, 0.0),
        A(ec2, "DescribeSecurityGroups", True, {_A: 3, _H: 2, _S: 0.3}, _b_describe_sg, 0.02, unauth,
          svc_hosts=elb),
        A(sm, "GetSecretValue", True, {_A: 5, _H: 0.5}, _b_secret, 0.015, (_E_NO_SECRET, _ACCESS_DENIED_EXC)),
        A(ddb, "Query", True, {_A: 1}, _b_ddb_query, 0.006, (_VALIDATION,), **data),
        A(s3, "ListBuckets", True, {_A: 2, _H: 2}, _b_list_buckets, 0.02, s3_denied, **s3v),
        A(ec2, "DescribeNetworkInterfaces", True, {_S: 3, _A: 1}, _b_describe_ni, 0.01, (_EC2_LIMIT,),
          svc_hosts=("lambda.amazonaws.com", "ecs.amazonaws.com", *elb)),
        A(lam, "Invoke", False, {_S: 2, _A: 3}, _b_invoke, 0.01,
          (("TooManyRequestsException", "Rate Exceeded."),), category="Data",
          svc_hosts=("events.amazonaws.com", "apigateway.amazonaws.com", "s3.amazonaws.com")),
        A(logs, "DescribeLogGroups", True, {_A: 2, _H: 2}, _b_logs_groups, 0.015, throttle),
        A(iam, "GetRole", True, {_A: 3, _H: 1, _S: 0.5}, _b_iam_role, 0.06, (_E_NO_ROLE,),
          svc_hosts=("cloudformation.amazonaws.com",)),
        A(ec2, "DescribeVolumes", True, {_A: 3, _H: 1}, _b_describe("volumeSet", "volumes", True), 0.01,
          unauth),
        A(s3, "GetBucketLocation", True, {_A: 3, _H: 1}, _bucket_builder("location"), 0.01, s3_denied, **s3v),
        A(cfg, "PutEvaluations", False, {_A: 1}, _b_put_evaluations, 0.01, throttle),
        A(cw, "DescribeAlarms", True, {_A: 2, _H: 2}, _b_alarms, 0.01, (_E_IAM_THROTTLE,)),
        A(ec2, "DescribeSubnets", True, {_A: 3, _H: 1, _S: 0.5}, _b_describe("subnetSet"), 0.01, unauth,
          svc_hosts=elb),
        A(ddb, "PutItem", False, {_A: 1}, _b_ddb_item, 0.01,
          (("ConditionalCheckFailedException", "The conditional request failed"),), **data),
        A(kms, "Encrypt", True, {_S: 2, _A: 2}, _b_kms, 0.005, denied_x, svc_hosts=_SVC_KMS),
        A(ec2, "DescribeVpcs", True, {_A: 2, _H: 1}, _b_describe("vpcSet"), 0.01, unauth),
        A(ct, "LookupEvents", True, {_H: 2, _A: 1}, _b_lookup, 0.03, throttle),
        A(gd, "ListFindings", True, {_A: 2, _H: 1}, _b_gd, 0.005, (_E_GD_BAD,)),
        A(iam, "ListRoles", True, {_A: 2, _H: 2}, _b_iam_list, 0.01, (_E_IAM_THROTTLE,)),
        A(ec2, "DescribeImages", True, {_A: 2, _H: 1}, _b_describe("imagesSet"), 0.01, unauth),
        A(s3, "GetBucketPolicy", True, {_A: 2, _H: 1, _S: 1}, _bucket_builder("policy"), 0.08,
          (("NoSuchBucketPolicy", "The bucket policy does not exist"),),
          svc_hosts=("access-analyzer.amazonaws.com", "config.amazonaws.com"), **s3v),
        A(lam, "ListFunctions20150331", True, {_A: 2, _H: 2}, _b_none, 0.01, throttle),
        A(cfg, "DescribeConfigRules", True, {_A: 1, _H: 1}, _b_config_rules, 0.0),
        A(ec2, "DescribeTags", True, {_A: 2, _H: 0.5}, _b_describe(""), 0.005, (_EC2_LIMIT,)),
        A(iam, "GetPolicyVersion", True, {_A: 2, _H: 1, _S: 1}, _b_iam_policy_version, 0.01,
          (("NoSuchEntityException", "Policy version does not exist."),),
          svc_hosts=("access-analyzer.amazonaws.com",)),
        A(sts, "AssumeRoleWithWebIdentity", True, {"webid": 1}, _b_assume_web, 0.01, (_E_OIDC,)),
        A(ec2, "CreateTags", False, {_A: 3, _H: 1, _S: 1}, _b_create_tags, 0.01, unauth, svc_hosts=asg),
        A(iam, "ListAttachedRolePolicies", True, {_A: 2, _H: 1}, _b_iam_role, 0.02, (_E_NO_ROLE,)),
        A(gd, "GetFindings", True, {_A: 2, _H: 1}, _b_gd_findings, 0.0),
        A(ssm, "DescribeInstanceInformation", True, {_A: 2, _H: 1}, _b_ssm_describe, 0.005, throttle),
        A(ct, "DescribeTrails", True, {_A: 2, _H: 1, _S: 1}, _b_describe_trails, 0.0,
          svc_hosts=("config.amazonaws.com",)),
        A(ddb, "DescribeTable", True, {_A: 3, _H: 1}, _b_ddb_table, 0.01, (_NOT_FOUND, _THROTTLING)),
        A(signin, "ConsoleLogin", False, {_H: 3, "root": 0.02}, _b_console_login, 0.03,
          ((None, "Failed authentication"),), event_type="AwsConsoleSignIn", version="1.09",
          request_id="none", tls=False),
        A(sts, "AssumeRoleWithSAML", True, {"saml": 1}, _b_assume_saml, 0.01,
          (("InvalidIdentityToken", "Specified provider doesn't exist"),)),
        A(sso, "ListAccounts", True, {"idc": 1}, _b_none, 0.0, version="1.10", tls=False),
        A(ct, "GetTrailStatus", True, {_A: 2, _H: 1}, _b_trail, 0.0),
        A(lam, "GetFunction20150331v2", True, {_A: 2, _H: 2}, _b_lambda_fn, 0.04,
          (("ResourceNotFoundException", "@nofunction"),)),
        A(iam, "ListUsers", True, {_A: 1, _H: 2}, _b_iam_list, 0.01, denied),
        A(ec2, "RunInstances", False, {_A: 3, _H: 1, _S: 1}, _b_run_instances, 0.04,
          (_EC2_UNAUTH, _E_CAPACITY), svc_hosts=asg),
        A(ec2, "TerminateInstances", False, {_A: 3, _H: 1, _S: 1}, _b_instances_state("TerminateInstances"),
          0.02, unauth, svc_hosts=asg),
        A(sm, "DescribeSecret", True, {_A: 2, _H: 1}, _b_secret, 0.01, (_E_NO_SECRET,)),
        A(ssm, "GetParameters", True, {_A: 3, _H: 1}, _b_ssm_params, 0.01, throttle),
        A(lam, "UpdateFunctionCode20150331v2", False, {_A: 3, _H: 1}, _b_lambda_update, 0.02,
          (_E_LAMBDA_CONFLICT,)),
        A(ec2, "AuthorizeSecurityGroupIngress", False, {_A: 2, _H: 1}, _b_sg_ingress, 0.03,
          (("Client.InvalidPermission.Duplicate", "the specified rule already exists"),)),
        A(iam, "CreateUser", False, {_A: 1, _H: 1}, _b_create_user, 0.02,
          (("EntityAlreadyExistsException", "User already exists."),)),
        A(s3, "PutBucketPolicy", False, {_A: 2, _H: 1}, _b_put_bucket_policy, 0.02,
          (("MalformedPolicy", "Policy has invalid resource"),), **s3v),
        A(ec2, "CreateSecurityGroup", False, {_A: 2, _H: 1}, _b_create_sg, 0.02,
          (("Client.InvalidGroup.Duplicate", "The security group already exists for VPC"),)),
        A(iam, "PutRolePolicy", False, {_A: 2, _H: 1}, _b_put_role_policy, 0.02,
          (("MalformedPolicyDocument", "Syntax errors in policy."),)),
        A(iam, "CreateAccessKey", False, {_A: 1, _H: 1}, _b_create_access_key, 0.03,
          (("LimitExceededException", "Cannot exceed quota for AccessKeysPerUser: 2"),)),
        A(kms, "RotateKey", False, {_S: 1}, _b_kms_rotate, 0.0, event_type="AwsServiceEvent",
          svc_hosts=("AWS Internal",), request_id="none", tls=False),
        A(ec2, "StopInstances", False, {_A: 2, _H: 1}, _b_instances_state("StopInstances"), 0.02, unauth),
        A(ec2, "StartInstances", False, {_A: 2, _H: 1}, _b_instances_state("StartInstances"), 0.02, unauth),
        A(iam, "AttachRolePolicy", False, {_A: 2, _H: 1}, _b_attach_role_policy, 0.02, denied),
        A(sts, "GetFederationToken", True, {_A: 1}, _b_federation_token, 0.0),
        A(iam, "CreatePolicy", False, {_A: 2, _H: 1}, _b_create_policy, 0.02,
          (("EntityAlreadyExistsException", "A policy with this name already exists."),)),
        A(s3, "CreateBucket", False, {_A: 2, _H: 1}, _b_create_bucket, 0.03, (_E_BUCKET_OWNED,), **s3v),
        A(ec2, "RevokeSecurityGroupIngress", False, {_A: 2, _H: 1}, _b_sg_revoke, 0.03,
          (("Client.InvalidPermission.NotFound",
            "The specified rule does not exist in this security group."),)),
        A(logs, "PutRetentionPolicy", False, {_A: 2, _H: 1}, _b_logs_retention, 0.0),
        A(sso, "GetRoleCredentials", True, {"idc": 1}, _b_sso_role, 0.0, version="1.10", tls=False),
        A(sso, "ListAccountRoles", True, {"idc": 1}, _b_sso_role, 0.0, version="1.10", tls=False),
        A(sm, "RotationSucceeded", False, {_S: 1}, _b_rotation, 0.0, event_type="AwsServiceEvent",
          svc_hosts=("secretsmanager.amazonaws.com",), request_id="none", tls=False, version="1.11"),
        A(ec2, "DescribeRegions", True, {_A: 2, _H: 1}, _b_regions, 0.0),
        A(cfg, "DescribeConfigurationRecorderStatus", True, {_A: 1, _H: 1}, _b_none, 0.0),
        A(gd, "GetDetector", True, {_A: 1, _H: 1}, _b_gd, 0.0),
        A(iam, "GenerateCredentialReport", False, {_A: 1, _H: 1}, _b_none, 0.0, version="1.10"),
        A(ct, "GetEventSelectors", True, {_A: 1, _H: 1}, _b_trail, 0.0, version="1.11"),
        A(kms, "ListAliases", True, {_A: 1, _H: 1}, _b_none, 0.0, version="1.11"),
    ]
    # fmt: on
    for rank, api in enumerate(apis, start=1):
        api.weight = 1.0 / rank
        api.err_rate = min(0.5, api.err_rate * ERROR_SCALE)
        if api.err_rate and not api.errors:
            raise ValueError(f"{api.key} has an error rate but no errors")
    return apis


APIS = _api_catalogue()
_API_BY_KEY = {a.key: a for a in APIS}



def _index_world(world: _World) -> None:
    """Precompute, per account, which actors may call each API and per unit which APIs can occur."""
    for acct in world.accounts:
        svc_actors: dict[str, _Actor] = {}
        for api in APIS:
            entries: list[_Actor] = []
            weights: list[float] = []
            for group, gw in api.groups.items():
                if gw <= 0:
                    continue
                if group == _S:
                    for host in api.svc_hosts:
                        actor = svc_actors.get(host)
                        if actor is None:
                            actor = _Actor(
                                "AWSService",
                                _S,
                                host,
                                1.0,
                                acct.id,
                                (host,),
                                (host,),
                                index=10_000 + len(svc_actors),
                            )
                            svc_actors[host] = actor
                        entries.append(actor)
                        weights.append(gw / len(api.svc_hosts))
                    continue
                members = [a for a in acct.actors if a.group == group and _allowed(api, a)]
                total = sum(a.weight for a in members)
                for a in members:
                    entries.append(a)
                    weights.append(gw * a.weight / total)
            if entries:
                world.actor_table[(acct.index, api.key)] = (entries, _cum(weights))
        for region in REGIONS:
            apis = [
                a
                for a in APIS
                if (acct.index, a.key) in world.actor_table
                and (region == HOME_REGION or a.source not in _GLOBAL_SERVICES)
            ]
            weights = [a.weight for a in apis]
            world.unit_apis[(acct.index, region)] = (apis, _cum(weights))
            total = sum(weights)
            for a in apis:
                world.api_share[(acct.index, region, a.key)] = a.weight / total


def _allowed(api: _Api, actor: _Actor) -> bool:
    """Who may call what: keeps identities plausible (no AWSAccount creating IAM users, no root Decrypt)."""
    if "readonly" in actor.name.lower():
        return api.read_only
    if actor.kind == "AWSAccount":
        return api.name in (
            "AssumeRole",
            "GetObject",
            "PutObject",
            "Decrypt",
            "GenerateDataKey",
            "GetBucketLocation",
            "DescribeInstances",
            "DescribeVolumes",
            "GetBucketPolicy",
        )
    if actor.kind == "FederatedUser":
        return api.read_only and api.source in ("s3.amazonaws.com", "ec2.amazonaws.com")
    if actor.kind == "Root":
        return api.name == "ConsoleLogin"
    if actor.name.startswith("AWSServiceRoleFor"):
        return api.name == "PutEvaluations" or (
            api.read_only
            and api.source
            in ("ec2.amazonaws.com", "s3.amazonaws.com", "iam.amazonaws.com", "cloudtrail.amazonaws.com")
        )
    if api.name == "PutEvaluations":
        return actor.name.endswith("lambda-role")
    if api.name in ("CreateLogStream", "UpdateInstanceInformation"):
        return actor.kind == "AssumedRole" and (
            actor.name.endswith("lambda-role")
            if api.name == "CreateLogStream"
            else actor.name.endswith("worker-role")
        )
    if api.name == "GetFederationToken":
        return actor.kind == "IAMUser" and actor.group == "auto"
    if api.name == "ConsoleLogin":
        return actor.kind in ("IAMUser", "AssumedRole") and actor.console_share > 0
    return True


# ------------------------------------------------------------------------------------------------------------
# One event
# ------------------------------------------------------------------------------------------------------------


def _event(
    ctx: _Ctx,
    api: _Api,
    actor: _Actor,
    sec: int,
    error: tuple[str | None, str] | None = None,
    built: tuple[Any, Any, Any, Any] | None = None,
    may_fail: bool = True,
) -> dict[str, Any]:
    """One CloudTrail record, fields in AWS's order.

    ``error`` forces a failure and ``may_fail=False`` forbids one: incidents need exact outcomes.
    """
    r = ctx.r
    kind = actor.kind
    console = actor.console_share > 0 and (api.name == "ConsoleLogin" or r() < actor.console_share)
    ident, arn = ctx.identity(actor, sec, console and api.name != "ConsoleLogin")
    if api.name == "ConsoleLogin" and kind in ("IAMUser", "Root"):
        ident = _signin_identity(ctx, actor, arn)
    vpce = False
    if kind == "AWSService":
        ip = ua = actor.name
    elif "via" in actor.extra:
        ip = ua = actor.extra["via"]
    elif console:
        ip = actor.ips[int(r() * len(actor.ips))]
        ua = ctx.pick(_UA_CONSOLE) if api.name != "ConsoleLogin" else ctx.pick(_UA_BROWSER)
    else:
        ip = actor.ips[int(r() * len(actor.ips))]
        ua = actor.agents[int(r() * len(actor.agents))]
        if kind == "AssumedRole" and actor.group == _A and api.source in _VPCE_SOURCES and r() < 0.25:
            ip = f"10.0.{int(r() * 255)}.{int(r() * 254) + 1}"
            vpce = True
    ctx.now = sec
    rp, re, res, aed = built if built is not None else api.build(ctx, actor)
    if kind in ("SAMLUser", "WebIdentityUser"):
        ident = ctx.federated_identity(actor, rp, re)
    if error is None and may_fail and api.err_rate and r() < api.err_rate:
        error = ctx.pick(api.errors)
    rec: dict[str, Any] = {
        "eventVersion": api.version,
        "userIdentity": ident,
        "eventTime": ctx.day_prefix + _HMS[sec],
        "eventSource": api.source,
        "eventName": api.name,
        "awsRegion": HOME_REGION if api.source in _GLOBAL_SERVICES else ctx.region,
        "sourceIPAddress": ip,
        "userAgent": ua,
    }
    if error is not None:
        code, msg = error
        if code is not None:
            rec["errorCode"] = code
        rec["errorMessage"] = _error_message(ctx, actor, api, msg, arn)
        re = {"ConsoleLogin": "Failure"} if api.name == "ConsoleLogin" else None
    rec["requestParameters"] = rp
    rec["responseElements"] = re
    if aed is not None:
        rec["additionalEventData"] = aed
    request_id, event_id = _uuid4_pair(ctx.rng)
    if api.request_id == "uuid":
        rec["requestID"] = request_id
    elif api.request_id == "s3":
        rec["requestID"] = request_id[:8].upper() + request_id[24:32].upper()
    rec["eventID"] = event_id
    rec["readOnly"] = api.read_only
    if res is not None:
        rec["resources"] = res
    rec["eventType"] = api.event_type
    rec["managementEvent"] = api.management
    rec["recipientAccountId"] = ctx.acct.id
    if kind == "AWSAccount":
        rec["sharedEventID"] = _uuid4(ctx.rng)
    if vpce:
        rec["vpcEndpointId"] = ctx.vpce(api.source)
        rec["vpcEndpointAccountId"] = ctx.acct.id
    rec["eventCategory"] = api.category
    if api.tls and kind != "AWSService" and "via" not in actor.extra and (console or r() < 0.85):
        host = (
            f"{api.source.split('.')[0]}.{ctx.region}.amazonaws.com"
            if api.source not in _GLOBAL_SERVICES
            else api.source
        )
        rec["tlsDetails"] = ctx.tls_details(host)
    if console and api.name != "ConsoleLogin":
        rec["sessionCredentialFromConsole"] = "true"
    return rec


_VPCE_SOURCES = {
    "s3.amazonaws.com",
    "kms.amazonaws.com",
    "dynamodb.amazonaws.com",
    "secretsmanager.amazonaws.com",
}


def _signin_identity(ctx: _Ctx, actor: _Actor, arn: str) -> dict[str, Any]:
    """Sign-in events carry a bare identity: no session context, and an empty key for the root user."""
    if actor.kind == "Root":
        return {"type": "Root", "principalId": ctx.acct.id, "arn": arn, "accountId": ctx.acct.id,
                "accessKeyId": ""}
    return {"type": "IAMUser", "principalId": actor.principal_id, "arn": arn, "accountId": ctx.acct.id,
            "userName": actor.name}


def _error_message(ctx: _Ctx, actor: _Actor, api: _Api, msg: str, arn: str) -> str:
    if msg == "@denied":
        who = arn or ctx.actor_arn(actor)
        action = f"{api.source.split('.')[0]}:{api.name}"
        return (
            f"User: {who} is not authorized to perform: {action} because no identity-based policy allows "
            f"the {action} action"
        )
    if msg == "@nosuchrole":
        return f"The role with name {ctx.pick(_APPS)}-legacy-role cannot be found."
    if msg == "@nofunction":
        return f"Function not found: arn:aws:lambda:{ctx.region}:{ctx.acct.id}:function:{ctx.pick(_APPS)}-old"
    if api.source == "ec2.amazonaws.com" and msg.startswith("You are not authorized"):
        return msg + " Encoded authorization failure message: " + _b64(ctx.rng, 180)
    return msg


# ------------------------------------------------------------------------------------------------------------
# Incidents
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Incident:
    """An anomaly to inject; planned in the parent from the seed, generated inside its unit."""

    index: int
    kind: str
    day: date
    account: int
    region: str
    api: str  # api key
    start_s: int  # seconds into the day
    minutes: int
    per_minute: int
    error_code: str | None
    error_message: str | None
    baseline_per_minute: float
    description: str


_SPIKE_APIS = (
    "ec2.amazonaws.com:RunInstances",
    "iam.amazonaws.com:CreateUser",
    "s3.amazonaws.com:PutBucketPolicy",
    "ec2.amazonaws.com:TerminateInstances",
    "ec2.amazonaws.com:CreateSecurityGroup",
    "lambda.amazonaws.com:UpdateFunctionCode20150331v2",
)
_ERROR_BURSTS = (
    (
        "kms.amazonaws.com:Decrypt",
        "ThrottlingException",
        "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.",
    ),
    ("sts.amazonaws.com:AssumeRole", "AccessDenied", "@denied"),
    ("s3.amazonaws.com:ListBuckets", "AccessDenied", "Access Denied"),
    ("ssm.amazonaws.com:GetParameters", "ThrottlingException", "Rate exceeded"),
    ("dynamodb.amazonaws.com:DescribeTable", "ThrottlingException", "Rate exceeded"),
)


def _expected_per_day(world: _World, acct: int, region: str, api_key: str, events_per_day: int) -> float:
    unit_n = _unit_counts(world, events_per_day)[(acct, region)]
    return unit_n * world.api_share.get((acct, region, api_key), 0.0)


def _plan_incidents(world: _World, seed: int, day_list: list[date], events_per_day: int) -> list[_Incident]:
    """Deterministic incident plan: rate spikes, error bursts, root login, open SG, StopLogging.

    Incidents go on days after the first seven when there are at least eight (so a 7-day baseline
    precedes them), otherwise on the last day. Rates are set from the expected baseline so a spike is
    at least 10x the API's busiest normal minute and at least 20 calls per minute.
    """
    rng = random.Random(_derive_seed(seed, "incidents", day_list[0], len(day_list)))
    eligible = day_list[7:] if len(day_list) >= 8 else day_list[-1:]
    accounts = [a.index for a in world.accounts]
    used: set[tuple[int, str, str]] = set()
    plan: list[_Incident] = []

    def target(keys: Sequence[str]) -> tuple[str, int, str]:
        """A fresh (api, account, region) where the account really has traffic and the API exists."""
        while True:
            key = rng.choice(keys)
            acct = rng.choice(accounts)
            region = HOME_REGION if key.startswith("iam.") or rng.random() < 0.6 else rng.choice(REGIONS)
            if (
                (acct, region, key) not in used
                and world.accounts[acct].region_weights[region] > 0
                and world.api_share.get((acct, region, key), 0.0) > 0
            ):
                used.add((acct, region, key))
                return key, acct, region

    def rates(acct: int, region: str, key: str) -> tuple[float, int]:
        per_day = _expected_per_day(world, acct, region, key, events_per_day)
        # 24/min +-15% keeps every spike minute near or above 20 calls, and 12x the busiest normal minute
        # keeps it >= 10x the API's usual rate even for popular APIs in large archives.
        return per_day / _MINUTES_PER_DAY, max(24, math.ceil(12 * per_day * world.profile_peak[region]))

    def start_for(minutes: int) -> int:
        return rng.randint(30, _MINUTES_PER_DAY - minutes - 30) * 60

    for _ in range(rng.randint(2, 3)):
        key, acct, region = target(_SPIKE_APIS)
        minutes = rng.randint(10, 60)
        avg, rate = rates(acct, region, key)
        name = key.split(":")[1]
        plan.append(_Incident(
            len(plan), "api_call_rate_spike", rng.choice(eligible), acct, region, key, start_for(minutes),
            minutes, rate, None, None, avg,
            f"{name} called ~{rate}/min for {minutes} min by one principal (normal ~{avg:.3f}/min)",
        ))
    for _ in range(rng.randint(1, 2)):
        burst = rng.choice(_ERROR_BURSTS)
        key, acct, region = target([burst[0]])
        minutes = rng.randint(10, 40)
        avg, rate = rates(acct, region, key)
        name = key.split(":")[1]
        plan.append(_Incident(
            len(plan), "api_error_rate_burst", rng.choice(eligible), acct, region, key, start_for(minutes),
            minutes, rate, burst[1], burst[2], avg,
            f"{name} failing with {burst[1]} ~{rate}/min for {minutes} min "
            f"(normal call rate ~{avg:.3f}/min, of which only a few percent fail)",
        ))
    trail_owners = [a.index for a in world.accounts if a.is_management or not a.org_id]
    singles = (
        ("root_console_login_without_mfa", rng.choice(accounts), HOME_REGION,
         "signin.amazonaws.com:ConsoleLogin", "Root user signed in to the console without MFA from a new IP"),
        ("security_group_open_to_world", None, None,
         "ec2.amazonaws.com:AuthorizeSecurityGroupIngress", "Security group ingress opened to 0.0.0.0/0"),
        # The organization trail lives in the management account, the other trail in the standalone one.
        ("cloudtrail_stop_logging", rng.choice(trail_owners), HOME_REGION,
         "cloudtrail.amazonaws.com:StopLogging", "CloudTrail logging stopped on the account's trail"),
    )
    for kind, acct, region, key, description in singles:
        if acct is None:
            acct = rng.choice(accounts)
            region = rng.choice([r for r in REGIONS if world.accounts[acct].region_weights[r] > 0])
        plan.append(_Incident(
            len(plan), kind, rng.choice(eligible), acct, region, key, rng.randint(0, _SECONDS_PER_DAY - 1),
            0, 1, None, None, 0.0, description,
        ))
    return plan


_API_STOP_LOGGING = _Api("cloudtrail.amazonaws.com", "StopLogging", False, {_H: 1}, _b_trail, 0.0)


def _incident_events(ctx: _Ctx, inc: _Incident) -> tuple[list[dict[str, Any]], str, str]:
    """Build an incident's records; returns them with the principal ARN and user agent used."""
    rng = ctx.rng
    acct = ctx.acct
    events: list[dict[str, Any]] = []
    if inc.kind in ("api_call_rate_spike", "api_error_rate_burst"):
        api = _API_BY_KEY[inc.api]
        candidates = [
            a
            for a in acct.actors
            if a.kind in ("IAMUser", "AssumedRole")
            and a.group in (_A, _H)
            and "via" not in a.extra
            and _allowed(api, a)
        ]  # _allowed keeps read-only principals away from write APIs
        actor = rng.choice(candidates)
        actor = _pin(actor, rng)
        error = (inc.error_code, inc.error_message) if inc.error_code else None
        for minute in range(inc.minutes):
            n = max(1, round(inc.per_minute * (0.85 + 0.3 * rng.random())))
            base = inc.start_s + minute * 60
            for _ in range(n):
                sec = base + int(rng.random() * 60)
                if error is None:
                    events.append(_event_ok(ctx, api, actor, sec))
                else:
                    events.append(_event(ctx, api, actor, sec, error=error))
        return events, events[0]["userIdentity"].get("arn", ""), events[0]["userAgent"]
    if inc.kind == "root_console_login_without_mfa":
        actor = _Actor(
            "Root",
            "root",
            "root",
            1.0,
            acct.id,
            (_ip(rng, (45, 91, 185, 194)),),
            _UA_BROWSER[1:2],
            console_share=1.0,
            principal_id=acct.id,
            mfa=False,
            index=20_000,
        )
        api = _API_BY_KEY["signin.amazonaws.com:ConsoleLogin"]
        rp, re, res, aed = api.build(ctx, actor)
        rec = _event_ok(ctx, api, actor, inc.start_s, built=(rp, re, res, aed))
        return [rec], rec["userIdentity"]["arn"], rec["userAgent"]
    if inc.kind == "security_group_open_to_world":
        api = _API_BY_KEY["ec2.amazonaws.com:AuthorizeSecurityGroupIngress"]
        actor = _pin(rng.choice(_people_who_may_call(acct, api)), rng)
        port = rng.choice((22, 3389))
        rec = _event_ok(
            ctx, api, actor, inc.start_s, built=_b_sg_ingress(ctx, actor, cidr="0.0.0.0/0", port=port)
        )
        rec["requestParameters"]["ipPermissions"]["items"][0]["ipRanges"]["items"][0]["description"] = (
            "temp access"
        )
        return [rec], rec["userIdentity"].get("arn", ""), rec["userAgent"]
    if inc.kind == "cloudtrail_stop_logging":
        actor = _pin(rng.choice(_people_who_may_call(acct, _API_STOP_LOGGING)), rng)
        rec = _event_ok(ctx, _API_STOP_LOGGING, actor, inc.start_s)
        return [rec], rec["userIdentity"].get("arn", ""), rec["userAgent"]
    raise ValueError(inc.kind)


def _people_who_may_call(acct: _Account, api: _Api) -> list[_Actor]:
    """The people of an account allowed to make this call (so no read-only role opens a security group)."""
    people = [a for a in acct.actors if a.group == _H and a.kind in ("IAMUser", "AssumedRole")]
    return [a for a in people if _allowed(api, a)]


def _pin(actor: _Actor, rng: random.Random) -> _Actor:
    """One principal, one session, one client for the whole incident, so its ARN is a single value."""
    sessions = (rng.choice(actor.sessions),) if actor.sessions else ()
    return _Actor(
        actor.kind,
        actor.group,
        actor.name,
        actor.weight,
        actor.account,
        (rng.choice(actor.ips),),
        (rng.choice(actor.agents),),
        console_share=0.0,
        sessions=sessions,
        principal_id=actor.principal_id,
        access_key=actor.access_key,
        role_path=actor.role_path,
        mfa=actor.mfa,
        extra=dict(actor.extra),
        index=30_000 + actor.index,
    )


def _event_ok(
    ctx: _Ctx, api: _Api, actor: _Actor, sec: int, built: tuple[Any, Any, Any, Any] | None = None
) -> dict[str, Any]:
    """A successful call, whatever the API's usual error rate."""
    return _event(ctx, api, actor, sec, built=built, may_fail=False)


# ------------------------------------------------------------------------------------------------------------
# Units: generate one (day, account, region) and deliver it into files
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _UnitTask:
    seed: int
    day: date
    account: int
    region: str
    n_events: int
    incidents: tuple[_Incident, ...]
    out: str
    prefix: str


@dataclass(frozen=True)
class _LogFile:
    key: str
    account: str
    region: str
    delivered: int  # epoch seconds
    sha256: str
    oldest: int
    newest: int
    raw_bytes: int
    gzip_bytes: int
    records: int


@dataclass
class _UnitResult:
    files: list[_LogFile]
    events: int
    duplicates: int
    incidents: dict[int, tuple[list[str], str, str, int, int]]  # index -> (eventIDs, arn, ua, first, last)


@lru_cache(maxsize=64)
def _unit_counts_cached(seed: int, events_per_day: int) -> dict[tuple[int, str], int]:
    world = _world(seed)
    keys = [(a.index, r) for a in world.accounts for r in REGIONS]
    shares = [world.accounts[a].share * world.accounts[a].region_weights[r] for a, r in keys]
    return dict(zip(keys, _largest_remainder(events_per_day, shares), strict=True))


def _unit_counts(world: _World, events_per_day: int) -> dict[tuple[int, str], int]:
    return _unit_counts_cached(world.seed, events_per_day)


def _unit_tasks(
    world: _World,
    seed: int,
    day_list: list[date],
    events_per_day: int,
    incidents: list[_Incident],
    out: Path,
    prefix: str,
) -> list[_UnitTask]:
    counts = _unit_counts(world, events_per_day)
    tasks = []
    for d in day_list:
        for acct in world.accounts:
            for region in REGIONS:
                incs = tuple(
                    i for i in incidents if i.day == d and i.account == acct.index and i.region == region
                )
                n = counts[(acct.index, region)]
                if n or incs:
                    tasks.append(_UnitTask(seed, d, acct.index, region, n, incs, str(out), prefix))
    return tasks


def _run_unit(task: _UnitTask) -> _UnitResult:
    """Generate a unit's events and write its log files; deterministic in the task alone."""
    world = _world(task.seed)
    acct = world.accounts[task.account]
    region = task.region
    rng = random.Random(_derive_seed(task.seed, "events", task.day, acct.id, region))
    ctx = _Ctx(world, acct, region, task.day, rng)
    dumps = orjson.dumps
    r = rng.random
    events: list[tuple[int, bytes]] = []
    if task.n_events:
        apis, api_cw = world.unit_apis[(acct.index, region)]
        minutes = rng.choices(_MINUTES, cum_weights=world.profile_cw[region], k=task.n_events)
        chosen = rng.choices(apis, cum_weights=api_cw, k=task.n_events)
        table = world.actor_table
        actor_cache: dict[str, tuple[list[_Actor], list[float], float]] = {}
        for minute, api in zip(minutes, chosen, strict=True):
            entry = actor_cache.get(api.key)
            if entry is None:
                actors, cw = table[(acct.index, api.key)]
                entry = (actors, cw, cw[-1])
                actor_cache[api.key] = entry
            actors, cw, total = entry
            actor = actors[bisect.bisect(cw, r() * total)] if len(actors) > 1 else actors[0]
            sec = minute * 60 + int(r() * 60)
            events.append((sec, _compact(dumps(_event(ctx, api, actor, sec)))))
    found: dict[int, tuple[list[str], str, str, int, int]] = {}
    for inc in task.incidents:
        ictx = _Ctx(
            world, acct, region, task.day, random.Random(_derive_seed(task.seed, "incident", inc.index))
        )
        recs, arn, ua = _incident_events(ictx, inc)
        secs = [inc.start_s] if len(recs) == 1 else [_sec_of(x["eventTime"]) for x in recs]
        for rec, sec in zip(recs, secs, strict=True):
            events.append((sec, _compact(dumps(rec))))
        found[inc.index] = ([x["eventID"] for x in recs], arn, ua, min(secs), max(secs))
    files, dups = _deliver(task, acct, region, events)
    return _UnitResult(files, len(events), dups, found)


def _compact(data: bytes) -> bytes:
    """An exact-size copy: orjson leaves a ~16 KB allocation behind every small result, so a unit's
    records would take 10x their size in memory (a 50k-event unit: 800 MB instead of 85 MB)."""
    return bytes(memoryview(data))


def _sec_of(event_time: str) -> int:
    return int(event_time[11:13]) * 3600 + int(event_time[14:16]) * 60 + int(event_time[17:19])


def _deliver(
    task: _UnitTask, acct: _Account, region: str, events: list[tuple[int, bytes]]
) -> tuple[list[_LogFile], int]:
    """Batch events into ~5-minute files delivered with lag; add duplicates; write them gzipped."""
    rng = random.Random(_derive_seed(task.seed, "delivery", task.day, acct.id, region))
    r = rng.random
    # Regular windows 0..287, plus room for stragglers (+1) and duplicates (+2); the last index is the
    # batch of duplicates re-sent after midnight.
    n_windows = _SECONDS_PER_DAY // DELIVERY_WINDOW_S + 4
    redelivery = n_windows - 1
    batches: list[list[bytes]] = [[] for _ in range(n_windows)]
    lo = [_SECONDS_PER_DAY * 2] * n_windows
    hi = [-1] * n_windows
    dups = 0
    for sec, rec in events:
        w = sec // DELIVERY_WINDOW_S
        if r() < STRAGGLER_SHARE:
            w += 1
        targets = [w]
        if r() < DUPLICATE_SHARE:
            dups += 1
            x = r()
            targets.append(w + 1 if x < 0.65 else w + 2 if x < 0.8 else redelivery)
        for t in targets:
            batches[t].append(rec)
            if sec < lo[t]:
                lo[t] = sec
            if sec > hi[t]:
                hi[t] = sec
    base = _day_epoch(task.day)
    root = Path(task.out)
    made_dirs: set[Path] = set()
    files = []
    key_root = f"{task.prefix}/AWSLogs" if task.prefix else "AWSLogs"
    org = f"{acct.org_id}/" if acct.org_id else ""
    last = 0
    for w, batch in enumerate(batches):
        if not batch:
            continue
        if w == redelivery:
            delivered = base + _SECONDS_PER_DAY + rng.randint(*REDELIVERY_LAG_S)
        else:
            # Random lag, but one account-region's regular deliveries stay in order, a minute apart at least.
            delivered = max(base + (w + 1) * DELIVERY_WINDOW_S + rng.randint(*DELIVERY_LAG_S), last + 60)
            last = delivered
        rng.shuffle(batch)
        dt = datetime.fromtimestamp(delivered, UTC)
        name = f"{acct.id}_CloudTrail_{region}_{dt:%Y%m%dT%H%MZ}_{_rand_str(rng, _ALNUM, 16)}.json.gz"
        folder = f"{key_root}/{org}{acct.id}/CloudTrail/{region}/{dt:%Y/%m/%d}"
        raw = b'{"Records":[' + b",".join(batch) + b"]}"
        gz = igzip.compress(raw, GZIP_LEVEL, mtime=0)
        path = root / folder
        if path not in made_dirs:
            path.mkdir(parents=True, exist_ok=True)
            made_dirs.add(path)
        (path / name).write_bytes(gz)
        files.append(
            _LogFile(
                f"{folder}/{name}",
                acct.id,
                region,
                delivered,
                hashlib.sha256(raw).hexdigest(),
                base + lo[w],
                base + hi[w],
                len(raw),
                len(gz),
                len(batch),
            )
        )
    return files, dups


# ------------------------------------------------------------------------------------------------------------
# Digests
# ------------------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------------------
# Ground truth
# ------------------------------------------------------------------------------------------------------------


def _ground_truth(
    world: _World, incidents: list[_Incident], results: Iterable[_UnitResult]
) -> list[dict[str, Any]]:
    """What was injected, where and by whom, with every eventID, so detectors can be scored."""
    found: dict[int, tuple[list[str], str, str, int, int]] = {}
    for r in results:
        found.update(r.incidents)
    out = []
    for inc in incidents:
        ids, arn, ua, first, last = found[inc.index]
        base = _day_epoch(inc.day)
        if inc.minutes:
            start, end = base + inc.start_s, base + inc.start_s + inc.minutes * 60
        else:
            start, end = base + first, base + last
        source, name = inc.api.split(":")
        out.append(
            {
                "kind": inc.kind,
                "account": world.accounts[inc.account].id,
                "region": inc.region,
                "eventSource": source,
                "eventName": name,
                "start": _iso(start),
                "end": _iso(end),
                "errorCode": inc.error_code,
                "principal": arn,
                "userAgent": ua,
                "eventIDs": ids,
                "eventCount": len(ids),
                "ratePerMinute": inc.per_minute if inc.minutes else None,
                "baselinePerMinute": round(inc.baseline_per_minute, 6) if inc.minutes else None,
                "description": inc.description,
            }
        )
    return out
