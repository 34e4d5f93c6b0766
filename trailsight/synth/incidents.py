"""Injected incidents (incidents.yaml): planned from the seed, built inside their unit."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from trailsight.synth.builders import _b_sg_ingress
from trailsight.synth.catalogue import _API_BY_KEY, _CATALOGUE, _INCIDENT_APIS
from trailsight.synth.events import _allowed, _event, _event_ok, _unit_counts
from trailsight.synth.primitives import _MINUTES_PER_DAY, _SECONDS_PER_DAY, _derive_seed, _read_data
from trailsight.synth.world import _A, _H, _UA_BROWSER, HOME_REGION, REGIONS, _Account, _Actor, _Api, _Ctx, _ip, _World


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


_INCIDENT_DATA = _read_data("incidents.yaml")
_SPIKE_APIS: tuple[str, ...] = tuple(_INCIDENT_DATA["rate_spike_apis"])
_ERROR_BURSTS: tuple[tuple[str, str, str], ...] = tuple(  # (api key, errorCode, errorMessage)
    (b["api"], _CATALOGUE["errors"][b["error"]]["code"], _CATALOGUE["errors"][b["error"]]["message"])
    for b in _INCIDENT_DATA["error_bursts"]
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
        plan.append(
            _Incident(
                len(plan),
                "api_call_rate_spike",
                rng.choice(eligible),
                acct,
                region,
                key,
                start_for(minutes),
                minutes,
                rate,
                None,
                None,
                avg,
                f"{name} called ~{rate}/min for {minutes} min by one principal (normal ~{avg:.3f}/min)",
            )
        )
    for _ in range(rng.randint(1, 2)):
        burst = rng.choice(_ERROR_BURSTS)
        key, acct, region = target([burst[0]])
        minutes = rng.randint(10, 40)
        avg, rate = rates(acct, region, key)
        name = key.split(":")[1]
        plan.append(
            _Incident(
                len(plan),
                "api_error_rate_burst",
                rng.choice(eligible),
                acct,
                region,
                key,
                start_for(minutes),
                minutes,
                rate,
                burst[1],
                burst[2],
                avg,
                f"{name} failing with {burst[1]} ~{rate}/min for {minutes} min "
                f"(normal call rate ~{avg:.3f}/min, of which only a few percent fail)",
            )
        )
    trail_owners = [a.index for a in world.accounts if a.is_management or not a.org_id]
    singles = (
        (
            "root_console_login_without_mfa",
            rng.choice(accounts),
            HOME_REGION,
            "signin.amazonaws.com:ConsoleLogin",
            "Root user signed in to the console without MFA from a new IP",
        ),
        (
            "security_group_open_to_world",
            None,
            None,
            "ec2.amazonaws.com:AuthorizeSecurityGroupIngress",
            "Security group ingress opened to 0.0.0.0/0",
        ),
        # The organization trail lives in the management account, the other trail in the standalone one.
        (
            "cloudtrail_stop_logging",
            rng.choice(trail_owners),
            HOME_REGION,
            "cloudtrail.amazonaws.com:StopLogging",
            "CloudTrail logging stopped on the account's trail",
        ),
    )
    for kind, acct, region, key, description in singles:
        if acct is None:
            acct = rng.choice(accounts)
            region = rng.choice([r for r in REGIONS if world.accounts[acct].region_weights[r] > 0])
        plan.append(
            _Incident(
                len(plan),
                kind,
                rng.choice(eligible),
                acct,
                region,
                key,
                rng.randint(0, _SECONDS_PER_DAY - 1),
                0,
                1,
                None,
                None,
                0.0,
                description,
            )
        )
    return plan


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
        rec = _event_ok(ctx, api, actor, inc.start_s, built=_b_sg_ingress(ctx, actor, cidr="0.0.0.0/0", port=port))
        rec["requestParameters"]["ipPermissions"]["items"][0]["ipRanges"]["items"][0]["description"] = "temp access"
        return [rec], rec["userIdentity"].get("arn", ""), rec["userAgent"]
    if inc.kind == "cloudtrail_stop_logging":
        stop_logging = _INCIDENT_APIS["cloudtrail.amazonaws.com:StopLogging"]
        actor = _pin(rng.choice(_people_who_may_call(acct, stop_logging)), rng)
        rec = _event_ok(ctx, stop_logging, actor, inc.start_s)
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
