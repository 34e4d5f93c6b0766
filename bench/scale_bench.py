"""Ingest where users run it, in one run: against a plain baseline, from S3 with latency, and listing an org trail.

Usage: python bench/scale_bench.py --small DIR [--big DIR] [--data /tmp/perf-bench] [--repeat 3]
       [--own-days 2 --own-events-per-day 100000] [--s3-days 3] [--delay 0.03]
       [--org-accounts 500 --org-regions 17] [--sections ingest,s3,org,compact]

`--small` (and `--big`) are archives made by ../shared/bench/independent_cloudtrail.py (small-account deliveries,
and the 2M shape); the project's own data is generated once under --data. Every figure comes from this one run,
measured side by side and repeated `--repeat` times in alternating order, since the machine is shared:

1. ingest: trailsight (2 workers) against bench/plain_baseline.py (orjson + pyarrow, 2 processes, no
   de-duplication) on each archive, and on one file of `--single-file-events` events (the memory bound's worst
   case): seconds, events/s, peak memory of the process tree (proportional set sizes plus rows spilled to
   temporary files), and the ratio baseline seconds / trailsight seconds per repeat;
2. s3: the first `--s3-days` days of the small archive ingested from a local folder, from moto's S3 server, and
   from the same server behind bench/latency_proxy.py adding `--delay` seconds to every request;
3. org: one day of an organisation trail (accounts x regions folders, one tiny object each, as the layout is what
   listing pays for) discovered through the proxy: LIST calls, all requests and seconds;
4. compact: the small archive's first `--compact-days` days ingested one run per day (as the daily flow does),
   then `trailsight compact`: data objects per day, and the seconds and Parquet bytes read of one day's
   reports (bench/reports_bench.py's measurement), before and after.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_REGION": "us-east-1"}


# --- one measured run in a child process -----------------------------------------------------------------


def child(kind: str, source: str, out: str) -> None:
    """Run one approach, timing only its work (not Python's start-up), and print the figures as JSON."""
    if kind == "baseline":
        sys.path.insert(0, str(BENCH))
        import plain_baseline

        started = time.monotonic()
        events = plain_baseline.run(Path(source), Path(out))
    else:
        from trailsight.lake.ingest import ingest

        started = time.monotonic()
        events = ingest(source, out, workers=2).events_read
    print(json.dumps({"events": events, "seconds": time.monotonic() - started}))


def spilled_bytes() -> int:
    from trailsight.lake.ingest import SPILL_PREFIX, spill_parent

    total = 0
    for folder in spill_parent().glob(f"{SPILL_PREFIX}*"):
        total += sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
    return total


def run_child(kind: str, source: str, out: Path, environment: dict[str, str] | None = None) -> dict:
    """One run in its own process, its tree's memory sampled every 0.2 s (PSS, so shared pages count once)."""
    shutil.rmtree(out, ignore_errors=True)
    process = subprocess.Popen([sys.executable, __file__, "--child", kind, "--source", source, "--out", str(out)],
                               stdout=subprocess.PIPE, env={**os.environ, **(environment or {})})
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_full_info().pss for p in tree if p.is_running()) + spilled_bytes())
        except (psutil.Error, OSError):
            pass
        time.sleep(0.2)
    stdout = process.stdout.read() if process.stdout else b""
    if process.returncode != 0:
        raise SystemExit(f"{kind} on {source} failed with exit code {process.returncode}")
    return {**json.loads(stdout.decode().strip().splitlines()[-1]), "peak": peak}


def spread(values: list[float], digits: int = 2) -> str:
    """Median and range of repeated figures."""
    return (f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"
            if len(values) > 1 else f"{values[0]:.{digits}f}")


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def archive_figures(archive: Path) -> tuple[int, int]:
    files = [p for p in archive.rglob("*.json.gz") if "/CloudTrail/" in p.as_posix()]
    return len(files), sum(p.stat().st_size for p in files)


# --- 1. trailsight against the plain baseline ------------------------------------------------------------


def ingest_section(archives: dict[str, Path], work: Path, repeat: int) -> None:
    print("\n## 1. trailsight (2 workers) against the plain baseline (orjson + pyarrow, 2 processes)\n")
    rows = []
    for name, archive in archives.items():
        runs: dict[str, list[dict]] = {"trailsight": [], "baseline": []}
        for number in range(repeat):
            order = ("baseline", "trailsight") if number % 2 == 0 else ("trailsight", "baseline")
            for kind in order:
                runs[kind].append(run_child(kind, str(archive), work / f"{name}-{kind}"))
        files, gzip_bytes = archive_figures(archive)
        ratios = [b["seconds"] / t["seconds"] for b, t in zip(runs["baseline"], runs["trailsight"], strict=True)]
        for kind, measured in runs.items():
            events = measured[0]["events"]
            rows.append([name, f"{files:,} files, {events:,} events", kind,
                         spread([m["seconds"] for m in measured], 1),
                         f"{events / statistics.median(m['seconds'] for m in measured):,.0f}",
                         f"{max(m['peak'] for m in measured) / 2**20:,.0f}",
                         spread(ratios) if kind == "trailsight" else "1"])
        parquet = sum(p.stat().st_size for p in (work / f"{name}-trailsight").rglob("*.parquet")
                      if "/_derived/" not in p.as_posix())
        data_files = sum(1 for p in (work / f"{name}-trailsight").rglob("*.parquet")
                         if "/_derived/" not in p.as_posix())
        print(f"{name}: trailsight wrote {data_files:,} data files, {parquet / 2**20:,.0f} MiB "
              f"(gzip input {gzip_bytes / 2**20:,.0f} MiB)")
    print()
    print_table(["data", "shape", "approach", "seconds median (range)", "events/s", "peak MiB",
                 "x baseline median (range)"], rows)


# --- 2. local, S3, S3 + latency ---------------------------------------------------------------------------


def s3_subset(small: Path, work: Path, days: int) -> Path:
    """The small archive's first `days` delivery days, copied to a folder of their own."""
    subset = work / f"s3-subset-{days}d"
    if not (subset / "_ready").exists():
        shutil.rmtree(subset, ignore_errors=True)
        first = sorted({p.parent for p in small.rglob("*.json.gz")})
        wanted = sorted({folder.as_posix()[-10:] for folder in first})[:days]
        for folder in first:
            if folder.as_posix()[-10:] in wanted:
                target = subset / folder.relative_to(small)
                target.mkdir(parents=True, exist_ok=True)
                for path in folder.iterdir():
                    shutil.copy2(path, target / path.name)
        (subset / "_ready").write_text("ok\n")
    return subset


def upload(client, bucket: str, folder: Path, prefix: str = "") -> int:
    from concurrent.futures import ThreadPoolExecutor

    paths = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("_")]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: client.put_object(Bucket=bucket, Key=f"{prefix}{p.relative_to(folder).as_posix()}",
                                                  Body=p.read_bytes()), paths))
    return len(paths)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def s3_section(subset: Path, work: Path, repeat: int, endpoints: dict[str, str], proxy, client,
               moto: psutil.Process) -> None:
    files, gzip_bytes = archive_figures(subset)
    client.create_bucket(Bucket="bench-source")
    upload(client, "bench-source", subset)
    print(f"\n## 2. the same {files:,} files ({gzip_bytes / 2**20:,.1f} MiB gzip) from a local folder, moto's S3, and "
          f"moto's S3 + {proxy.delay * 1000:.0f} ms per request\n")
    places = {"local": (str(subset), {}),
              "s3": ("s3://bench-source", {**MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": endpoints["s3"]}),
              "s3+latency": ("s3://bench-source", {**MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": endpoints["s3+latency"]})}
    runs: dict[str, list[dict]] = {name: [] for name in places}
    requests = []
    for number in range(repeat):
        order = list(places) if number % 2 == 0 else list(reversed(places))
        for name in order:
            source, environment = places[name]
            proxy.counts.reset()
            served = cpu_seconds(moto)
            runs[name].append(run_child("trailsight", source, work / f"s3-{name}", environment))
            runs[name][-1]["moto"] = cpu_seconds(moto) - served
            if name == "s3+latency":
                requests.append(proxy.counts.requests)
    rows = []
    for name, measured in runs.items():
        events = measured[0]["events"]
        seconds = [m["seconds"] for m in measured]
        to_s3 = [m["seconds"] / s["seconds"] for m, s in zip(measured, runs["s3"], strict=True)]
        to_local = [m["seconds"] / s["seconds"] for m, s in zip(measured, runs["local"], strict=True)]
        rows.append([name, f"{events:,}", spread(seconds), f"{events / statistics.median(seconds):,.0f}",
                     spread(to_s3), spread(to_local),
                     spread([m["moto"] for m in measured], 1) if name != "local" else ""])
    print_table(["source", "events", "seconds median (range)", "events/s", "x s3", "x local",
                 "moto server CPU s"], rows)
    print(f"\nrequests through the proxy per s3+latency run: {spread([float(r) for r in requests], 0)}")
    print("moto's server is one Python process: its CPU seconds per run are a floor on that run's seconds")


# --- 3. listing an organisation trail --------------------------------------------------------------------


def org_section(client, proxy, accounts: int, regions: int, endpoint: str, direct: str,
                moto: psutil.Process) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from trailsight.source.discovery import discover
    from trailsight.storage.store import Storage

    day = date(2024, 5, 2)
    bucket = "bench-org"
    client.create_bucket(Bucket=bucket)
    account_ids = [f"{100000000000 + n * 7919:012d}" for n in range(accounts)]
    region_names = [f"{area}-{n}" for area in ("us-east", "eu-west", "ap-south", "sa-east") for n in range(1, 6)]
    keys = [f"AWSLogs/o-benchorg0001/{account}/CloudTrail/{region}/{day:%Y/%m/%d}/"
            f"{account}_CloudTrail_{region}_{day:%Y%m%d}T0005Z_bench.json.gz"
            for account in account_ids for region in region_names[:regions]]
    keys += [f"AWSLogs/o-benchorg0001/{account}/CloudTrail-Digest/{region}/{day:%Y/%m/%d}/"
             f"{account}_CloudTrail-Digest_{region}_bench_{day:%Y%m%d}T0100Z.json.gz"
             for account in account_ids[:1] for region in region_names[:regions]]
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"{}"), keys))
    print(f"\n## 3. listing one day of an organisation trail: {accounts} accounts x {regions} regions "
          f"({len(keys):,} objects put in {time.monotonic() - started:.0f} s), through the proxy "
          f"(+{proxy.delay * 1000:.0f} ms per request)\n")
    previous = os.environ.get("AWS_ENDPOINT_URL")
    try:
        for name, url in (("through the proxy", endpoint), ("from moto directly", direct)):
            os.environ.update({**MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": url})
            proxy.counts.reset()
            served = cpu_seconds(moto)
            started = time.monotonic()
            found = discover(Storage(f"s3://{bucket}"), day, day)
            seconds = time.monotonic() - started
            served = cpu_seconds(moto) - served
            counted = (f": {proxy.counts.lists:,} LIST calls, {proxy.counts.requests:,} requests in all"
                       if url == endpoint else " (moto's own time per LIST, without the added latency)")
            print(f"{name}: found {len(found.event_files):,} log files and {len(found.digests):,} digests in "
                  f"{seconds:.1f} s{counted}; moto's server used {served:.1f} CPU s")
    finally:
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = previous


# --- 4. compaction ---------------------------------------------------------------------------------------


def objects_per_day(lake: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in (lake / "cloudtrail").rglob("*.parquet"):
        day = next(part for part in path.parts if part.startswith("event_date="))
        counts[day] = counts.get(day, 0) + 1
    return counts


def report_figures(lake: Path, day: date, repeat: int) -> tuple[list[float], int]:
    """Seconds (each repeat) and Parquet bytes read by every daily report of one day, as bench/reports_bench.py
    measures them (DuckDB's profiling, in a fresh connection per report)."""
    sys.path.insert(0, str(BENCH))
    import reports_bench

    from trailsight.report.daily import REPORTS

    seconds, bytes_read = [], 0
    for _ in range(repeat):
        total, bytes_read = 0.0, 0
        for name in REPORTS:
            spent, measure = reports_bench.run_report(lake, name, day)
            total += spent
            bytes_read += measure.bytes_read
        seconds.append(total)
    return seconds, bytes_read


def compact_section(archive: Path, work: Path, days: int, repeat: int) -> None:
    """A lake made as users make it, one run per day (each reading the next day's first hours for late events),
    then compacted."""
    from trailsight.lake.compact import compact
    from trailsight.lake.ingest import ingest

    lake = work / "compact-lake"
    shutil.rmtree(lake, ignore_errors=True)
    first = date(2024, 5, 1)
    for number in range(days):
        day = first + timedelta(days=number)
        ingest(archive, lake, day, day, workers=2)
    report_day = first + timedelta(days=days // 2)
    print(f"\n## 4. compaction: the small archive's first {days} days ingested one run per day, then compacted\n")
    before = objects_per_day(lake)
    report_before = report_figures(lake, report_day, repeat)
    started = time.monotonic()
    summary = compact(str(lake))
    seconds = time.monotonic() - started
    after = objects_per_day(lake)
    report_after = report_figures(lake, report_day, repeat)
    print(f"compacted {summary.partitions_compacted:,} of {summary.partitions_seen:,} partitions "
          f"({summary.files_before:,} files into {summary.files_after:,}, {summary.rows:,} rows) in {seconds:.1f} s")
    print_table(["", "data objects per day: median (max)", f"all reports of {report_day}: seconds",
                 "Parquet bytes read"], [
        ["before", f"{statistics.median(before.values()):.0f} ({max(before.values())})", spread(report_before[0]),
         f"{report_before[1]:,}"],
        ["after", f"{statistics.median(after.values()):.0f} ({max(after.values())})", spread(report_after[0]),
         f"{report_after[1]:,}"]])


# --- main ------------------------------------------------------------------------------------------------


def single_file_archive(source: Path, data: Path, events: int) -> Path:
    """One log file of at least `events` events (records of `source` put together): the memory bound's worst case."""
    archive = data / f"single-file-{events}"
    target = archive / "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/02"
    name = "111122223333_CloudTrail_us-east-1_20240502T0005Z_singlebigfile0001.json.gz"
    if not (target / name).exists():
        records: list = []
        for path in sorted(source.rglob("*.json.gz")):
            if "/CloudTrail/" in path.as_posix():
                records += json.loads(gzip.decompress(path.read_bytes()))["Records"]
            if len(records) >= events:
                break
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(gzip.compress(json.dumps({"Records": records}).encode(), 6))
    return archive


def start_moto() -> tuple[subprocess.Popen, str, int]:
    """moto's S3 server in a process of its own, so that it does not share this one's interpreter lock with the
    proxy and the listing threads (a real bucket does not either)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, "127.0.0.1", port
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("moto's server did not start")


def own_archive(data: Path, days: int, events_per_day: int) -> Path:
    from trailsight.synth.generate import generate_archive

    archive = data / f"own-{days}d-{events_per_day}"
    if not (archive / "ground_truth.json").exists():
        shutil.rmtree(archive, ignore_errors=True)
        generate_archive(archive, days, seed=11, end=date(2024, 5, days), events_per_day=events_per_day, workers=2)
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--source")
    parser.add_argument("--out")
    parser.add_argument("--small", type=Path)
    parser.add_argument("--big", type=Path)
    parser.add_argument("--data", type=Path, default=Path("/tmp/perf-bench"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--own-days", type=int, default=2)
    parser.add_argument("--own-events-per-day", type=int, default=100_000)
    parser.add_argument("--s3-days", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.03)
    parser.add_argument("--org-accounts", type=int, default=500)
    parser.add_argument("--org-regions", type=int, default=17)
    parser.add_argument("--single-file-events", type=int, default=120_000)
    parser.add_argument("--compact-days", type=int, default=7)
    parser.add_argument("--sections", default="ingest,s3,org,compact")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.source, args.out)
        return
    sections = set(args.sections.split(","))
    work = args.data / "scale-out"
    work.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    if "ingest" in sections:
        archives = {"small files": args.small, "own data": own_archive(args.data, args.own_days,
                                                                      args.own_events_per_day)}
        if args.big:
            archives["2M shape"] = args.big
        archives["one big file"] = single_file_archive(archives["own data"], args.data, args.single_file_events)
        ingest_section(archives, work, args.repeat)
    if sections & {"s3", "org"}:
        import boto3

        sys.path.insert(0, str(BENCH))
        from latency_proxy import LatencyProxy

        server, host, port = start_moto()
        proxy = LatencyProxy(host, port, args.delay).start()
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        moto = psutil.Process(server.pid)
        try:
            if "s3" in sections:
                s3_section(s3_subset(args.small, work, args.s3_days), work, args.repeat,
                           {"s3": f"http://{host}:{port}", "s3+latency": proxy.endpoint}, proxy, client, moto)
            if "org" in sections:
                org_section(client, proxy, args.org_accounts, args.org_regions, proxy.endpoint,
                            f"http://{host}:{port}", moto)
        finally:
            proxy.stop()
            server.terminate()
            server.wait()
    if "compact" in sections:
        compact_section(args.small, work, args.compact_days, args.repeat)
    print(f"\nbench took {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
