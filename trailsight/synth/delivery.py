"""Units of (day, account, region): draw their events and deliver them into gzipped 5-minute log files."""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
from isal import igzip

from trailsight.synth.events import _event, _unit_counts, _world
from trailsight.synth.incidents import _Incident, _incident_events
from trailsight.synth.primitives import _ALNUM, _MINUTES, _SECONDS_PER_DAY, _day_epoch, _derive_seed, _rand_str
from trailsight.synth.tunables import (
    DELIVERY_LAG_S,
    DELIVERY_WINDOW_S,
    DUPLICATE_SHARE,
    GZIP_LEVEL,
    REDELIVERY_LAG_S,
    STRAGGLER_SHARE,
)
from trailsight.synth.world import REGIONS, _Account, _Actor, _Ctx, _World


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
                incs = tuple(i for i in incidents if i.day == d and i.account == acct.index and i.region == region)
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
        ictx = _Ctx(world, acct, region, task.day, random.Random(_derive_seed(task.seed, "incident", inc.index)))
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
