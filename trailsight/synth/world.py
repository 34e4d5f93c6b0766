"""The seed's world: accounts, principals and resources (tables from world.yaml), and the per-unit build context."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from trailsight.synth.primitives import (
    _ALNUM,
    _HMS,
    _SECONDS_PER_DAY,
    _b64,
    _day_epoch,
    _hex,
    _iso,
    _java_date,
    _key_id,
    _rand_str,
    _read_data,
    _uuid4,
)

_H, _A, _S = "human", "auto", "svc"  # caller groups: people, workloads, AWS services themselves

_WORLD_DATA = _read_data("world.yaml")
REGIONS: tuple[str, ...] = tuple(_WORLD_DATA["regions"])
HOME_REGION = REGIONS[0]
_REGION_PEAK_HOUR: dict[str, float] = {r: v["peak_hour"] for r, v in _WORLD_DATA["regions"].items()}
_GIVEN: tuple[str, ...] = tuple(_WORLD_DATA["names"]["given"])
_FAMILY: tuple[str, ...] = tuple(_WORLD_DATA["names"]["family"])
_APPS: tuple[str, ...] = tuple(_WORLD_DATA["names"]["apps"])
_CONFIG_RULES: tuple[str, ...] = tuple(_WORLD_DATA["config_rules"])
_READ_POLICIES: tuple[str, ...] = tuple(_WORLD_DATA["read_policies"])
_ATTACHED_POLICIES: tuple[str, ...] = tuple(_WORLD_DATA["attached_policies"])
_UA: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _WORLD_DATA["user_agents"].items()}
_UA_CLI = _UA["cli"]
_UA_BROWSER = _UA["browser"]
_UA_CONSOLE = _UA["console_hosts"] + _UA_BROWSER
_UA_BOTO = _UA["boto"]
_UA_SDK = _UA["sdk"]
_UA_TERRAFORM = _UA["terraform"]
_UA_SSM_AGENT = _UA["ssm_agent"]


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
            _UA["github_actions"],
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
        buckets=[f"{name}-{a}-{s}-{acct}" for a in apps[:4] for s in ("data", "assets")] + [f"{name}-logs-{acct}"],
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
        config_rules=list(_CONFIG_RULES),
        roles=[a.name for a in actors if a.kind == "AssumedRole"],
        app_roles=[a.name for a in actors if a.kind == "AssumedRole" and a.group == _A and "via" not in a.extra],
        users=[a.name for a in actors if a.kind == "IAMUser"],
        detector=_hex(rng, 32),
    )


Builder = Callable[["_Ctx", _Actor], tuple[Any, Any, Any, Any]]


@dataclass
class _Api:
    """One API as CloudTrail records it, with who calls it, how often it fails and how its fields look."""

    source: str
    name: str
    read_only: bool
    groups: dict[str, float]  # caller group -> weight
    build: Builder
    err_rate: float = 0.0
    errors: tuple[tuple[str | None, str], ...] = ()
    event_type: str = "AwsApiCall"
    category: str = "Management"
    version: str = "1.08"
    svc_hosts: tuple[str, ...] = ()
    request_id: str = "uuid"  # uuid, s3, none
    tls: bool = True
    cross_account: bool = False  # other accounts' principals may call it
    weight: float = 0.0
    key: str = field(init=False)  # "eventSource:eventName", computed once: it is read for every event
    management: bool = field(init=False)

    def __post_init__(self) -> None:
        self.key = f"{self.source}:{self.name}"
        self.management = self.category == "Management"


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
