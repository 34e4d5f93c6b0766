"""Tests of the synthetic CloudTrail archive generator.

Most tests share one nine-day archive (module fixture) because the properties worth proving only show
over days: late files across midnight, incidents placed after a 7-day baseline, chained hourly digests.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from trailsight.synth.generate import GenerationSummary, generate_archive

END = date(2024, 5, 9)
DAYS = 8
EVENTS_PER_DAY = 800

LOG_KEY = re.compile(
    r"^(?:(?P<prefix>.+)/)?AWSLogs/(?:(?P<org>o-[a-z0-9]{10})/)?(?P<account>\d{12})/CloudTrail/"
    r"(?P<region>[a-z]{2}-[a-z]+-\d)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P=account)_CloudTrail_(?P=region)_(?P<stamp>\d{8}T\d{4}Z)_[A-Za-z0-9]{16}\.json\.gz$"
)
DIGEST_KEY = re.compile(
    r"^(?:(?P<prefix>.+)/)?AWSLogs/(?:(?P<org>o-[a-z0-9]{10})/)?(?P<account>\d{12})/CloudTrail-Digest/"
    r"(?P<region>[a-z]{2}-[a-z]+-\d)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P=account)_CloudTrail-Digest_(?P=region)_(?P<trail>[A-Za-z0-9._-]+)_(?P<home>[a-z]{2}-[a-z]+-\d)_"
    r"(?P<stamp>\d{8}T\d{6}Z)\.json\.gz$"
)
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@dataclass
class Archive:
    """An archive read back from disk, so tests check files rather than the generator's own bookkeeping."""

    root: Path
    summary: GenerationSummary
    logs: dict[str, bytes] = field(default_factory=dict)  # key -> uncompressed bytes
    digests: dict[str, bytes] = field(default_factory=dict)
    gzip_sizes: dict[str, int] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # key -> records
    truth: list[dict[str, Any]] = field(default_factory=list)

    def events(self) -> dict[str, dict[str, Any]]:
        """Distinct events by eventID."""
        return {r["eventID"]: r for recs in self.records.values() for r in recs}

    def baseline(self) -> list[dict[str, Any]]:
        """Events that were not injected by an incident."""
        injected = {i for inc in self.truth for i in inc["eventIDs"]}
        return [e for i, e in self.events().items() if i not in injected]


def read_archive(root: Path, summary: GenerationSummary) -> Archive:
    archive = Archive(root, summary, truth=json.loads((root / "ground_truth.json").read_text()))
    for path in sorted(root.rglob("*.json.gz")):
        key = path.relative_to(root).as_posix()
        data = path.read_bytes()
        raw = gzip.decompress(data)
        if "/CloudTrail-Digest/" in key:
            archive.digests[key] = raw
        else:
            archive.logs[key] = raw
            archive.gzip_sizes[key] = len(data)
            archive.records[key] = orjson.loads(raw)["Records"]
    return archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    root = tmp_path_factory.mktemp("archive")
    summary = generate_archive(root, days=DAYS, seed=11, end=END, events_per_day=EVENTS_PER_DAY)
    return read_archive(root, summary)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def folder_date(key: str) -> date:
    m = LOG_KEY.match(key) or DIGEST_KEY.match(key)
    assert m, key
    return date(int(m["y"]), int(m["m"]), int(m["d"]))


def parse_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------------------------


def test_same_seed_writes_byte_identical_archives(tmp_path: Path) -> None:
    first = generate_archive(tmp_path / "a", days=2, seed=5, end=END, events_per_day=400)
    second = generate_archive(tmp_path / "b", days=2, seed=5, end=END, events_per_day=400)
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert a == b
    assert first.events == second.events and first.raw_bytes == second.raw_bytes


def test_different_seed_writes_a_different_archive(tmp_path: Path) -> None:
    generate_archive(tmp_path / "a", days=1, seed=5, end=END, events_per_day=300)
    generate_archive(tmp_path / "b", days=1, seed=6, end=END, events_per_day=300)
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert set(a) != set(b)  # other account ids, org id and file names
    assert a["ground_truth.json"] != b["ground_truth.json"]


def test_parallel_workers_write_the_same_bytes_as_one_process(tmp_path: Path) -> None:
    generate_archive(tmp_path / "one", days=2, seed=9, end=END, events_per_day=400, workers=1)
    generate_archive(tmp_path / "two", days=2, seed=9, end=END, events_per_day=400, workers=2)
    assert tree_bytes(tmp_path / "one") == tree_bytes(tmp_path / "two")


def test_gzip_headers_carry_no_time_or_file_name(archive: Archive) -> None:
    for path in list(archive.root.rglob("*.json.gz"))[:200]:
        header = path.read_bytes()[:10]
        assert header[:3] == b"\x1f\x8b\x08"
        assert header[3] & 0x08 == 0, "FNAME flag set"
        assert header[4:8] == b"\0\0\0\0", "non-zero mtime"


# ------------------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------------------


def test_log_and_digest_keys_follow_the_cloudtrail_layout(archive: Archive) -> None:
    assert archive.logs and archive.digests
    for key in archive.logs:
        m = LOG_KEY.match(key)
        assert m, key
        assert m["stamp"][:8] == f"{m['y']}{m['m']}{m['d']}", "file time and date folder disagree"
    for key in archive.digests:
        m = DIGEST_KEY.match(key)
        assert m, key
        assert m["stamp"][:8] == f"{m['y']}{m['m']}{m['d']}"
    others = {p.name for p in archive.root.iterdir()} - {"AWSLogs", "ground_truth.json"}
    assert not others, f"unexpected entries under out/: {others}"


def test_three_org_trail_member_accounts_and_one_standalone_account(archive: Archive) -> None:
    org_accounts: dict[str, set[str]] = defaultdict(set)
    standalone: set[str] = set()
    for key in archive.logs:
        m = LOG_KEY.match(key)
        assert m
        if m["org"]:
            org_accounts[m["org"]].add(m["account"])
        else:
            standalone.add(m["account"])
    assert len(org_accounts) == 1
    assert len(next(iter(org_accounts.values()))) == 3
    assert len(standalone) == 1


def test_regions_have_uneven_traffic_with_us_east_1_busiest(archive: Archive) -> None:
    per_region = Counter(e["awsRegion"] for e in archive.baseline())
    assert 3 <= len(per_region) <= 4
    assert per_region.most_common(1)[0][0] == "us-east-1"
    assert per_region.most_common()[-1][1] < per_region["us-east-1"] / 4


def test_prefix_goes_before_awslogs(tmp_path: Path) -> None:
    generate_archive(tmp_path, days=1, seed=2, end=END, events_per_day=300, prefix="/team/trails/")
    keys = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json.gz")]
    assert keys and all(k.startswith("team/trails/AWSLogs/") for k in keys)
    digest = next(p for p in tmp_path.rglob("*.json.gz") if "CloudTrail-Digest" in p.as_posix())
    doc = json.loads(gzip.decompress(digest.read_bytes()))
    assert doc["digestS3Object"].startswith("team/trails/AWSLogs/")
    assert all(f["s3Object"].startswith("team/trails/AWSLogs/") for f in doc["logFiles"])


def test_every_log_file_is_compact_json_with_nonempty_records(archive: Archive) -> None:
    for key, raw in archive.logs.items():
        records = archive.records[key]
        assert records, f"{key} is a file for an interval with no events"
        # Compact serialisation: the file is exactly the records joined, no whitespace added.
        assert raw == b'{"Records":[' + b",".join(orjson.dumps(r) for r in records) + b"]}"


def test_days_end_at_the_requested_day_and_default_to_yesterday(tmp_path: Path, archive: Archive) -> None:
    assert archive.summary.days == [END - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
    summary = generate_archive(tmp_path, days=1, seed=1, events_per_day=100)
    today = datetime.now(UTC).date()
    assert summary.days[0] in {today - timedelta(days=1), today - timedelta(days=2)}  # midnight race


def test_invalid_arguments_are_rejected(tmp_path: Path) -> None:
    for kwargs in ({"days": 0}, {"days": 1, "events_per_day": 0}, {"days": 1, "workers": 0}):
        with pytest.raises(ValueError):
            generate_archive(tmp_path, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# Delivery: lag, late files, duplicates
# ------------------------------------------------------------------------------------------------------------


def test_events_of_a_day_also_arrive_in_the_next_days_folder(archive: Archive) -> None:
    late = [
        (key, e["eventTime"])
        for key, recs in archive.records.items()
        for e in recs
        if date.fromisoformat(e["eventTime"][:10]) == folder_date(key) - timedelta(days=1)
    ]
    assert late, "no event of day D was delivered in a day D+1 folder"
    assert any(folder_date(k) == END + timedelta(days=1) for k, _ in late), "last day's late files missing"


def test_files_hold_events_from_the_few_minutes_before_delivery(archive: Archive) -> None:
    lags = []
    for key, recs in archive.records.items():
        m = LOG_KEY.match(key)
        assert m
        delivered = datetime.strptime(m["stamp"], "%Y%m%dT%H%MZ")
        newest = max(parse_time(e["eventTime"]) for e in recs)
        lags.append((delivered - newest).total_seconds())
    lags.sort()
    assert lags[0] >= 0, "a file was delivered before its newest event happened"
    median = lags[len(lags) // 2]
    assert 60 <= median <= 15 * 60


def test_records_are_not_sorted_inside_files(archive: Archive) -> None:
    big = [recs for recs in archive.records.values() if len(recs) >= 8]
    unsorted = [r for r in big if [e["eventTime"] for e in r] != sorted(e["eventTime"] for e in r)]
    assert big and len(unsorted) > len(big) / 2


def test_duplicates_are_byte_identical_records_in_another_file(archive: Archive) -> None:
    where: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for key, recs in archive.records.items():
        for e in recs:
            where[e["eventID"]].append((key, orjson.dumps(e)))
    dups = {i: copies for i, copies in where.items() if len(copies) > 1}
    total = len(where)
    assert 0.001 * total <= len(dups) <= 0.006 * total
    for copies in dups.values():
        assert len({b for _, b in copies}) == 1, "duplicate delivery differs from the original"
        assert len({k for k, _ in copies}) == len(copies), "duplicate in the same file"
    assert sum(len(c) - 1 for c in dups.values()) == archive.summary.duplicate_deliveries
    # Some are re-sent after midnight, in the next day's folder.
    crossing = [c for c in dups.values() if len({folder_date(k) for k, _ in c}) > 1]
    assert crossing


# ------------------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------------------


def test_events_carry_the_core_cloudtrail_fields(archive: Archive) -> None:
    events = list(archive.events().values())
    versions = Counter(e["eventVersion"] for e in events)
    assert set(versions) <= {"1.08", "1.09", "1.10", "1.11"}
    for e in events:
        assert EVENT_TIME.match(e["eventTime"]), e["eventTime"]
        assert UUID4.match(e["eventID"]), e["eventID"]
        assert e["eventSource"].endswith(".amazonaws.com")
        assert e["eventType"] in {"AwsApiCall", "AwsServiceEvent", "AwsConsoleSignIn"}
        assert e["eventCategory"] in {"Management", "Data"}
        assert isinstance(e["readOnly"], bool) and isinstance(e["managementEvent"], bool)
        assert e["recipientAccountId"].isdigit()
        for name in ("requestParameters", "responseElements"):
            assert e[name] is None or isinstance(e[name], dict)
    assert any("tlsDetails" in e for e in events)
    assert any(e.get("sessionCredentialFromConsole") == "true" for e in events)
    assert any("resources" in e for e in events)


def test_all_identity_types_appear_with_their_shapes(archive: Archive) -> None:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in archive.events().values():
        by_type[e["userIdentity"]["type"]].append(e["userIdentity"])
    expected = {"IAMUser", "AssumedRole", "Root", "AWSService", "AWSAccount", "FederatedUser", "SAMLUser",
                "WebIdentityUser", "IdentityCenterUser"}
    assert expected <= set(by_type)
    for ident in by_type["AssumedRole"]:
        ctx = ident["sessionContext"]
        assert ctx["sessionIssuer"]["type"] == "Role"
        assert ident["arn"].startswith("arn:aws:sts::") and ":assumed-role/" in ident["arn"]
        assert ctx["attributes"]["mfaAuthenticated"] in {"true", "false"}
    assert all("invokedBy" in i for i in by_type["AWSService"])
    assert all(i["onBehalfOf"]["identityStoreArn"].startswith("arn:aws:identitystore::")
               for i in by_type["IdentityCenterUser"])
    assert all(i["sessionContext"]["sessionIssuer"]["type"] == "IAMUser" for i in by_type["FederatedUser"])
    assert all("identityProvider" in i for i in by_type["SAMLUser"] + by_type["WebIdentityUser"])


def test_service_calls_come_from_service_names_not_ips(archive: Archive) -> None:
    service = [e for e in archive.events().values() if e["userIdentity"]["type"] == "AWSService"]
    assert service
    assert all(e["sourceIPAddress"].endswith(".amazonaws.com") or e["sourceIPAddress"] == "AWS Internal"
               for e in service)


def test_api_mix_is_wide_skewed_and_mostly_read_only(archive: Archive) -> None:
    events = archive.baseline()
    apis = Counter((e["eventSource"], e["eventName"]) for e in events)
    assert len(apis) >= 60
    assert len({s for s, _ in apis}) >= 12
    counts = [c for _, c in apis.most_common()]
    assert counts[0] > 10 * counts[len(counts) // 2], "API popularity is not skewed"
    read_only = sum(e["readOnly"] for e in events) / len(events)
    assert 0.7 <= read_only <= 0.92


def test_error_share_of_normal_traffic_is_realistic(archive: Archive) -> None:
    events = archive.baseline()
    errors = [e for e in events if "errorCode" in e]
    assert 0.01 <= len(errors) / len(events) <= 0.06
    codes = Counter(e["errorCode"] for e in errors)
    assert {"AccessDenied", "Client.UnauthorizedOperation"} <= set(codes)
    assert all(e["responseElements"] is None for e in errors)


def test_traffic_follows_business_hours_but_never_stops(archive: Archive) -> None:
    per_hour = Counter(int(e["eventTime"][11:13]) for e in archive.baseline())
    assert min(per_hour[h] for h in range(24)) > 0
    assert max(per_hour.values()) > 1.6 * min(per_hour.values())
    assert per_hour[14] + per_hour[15] > per_hour[2] + per_hour[3]


def test_baseline_per_api_volume_is_stable_from_day_to_day(archive: Archive) -> None:
    per_day: dict[date, Counter[tuple[str, str]]] = defaultdict(Counter)
    for e in archive.baseline():
        per_day[date.fromisoformat(e["eventTime"][:10])][(e["eventSource"], e["eventName"])] += 1
    totals = [sum(c.values()) for c in per_day.values()]
    assert totals == [EVENTS_PER_DAY] * DAYS  # exactly events_per_day of normal traffic each day
    top = [api for api, _ in sum(per_day.values(), Counter()).most_common(3)]
    for api in top:
        daily = [per_day[d][api] for d in per_day]
        mean = sum(daily) / len(daily)
        assert max(abs(x - mean) for x in daily) < 0.35 * mean, (api, daily)


def test_some_requests_carry_tens_of_kilobytes_of_parameters(archive: Archive) -> None:
    sizes = [len(orjson.dumps(e.get("requestParameters"))) for e in archive.events().values()]
    big = sum(s > 10_000 for s in sizes)
    assert big >= 1
    assert big / len(sizes) < 0.01


def test_console_logins_record_mfa_use(archive: Archive) -> None:
    logins = [e for e in archive.events().values() if e["eventName"] == "ConsoleLogin"]
    assert logins
    for e in logins:
        assert e["eventType"] == "AwsConsoleSignIn"
        assert set(e["additionalEventData"]) >= {"MFAUsed", "LoginTo", "MobileVersion"}
        assert e["responseElements"]["ConsoleLogin"] in {"Success", "Failure"}


# ------------------------------------------------------------------------------------------------------------
# Digests
# ------------------------------------------------------------------------------------------------------------


def test_every_log_file_is_listed_once_in_a_digest_with_its_sha256(archive: Archive) -> None:
    listed: Counter[str] = Counter()
    for raw in archive.digests.values():
        doc = json.loads(raw)
        for f in doc["logFiles"]:
            listed[f["s3Object"]] += 1
            assert f["hashAlgorithm"] == "SHA-256"
            assert f["hashValue"] == hashlib.sha256(archive.logs[f["s3Object"]]).hexdigest()
            times = [e["eventTime"] for e in archive.records[f["s3Object"]]]
            assert (f["oldestEventTime"], f["newestEventTime"]) == (min(times), max(times))
    assert set(listed) == set(archive.logs)
    assert set(listed.values()) == {1}


def test_digests_are_hourly_and_chained_per_account_and_region(archive: Archive) -> None:
    chains: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for key, raw in archive.digests.items():
        doc = json.loads(raw)
        assert doc["digestS3Object"] == key
        assert doc["digestSignatureAlgorithm"] == "SHA256withRSA"
        chains[(doc["awsAccountId"], key.split("/CloudTrail-Digest/")[1].split("/")[0])].append((key, doc))
    assert len(chains) == 16  # 4 accounts x 4 regions, even regions an account never uses
    for chain in chains.values():
        chain.sort(key=lambda kd: kd[1]["digestEndTime"])
        first = chain[0][1]
        assert first["previousDigestS3Object"] is None and first["previousDigestHashValue"] is None
        for (prev_key, prev), (_, doc) in itertools.pairwise(chain):
            assert doc["digestStartTime"] == prev["digestEndTime"]
            span = parse_time(doc["digestEndTime"]) - parse_time(doc["digestStartTime"])
            assert span == timedelta(hours=1)
            assert doc["previousDigestS3Object"] == prev_key
            assert doc["previousDigestHashAlgorithm"] == "SHA-256"
            assert doc["previousDigestHashValue"] == hashlib.sha256(archive.digests[prev_key]).hexdigest()
            assert doc["previousDigestSignature"] == ""  # unsigned for now
        assert parse_time(chain[-1][1]["digestEndTime"]).date() > END
    assert any(not json.loads(raw)["logFiles"] for raw in archive.digests.values()), "no empty digest"


# ------------------------------------------------------------------------------------------------------------
# Ground truth
# ------------------------------------------------------------------------------------------------------------


def incidents(archive: Archive, kind: str) -> list[dict[str, Any]]:
    return [i for i in archive.truth if i["kind"] == kind]


def test_ground_truth_lists_each_incident_kind_after_the_first_week(archive: Archive) -> None:
    kinds = Counter(i["kind"] for i in archive.truth)
    assert 2 <= kinds["api_call_rate_spike"] <= 3
    assert 1 <= kinds["api_error_rate_burst"] <= 2
    assert kinds["root_console_login_without_mfa"] == 1
    assert kinds["security_group_open_to_world"] == 1
    assert kinds["cloudtrail_stop_logging"] == 1
    first_allowed = END - timedelta(days=DAYS - 8)
    events = archive.events()
    for inc in archive.truth:
        assert {"kind", "account", "region", "eventSource", "eventName", "start", "end", "errorCode",
                "principal", "eventIDs", "description"} <= set(inc)
        assert parse_time(inc["start"]).date() >= first_allowed
        for event_id in inc["eventIDs"]:
            e = events[event_id]
            assert (e["eventSource"], e["eventName"]) == (inc["eventSource"], inc["eventName"])
            assert e["recipientAccountId"] == inc["account"] and e["awsRegion"] == inc["region"]
            assert inc["start"] <= e["eventTime"] <= inc["end"]
            assert e["userIdentity"].get("arn") == inc["principal"]


def test_incidents_on_short_runs_go_on_the_last_day(tmp_path: Path) -> None:
    generate_archive(tmp_path, days=3, seed=4, end=END, events_per_day=300)
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert truth and all(parse_time(i["start"]).date() == END for i in truth)


def per_minute(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["eventTime"][:16] for e in events)


def test_rate_spikes_are_ten_times_the_apis_normal_rate(archive: Archive) -> None:
    events = list(archive.events().values())
    for inc in incidents(archive, "api_call_rate_spike"):
        same_api = [e for e in events if (e["recipientAccountId"], e["awsRegion"], e["eventName"])
                    == (inc["account"], inc["region"], inc["eventName"])]
        ids = set(inc["eventIDs"])
        assert all(e["readOnly"] is False and e["managementEvent"] and "errorCode" not in e
                   for e in same_api if e["eventID"] in ids)
        normal = [e for e in same_api if e["eventID"] not in ids]
        baseline_per_minute = len(normal) / (DAYS * 1440)
        window = per_minute([e for e in same_api if inc["start"] <= e["eventTime"] < inc["end"]])
        minutes = (parse_time(inc["end"]) - parse_time(inc["start"])).total_seconds() / 60
        assert 10 <= minutes <= 60
        assert sum(window.values()) / minutes >= max(17, 10 * baseline_per_minute)


def test_error_bursts_fail_far_more_often_than_usual(archive: Archive) -> None:
    events = list(archive.events().values())
    for inc in incidents(archive, "api_error_rate_burst"):
        assert inc["errorCode"] in {"AccessDenied", "ThrottlingException"}
        ids = set(inc["eventIDs"])
        where = (inc["errorCode"], inc["eventName"], inc["account"], inc["region"])
        errors = [e for e in events
                  if (e.get("errorCode"), e["eventName"], e["recipientAccountId"], e["awsRegion"]) == where]
        assert ids <= {e["eventID"] for e in errors}
        usual = sum(e["eventID"] not in ids for e in errors) / (DAYS * 1440)
        minutes = (parse_time(inc["end"]) - parse_time(inc["start"])).total_seconds() / 60
        assert 10 <= minutes <= 40
        assert len(ids) / minutes >= max(15, 20 * usual)


def test_root_console_login_without_mfa_is_injected(archive: Archive) -> None:
    (inc,) = incidents(archive, "root_console_login_without_mfa")
    (event_id,) = inc["eventIDs"]
    e = archive.events()[event_id]
    assert e["eventName"] == "ConsoleLogin" and e["eventType"] == "AwsConsoleSignIn"
    assert e["userIdentity"]["type"] == "Root" and "invokedBy" not in e["userIdentity"]
    assert e["additionalEventData"]["MFAUsed"] == "No"
    assert e["responseElements"] == {"ConsoleLogin": "Success"}
    others = [x for x in archive.events().values() if x["eventName"] == "ConsoleLogin"
              and x["userIdentity"]["type"] == "Root" and x["additionalEventData"]["MFAUsed"] != "Yes"]
    assert [x["eventID"] for x in others] == [event_id], "the injected login is the only one of its kind"


def test_security_group_opened_to_the_world_is_injected(archive: Archive) -> None:
    (inc,) = incidents(archive, "security_group_open_to_world")
    e = archive.events()[inc["eventIDs"][0]]
    assert e["eventName"] == "AuthorizeSecurityGroupIngress" and "errorCode" not in e
    cidrs = [r["cidrIp"] for p in e["requestParameters"]["ipPermissions"]["items"]
             for r in p["ipRanges"]["items"]]
    assert "0.0.0.0/0" in cidrs
    world_open = [x for x in archive.events().values() if x["eventName"] == "AuthorizeSecurityGroupIngress"
                  and "0.0.0.0/0" in orjson.dumps(x["requestParameters"]).decode()]
    assert [x["eventID"] for x in world_open] == inc["eventIDs"]


def test_stop_logging_is_injected(archive: Archive) -> None:
    (inc,) = incidents(archive, "cloudtrail_stop_logging")
    e = archive.events()[inc["eventIDs"][0]]
    assert (e["eventSource"], e["eventName"]) == ("cloudtrail.amazonaws.com", "StopLogging")
    assert e["requestParameters"]["name"].startswith("arn:aws:cloudtrail:")
    assert e["readOnly"] is False and "errorCode" not in e


# ------------------------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------------------------


def test_summary_counts_match_what_is_on_disk(archive: Archive) -> None:
    s = archive.summary
    total_records = sum(len(r) for r in archive.records.values())
    assert s.root == archive.root
    assert s.log_files == len(archive.logs)
    assert s.digest_files == len(archive.digests)
    assert s.events == len(archive.events())
    assert s.duplicate_deliveries == total_records - s.events
    assert s.raw_bytes == sum(len(b) for b in archive.logs.values())
    assert s.gzip_bytes == sum(archive.gzip_sizes.values())
    assert s.ground_truth == archive.root / "ground_truth.json"
