"""The indexed world (who may call what, how much per unit) and one CloudTrail record built from it."""

from __future__ import annotations

import math
import random
from functools import lru_cache
from typing import Any

from trailsight.synth.catalogue import _GLOBAL_SERVICES, _VPCE_SOURCES, APIS
from trailsight.synth.primitives import (
    _HMS,
    _LOWER_ALNUM,
    _MINUTES_PER_DAY,
    _b64,
    _cum,
    _derive_seed,
    _hex,
    _largest_remainder,
    _rand_str,
    _uuid4,
    _uuid4_pair,
)
from trailsight.synth.world import (
    _A,
    _APPS,
    _REGION_PEAK_HOUR,
    _S,
    _UA_BROWSER,
    _UA_CONSOLE,
    _WORLD_DATA,
    HOME_REGION,
    REGIONS,
    _Account,
    _Actor,
    _Api,
    _Ctx,
    _ip,
    _make_actors,
    _make_pools,
    _World,
)


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
    for i, spec in enumerate(_WORLD_DATA["accounts"]):
        name, acct_id = spec["name"], ids[i]
        nat = tuple(_ip(rng, (3, 18, 52, 54)) for _ in range(4))
        actors = _make_actors(rng, acct_id, name, i, office + vpn, homes, nat, ids[4], ids)
        pools = {r: _make_pools(rng, acct_id, name, r, actors) for r in REGIONS}
        accounts.append(
            _Account(
                index=i,
                id=acct_id,
                name=name,
                org_id=org_id if spec["organization"] else None,
                share=spec["share"],
                region_weights=dict(spec["regions"]),
                trail_name="org-trail" if spec["organization"] else "management-events",
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
        return api.cross_account
    if actor.kind == "FederatedUser":
        return api.read_only and api.source in ("s3.amazonaws.com", "ec2.amazonaws.com")
    if actor.kind == "Root":
        return api.name == "ConsoleLogin"
    if actor.name.startswith("AWSServiceRoleFor"):
        return api.name == "PutEvaluations" or (
            api.read_only
            and api.source in ("ec2.amazonaws.com", "s3.amazonaws.com", "iam.amazonaws.com", "cloudtrail.amazonaws.com")
        )
    if api.name == "PutEvaluations":
        return actor.name.endswith("lambda-role")
    if api.name in ("CreateLogStream", "UpdateInstanceInformation"):
        return actor.kind == "AssumedRole" and (
            actor.name.endswith("lambda-role") if api.name == "CreateLogStream" else actor.name.endswith("worker-role")
        )
    if api.name == "GetFederationToken":
        return actor.kind == "IAMUser" and actor.group == "auto"
    if api.name == "ConsoleLogin":
        return actor.kind in ("IAMUser", "AssumedRole") and actor.console_share > 0
    return True


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


def _signin_identity(ctx: _Ctx, actor: _Actor, arn: str) -> dict[str, Any]:
    """Sign-in events carry a bare identity: no session context, and an empty key for the root user."""
    if actor.kind == "Root":
        return {"type": "Root", "principalId": ctx.acct.id, "arn": arn, "accountId": ctx.acct.id, "accessKeyId": ""}
    return {
        "type": "IAMUser",
        "principalId": actor.principal_id,
        "arn": arn,
        "accountId": ctx.acct.id,
        "userName": actor.name,
    }


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


def _event_ok(
    ctx: _Ctx, api: _Api, actor: _Actor, sec: int, built: tuple[Any, Any, Any, Any] | None = None
) -> dict[str, Any]:
    """A successful call, whatever the API's usual error rate."""
    return _event(ctx, api, actor, sec, built=built, may_fail=False)


@lru_cache(maxsize=64)
def _unit_counts_cached(seed: int, events_per_day: int) -> dict[tuple[int, str], int]:
    world = _world(seed)
    keys = [(a.index, r) for a in world.accounts for r in REGIONS]
    shares = [world.accounts[a].share * world.accounts[a].region_weights[r] for a, r in keys]
    return dict(zip(keys, _largest_remainder(events_per_day, shares), strict=True))


def _unit_counts(world: _World, events_per_day: int) -> dict[tuple[int, str], int]:
    return _unit_counts_cached(world.seed, events_per_day)
