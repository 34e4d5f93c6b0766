"""The retention commands through the CLI: archive, restore, lifecycle plan|apply|check, retention plan.

The behaviour itself is proven on the library (test_retention_archive.py, test_lifecycle.py, test_costs.py);
here each command is run as a user runs it, with its output, its exact errors and its exit codes.
"""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import WriteLog, day_start, log_key, make_event

from trailsight.cli.common import EXIT_PENDING
from trailsight.cli.main import run
from trailsight.lake.ingest import ingest
from trailsight.retention.costs import cost_plan, load_prices
from trailsight.retention.policy import load_policy
from trailsight.storage.aws import client, split_s3_url
from trailsight.storage.store import Storage

DAY = "2024-05-01"
ACCOUNT = "111122223333"
REGIONS = ("eu-west-1", "us-east-1")
FOREIGN_RULE = {"ID": "team-tmp-cleanup", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled",
                "Expiration": {"Days": 3}}


def policy_file(folder: Path, storage_class: str = "GLACIER_IR", extra: str = "") -> Path:
    path = folder / f"retention-{storage_class.lower()}.toml"
    path.write_text("[raw]\nkeep_as_delivered_days = 30\nretain_days = 400\n\n"
                    f"[bundles]\nstorage_class = \"{storage_class}\"\n{extra}")
    return path


def day_logs() -> dict[str, list[dict[str, Any]]]:
    """One file per region, delivered on DAY, with two events each."""
    delivered = day_start(2024, 5, 1).replace(hour=10)
    return {log_key(delivered, region=region, suffix=f"{number:016x}"):
            [make_event(delivered - timedelta(minutes=m), awsRegion=region) for m in (5, 9)]
            for number, region in enumerate(REGIONS)}


@pytest.fixture
def archived_locally(tmp_path: Path, write_log: WriteLog) -> tuple[Path, Path, Path, dict[str, bytes]]:
    """(source, lake, policy, originals) with DAY ingested into the lake but not archived yet."""
    originals = {key: write_log(key, records).read_bytes() for key, records in day_logs().items()}
    source, lake = tmp_path / "source", tmp_path / "lake"
    ingest(str(source), str(lake), workers=1)
    return source, lake, policy_file(tmp_path), originals


def raw_files(source: Path) -> dict[str, bytes]:
    return {str(p.relative_to(source)): p.read_bytes() for p in sorted((source / "AWSLogs").rglob("*.json.gz"))}


def output(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


# --- help ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["archive", "restore", "lifecycle plan", "lifecycle apply", "lifecycle check",
                                     "retention plan", "lifecycle", "retention"])
def test_every_retention_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*command.split(), "--help"]) == 0
    assert f"Example: trailsight {command}" in capsys.readouterr().out


def test_restore_help_documents_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["restore", "--help"]) == 0
    assert "Exit codes: 0 restored (or nothing to restore), 1 failed, 3 pending." in capsys.readouterr().out


# --- archive -------------------------------------------------------------------------------------------------


def test_archive_prints_a_row_per_group_then_what_it_wrote_and_deleted(archived_locally, capsys) -> None:
    source, lake, policy, _ = archived_locally
    assert run(["archive", "--source", str(source), "--lake", str(lake), "--date", DAY, "--policy", str(policy)]) == 0
    out, _ = output(capsys)
    assert f"{ACCOUNT}/eu-west-1" in out and f"{ACCOUNT}/us-east-1" in out
    assert out.splitlines()[-1] == "2024-05-01 archived: 2 bundles written, 2 originals deleted"
    assert raw_files(source) == {}
    assert sorted(p.name for p in (source / "trailsight-archive" / "bundles").rglob("*.tar")) == [
        "eu-west-1.tar", "us-east-1.tar"]


def test_archive_again_writes_nothing_and_json_says_so(archived_locally, capsys) -> None:
    source, lake, policy, _ = archived_locally
    arguments = ["archive", "--source", str(source), "--lake", str(lake), "--date", DAY, "--policy", str(policy)]
    assert run(arguments) == 0
    capsys.readouterr()
    assert run([*arguments, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["status"], result["ok"], result["bundles_written"], result["files_deleted"]) == (
        "already archived", True, 0, 0)
    assert [(g["group"], g["files"], g["in_lake"]) for g in result["groups"]] == [
        (f"{ACCOUNT}/{region}", 1, 2) for region in REGIONS]


def test_archive_of_a_day_not_in_the_lake_reports_each_problem_and_exits_1(archived_locally, write_log,
                                                                           capsys) -> None:
    source, lake, policy, _ = archived_locally
    late = day_start(2024, 5, 1).replace(hour=23)
    stray = log_key(late, region="us-east-1", suffix="ffffffffffffffff")
    write_log(stray, [make_event(late)])  # delivered after the ingest: not in the lake
    before = raw_files(source)
    assert run(["archive", "--source", str(source), "--lake", str(lake), "--date", DAY, "--policy", str(policy)]) == 1
    out, err = output(capsys)
    problem, summary = err.strip().splitlines()
    assert problem.startswith(f"{stray}: 1 of 1 events are neither in the lake nor in its quarantine")
    assert problem.endswith("run `trailsight ingest --date 2024-05-01` and archive again")
    assert summary == "2024-05-01 failed verification (1 problem); nothing was written or deleted"
    assert out.splitlines()[-1] == "2024-05-01 unverified: 0 bundles written, 0 originals deleted"
    assert raw_files(source) == before and not (source / "trailsight-archive").exists()


def test_archive_inside_the_as_delivered_period_is_refused_unless_forced(tmp_path: Path, capsys) -> None:
    today = datetime.now(UTC).date()
    arguments = ["archive", "--source", str(tmp_path / "source"), "--lake", str(tmp_path / "lake"),
                 "--date", today.isoformat(), "--policy", str(policy_file(tmp_path))]
    assert run(arguments) == 1
    assert capsys.readouterr().err == (f"Error: {today} is inside the policy's 30 days as delivered; archive it on "
                                       f"or after {today + timedelta(days=30)} (or pass --force)\n")
    (tmp_path / "source").mkdir()
    assert run([*arguments, "--force"]) == 0
    assert capsys.readouterr().out == f"{today} nothing to archive: 0 bundles written, 0 originals deleted\n"


def test_archive_with_a_misspelt_policy_is_one_error_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[raw]\nkeep_as_delivred_days = 30\nretain_days = 400\n")
    assert run(["archive", "--source", "s", "--lake", "l", "--date", DAY, "--policy", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err == (f"Error: {bad}: [raw] keep_as_delivred_days is not a setting (did you mean "
                   "keep_as_delivered_days?); keep_as_delivered_days is missing\n")


def test_archive_with_a_bad_date_is_one_error_line(capsys) -> None:
    assert run(["archive", "--source", "s", "--lake", "l", "--date", "2024-13-01"]) == 1
    assert capsys.readouterr().err == "Error: --date '2024-13-01' is not a date; use YYYY-MM-DD\n"


# --- restore -------------------------------------------------------------------------------------------------


def test_restore_puts_the_originals_back_and_a_second_run_finds_them_in_place(archived_locally, capsys) -> None:
    source, lake, policy, originals = archived_locally
    assert run(["archive", "--source", str(source), "--lake", str(lake), "--date", DAY, "--policy", str(policy)]) == 0
    capsys.readouterr()
    restore = ["restore", "--source", str(source), "--date", DAY, "--policy", str(policy)]
    assert run(restore) == 0
    out, _ = output(capsys)
    assert f"{ACCOUNT}/us-east-1.tar" in out
    assert out.splitlines()[-1] == f"2024-05-01 restored: 2 files written, 0 already in place, under {source}"
    assert raw_files(source) == originals
    assert run(restore) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"2024-05-01 restored: 0 files written, 2 already in place, under {source}")


def test_restore_into_a_target_with_a_region_filter(archived_locally, tmp_path: Path, capsys) -> None:
    source, lake, policy, originals = archived_locally
    run(["archive", "--source", str(source), "--lake", str(lake), "--date", DAY, "--policy", str(policy)])
    capsys.readouterr()
    target = tmp_path / "restored"
    assert run(["restore", "--source", str(source), "--date", DAY, "--policy", str(policy), "--target", str(target),
                "--region", "eu-west-1", "--account", ACCOUNT, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["status"], result["files_written"], len(result["bundles"])) == ("restored", 1, 1)
    assert raw_files(target) == {k: v for k, v in originals.items() if "/eu-west-1/" in k}
    assert raw_files(source) == {}


def test_restore_of_a_damaged_bundle_fails_with_exit_1(archived_locally, capsys) -> None:
    source, lake, policy, _ = archived_locally
    run(["archive", "--source", str(source), "--lake", str(lake), "--date", DAY, "--policy", str(policy)])
    bundle = source / "trailsight-archive/bundles/2024/05/01" / ACCOUNT / "us-east-1.tar"
    bundle.write_bytes(b"not a tar" * 100)
    capsys.readouterr()
    assert run(["restore", "--source", str(source), "--date", DAY, "--policy", str(policy)]) == 1
    out, err = output(capsys)
    assert out.splitlines()[-1].startswith("2024-05-01 failed: ")
    (line,) = err.strip().splitlines()
    assert line.startswith(f"trailsight-archive/bundles/2024/05/01/{ACCOUNT}/us-east-1.tar: bundle "
                           f"trailsight-archive/bundles/2024/05/01/{ACCOUNT}/us-east-1.tar is damaged")
    assert not any("/us-east-1/" in key for key in raw_files(source))


def test_restore_of_a_day_without_bundles_says_so(tmp_path: Path, capsys) -> None:
    (tmp_path / "source").mkdir()
    assert run(["restore", "--source", str(tmp_path / "source"), "--date", DAY,
                "--policy", str(policy_file(tmp_path))]) == 0
    assert capsys.readouterr().out == (f"2024-05-01: nothing to restore (no bundles under "
                                       f"trailsight-archive/bundles/2024/05/01/ of {tmp_path / 'source'})\n")


def test_deep_archive_on_s3_is_pending_with_exit_3_then_restored(s3_bucket: str, tmp_path: Path, capsys) -> None:
    source, lake = Storage(f"{s3_bucket}/cloudtrail"), Storage(f"{s3_bucket}/lake")
    originals = {}
    for key, records in day_logs().items():
        originals[key] = gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)
        source.write_bytes(key, originals[key])
    ingest(source.url, lake.url, workers=1)
    policy = str(policy_file(tmp_path, "DEEP_ARCHIVE"))
    assert run(["archive", "--source", source.url, "--lake", lake.url, "--date", DAY, "--policy", policy]) == 0
    out, _ = output(capsys)
    assert "DEEP_ARCHIVE" in out and out.splitlines()[-1] == (
        "2024-05-01 archived: 2 bundles written, 2 originals deleted")
    assert list(source.list_files("AWSLogs")) == []

    restore = ["restore", "--source", source.url, "--date", DAY, "--policy", policy]
    assert run(restore) == EXIT_PENDING == 3
    out, _ = output(capsys)
    assert out.splitlines()[-1] == "S3 is restoring 2 bundles; run the same command again later"
    assert "S3 restore requested (Bulk tier, readable for 7 days once done)" in out
    assert run(restore) == 0  # moto completes a restore at once; S3 takes hours
    assert {o.key: source.read_bytes(o.key) for o in source.list_files("AWSLogs")} == originals


# --- lifecycle -----------------------------------------------------------------------------------------------


def bucket_rule_ids(url: str) -> list[str]:
    rules = client("s3").get_bucket_lifecycle_configuration(Bucket=split_s3_url(url)[0])["Rules"]
    return sorted(r["ID"] for r in rules)


def put_foreign_rule(url: str) -> None:
    client("s3").put_bucket_lifecycle_configuration(Bucket=split_s3_url(url)[0],
                                                    LifecycleConfiguration={"Rules": [FOREIGN_RULE]})


def test_lifecycle_plan_shows_the_diff_keeps_foreign_rules_and_warns(s3_bucket: str, tmp_path: Path,
                                                                     capsys) -> None:
    put_foreign_rule(s3_bucket)
    assert run(["lifecycle", "plan", "--bucket", s3_bucket, "--lake", str(tmp_path / "lake")]) == 0
    out, err = output(capsys)
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("+")] == [
        "+ add rule trailsight-raw", "+ add rule trailsight-bundles", "+ add rule trailsight-manifests"]
    assert '    +    "Prefix": "trailsight-archive/bundles/"' in lines
    assert lines[-1] == "kept as they are: team-tmp-cleanup"
    assert err == (f"warning: the lake {tmp_path / 'lake'} is not on S3; [lake] keep_days is not enforced by "
                   "lifecycle rules there\n")
    assert bucket_rule_ids(s3_bucket) == ["team-tmp-cleanup"]


def test_lifecycle_check_reports_drift_and_apply_fixes_it(s3_bucket: str, capsys) -> None:
    put_foreign_rule(s3_bucket)
    bucket = split_s3_url(s3_bucket)[0]
    assert run(["lifecycle", "check", "--bucket", s3_bucket]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "drift: rule trailsight-raw is missing from the bucket",
        "drift: rule trailsight-bundles is missing from the bucket",
        "drift: rule trailsight-manifests is missing from the bucket"]

    assert run(["lifecycle", "apply", "--bucket", s3_bucket, "--yes"]) == 0
    assert capsys.readouterr().out.splitlines()[-3:] == [
        "kept as they are: team-tmp-cleanup", f"applied 3 changes to bucket {bucket}",
        f"{bucket}: in sync with the policy"]
    assert bucket_rule_ids(s3_bucket) == ["team-tmp-cleanup", "trailsight-bundles", "trailsight-manifests",
                                          "trailsight-raw"]

    assert run(["lifecycle", "check", "--bucket", s3_bucket]) == 0
    assert capsys.readouterr().out == f"{bucket}: in sync with the policy\n"
    assert run(["lifecycle", "apply", "--bucket", s3_bucket]) == 0  # nothing to change: no question asked
    assert capsys.readouterr().out.splitlines() == [
        f"{bucket}: lifecycle rules in sync with the policy", "kept as they are: team-tmp-cleanup",
        "nothing to change", f"{bucket}: in sync with the policy"]


@pytest.mark.parametrize(("answer", "code"), [("n\n", 1), ("y\n", 0)])
def test_lifecycle_apply_asks_before_writing(s3_bucket: str, monkeypatch: pytest.MonkeyPatch, capsys,
                                            answer: str, code: int) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    assert run(["lifecycle", "apply", "--bucket", s3_bucket]) == code
    out, err = output(capsys)
    assert f"Write these lifecycle rules to bucket {split_s3_url(s3_bucket)[0]}? [y/N]" in out
    if code:
        assert err == "Aborted.\n"
        with pytest.raises(client("s3").exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
            bucket_rule_ids(s3_bucket)
    else:
        assert bucket_rule_ids(s3_bucket) == ["trailsight-bundles", "trailsight-manifests", "trailsight-raw"]


def test_lifecycle_apply_writes_only_the_plan_it_showed(s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
                                                       capsys) -> None:
    def someone_edits_the_bucket_meanwhile(*args: Any, **kwargs: Any) -> bool:
        put_foreign_rule(s3_bucket)
        return True

    monkeypatch.setattr(typer, "confirm", someone_edits_the_bucket_meanwhile)
    assert run(["lifecycle", "apply", "--bucket", s3_bucket]) == 1
    assert capsys.readouterr().err == (f"Error: the lifecycle rules of {split_s3_url(s3_bucket)[0]} changed since "
                                       "the plan was made; run `trailsight lifecycle plan` again and review it\n")
    assert bucket_rule_ids(s3_bucket) == ["team-tmp-cleanup"]


def test_lifecycle_needs_an_s3_bucket(tmp_path: Path, capsys) -> None:
    assert run(["lifecycle", "check", "--bucket", "./trail"]) == 1
    assert capsys.readouterr().err == ("Error: lifecycle rules exist only on S3 buckets, and './trail' is not one; "
                                       "give --bucket s3://BUCKET[/prefix]\n")


# --- retention plan ------------------------------------------------------------------------------------------


def test_retention_plan_prints_inventory_scenarios_components_and_notes(tmp_path: Path, write_log: WriteLog,
                                                                        capsys) -> None:
    for key, records in day_logs().items():
        write_log(key, records)
    assert run(["retention", "plan", "--source", str(tmp_path / "source"), "--years", "2",
                "--policy", str(policy_file(tmp_path))]) == 0
    out = capsys.readouterr().out
    for expected in ("raw archive 2024-05-01 .. 2024-05-01 (1 day)", "size distribution",
                     "current monthly storage cost as is: ", "month 12", "total over 2 years",
                     "lifecycle rule only", "where the money goes, total over 2 years, USD",
                     "requests: delivery (CloudTrail PUTs)", "storage: GLACIER_IR",
                     "policy: raw files stay 30 days, then one bundle per day, account and region in GLACIER_IR",
                     "- 100% of raw objects are under 128 KB"):
        assert expected in out, expected
    assert out.splitlines()[-1].startswith("- prices from ")


def test_retention_plan_json_is_the_library_s_plan(tmp_path: Path, write_log: WriteLog, capsys) -> None:
    for key, records in day_logs().items():
        write_log(key, records)
    policy = policy_file(tmp_path)
    assert run(["retention", "plan", "--source", str(tmp_path / "source"), "--start", DAY, "--end", DAY,
                "--years", "3", "--policy", str(policy), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    plan = cost_plan(tmp_path / "source", load_policy(policy), load_prices(), years=3).as_dict()
    assert shown["inventory"]["objects"] == plan["inventory"]["objects"] == 2
    assert [s["name"] for s in shown["scenarios"]] == ["as is", "lifecycle rule only", "policy"]
    assert [s["total"] for s in shown["scenarios"]] == pytest.approx([s["total"] for s in plan["scenarios"]])
    assert len(shown["scenarios"][0]["monthly"]) == 36


@pytest.mark.parametrize(("extra", "message"), [
    (["--start", DAY], "Error: --start and --end go together\n"),
    (["--prices", "nope.toml"], "Error: no price table at nope.toml; write one with "
                                "`trailsight retention defaults --prices > retention-prices.toml` and edit it\n"),
])
def test_retention_plan_errors_are_one_line(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    assert run(["retention", "plan", "--source", str(tmp_path), *extra]) == 1
    assert capsys.readouterr().err == message
