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

The tables are data files beside this module (``apis.yaml``: the API catalogue; ``world.yaml``: regions,
accounts, names, user agents; ``incidents.yaml``); the code goes by stage: ``world``, ``builders``,
``catalogue``, ``events``, ``incidents``, ``delivery``, ``digests``, and this module runs them.

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

import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import orjson

from trailsight.errors import UsageError
from trailsight.synth.delivery import _run_unit, _unit_tasks, _UnitResult
from trailsight.synth.digests import _RsaDigestSigner, _write_digests
from trailsight.synth.events import _world
from trailsight.synth.incidents import _Incident, _plan_incidents
from trailsight.synth.primitives import _day_epoch, _iso
from trailsight.synth.world import _World

__all__ = ["GenerationSummary", "generate_archive"]


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


def _ground_truth(world: _World, incidents: list[_Incident], results: Iterable[_UnitResult]) -> list[dict[str, Any]]:
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
