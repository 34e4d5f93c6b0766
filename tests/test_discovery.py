"""Discovery: the archive layout, organization trails, prefixes, filters, and non-log objects."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from conftest import WriteLog, day_start, log_key, make_event

from trailsight.source.discovery import ObjectKind, delivery_time, discover
from trailsight.storage.store import Storage


class CountingStorage(Storage):
    """Records every folder listed, to prove listing stays within the asked dates."""

    def __init__(self, url: str | Path) -> None:
        super().__init__(url)
        self.listed: list[str] = []

    def list_files(self, key: str = "", recursive: bool = True):  # type: ignore[override]
        self.listed.append(key)
        return super().list_files(key, recursive)


def build_archive(write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1).replace(hour=10)
    write_log(log_key(when), [make_event(when)])
    write_log(log_key(when, account="222233334444", region="eu-west-1", org="o-abcdefghij"), [make_event(when)])
    write_log(log_key(when, account="333344445555", prefix="team/trails/"), [make_event(when)])
    write_log(log_key(day_start(2024, 5, 3)), [make_event(day_start(2024, 5, 3))])
    folder = "AWSLogs/111122223333/{}/us-east-1/2024/05/01/111122223333_{}_us-east-1_"
    digest = folder.format("CloudTrail-Digest", "CloudTrail-Digest") + "t_us-east-1_20240501T110000Z.json.gz"
    write_log(digest, [])
    insight = folder.format("CloudTrail-Insight", "CloudTrail-Insight") + "20240501T1100Z_abc.json.gz"
    write_log(insight, [])
    write_log("AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/README.txt", raw=b"not a log")
    write_log("AWSLogs/111122223333/CloudTrail-ConfigSnapshot/us-east-1/2024/05/01/x.json.gz", [])


def test_finds_accounts_org_trails_and_prefixed_roots(tmp_path: Path, write_log: WriteLog) -> None:
    build_archive(write_log)
    found = discover(Storage(tmp_path / "source"))
    logs = [o for o in found.event_files if o.kind is ObjectKind.LOG]
    assert {(o.account, o.region, o.organization) for o in logs} == {
        ("111122223333", "us-east-1", None),
        ("222233334444", "eu-west-1", "o-abcdefghij"),
    }


def test_prefix_before_awslogs_is_found(tmp_path: Path, write_log: WriteLog) -> None:
    when = day_start(2024, 5, 1)
    write_log(log_key(when, account="333344445555", prefix="team/trails/"), [make_event(when)])
    (found,) = discover(Storage(tmp_path / "source")).event_files
    assert found.account == "333344445555" and found.key.startswith("team/trails/AWSLogs/")


def test_digests_insights_and_other_objects_are_told_apart(tmp_path: Path, write_log: WriteLog) -> None:
    build_archive(write_log)
    found = discover(Storage(tmp_path / "source"))
    assert [o.kind for o in found.digests] == [ObjectKind.DIGEST]
    assert ObjectKind.INSIGHT in {o.kind for o in found.event_files}
    assert {o.key.rsplit("/", 1)[-1] for o in found.others} == {"README.txt", "x.json.gz"}
    assert all(o.kind is not ObjectKind.DIGEST for o in found.event_files)


def test_date_range_lists_only_those_date_folders(tmp_path: Path, write_log: WriteLog) -> None:
    build_archive(write_log)
    storage = CountingStorage(tmp_path / "source")
    found = discover(storage, date(2024, 5, 3), date(2024, 5, 3))
    assert [o.delivery_date for o in found.event_files] == [date(2024, 5, 3)]
    assert storage.listed and all(key.endswith("2024/05/03") for key in storage.listed)


def test_account_and_region_filters(tmp_path: Path, write_log: WriteLog) -> None:
    build_archive(write_log)
    source = Storage(tmp_path / "source")
    assert {o.account for o in discover(source, accounts=["222233334444"]).event_files} == {"222233334444"}
    assert {o.region for o in discover(source, regions=["eu-west-1"]).event_files} == {"eu-west-1"}


def test_delivery_time_is_read_from_the_file_name() -> None:
    assert delivery_time("1_CloudTrail_us-east-1_20240501T0005Z_abc.json.gz") == day_start(2024, 5, 1).replace(
        minute=5)
    assert delivery_time("no-stamp.json.gz") is None
