"""The Insights-style spike detector: thresholds, merging, history handling and AWS's record shape."""

from __future__ import annotations

import gzip
import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_fixtures import ACCOUNT, assumed_role, build_lake, console_login, event, iam_user

from trailsight.lake.ingest import ingest
from trailsight.query.duckdb_engine import DuckDBEngine, run_sql
from trailsight.report.daily import spikes_report
from trailsight.report.insights import (
    CALL_RATE,
    ERROR_RATE,
    SpikeConfig,
    anomalous_runs,
    detect_spikes,
    insight_records,
    series_model,
)

DAY = date(2024, 3, 10)
NEW_ACCOUNT = "222233334444"
YOUNG_ACCOUNT = "333344445555"
FLEET_ACCOUNT = "555566667777"
SIGNIN_ACCOUNT = "666677778888"
DEPLOYER = assumed_role("deployer", "ci")
ATTACKER = assumed_role("ops", "stolen")


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def background(days: list[date], account: str = ACCOUNT) -> list[dict[str, Any]]:
    """RunInstances twice an hour (:07 and :37) by the deployer: a steady write series."""
    return [event(at(d, h, m), "RunInstances", "ec2.amazonaws.com", DEPLOYER, account=account,
                  userAgent="aws-cli/2.15")
            for d in days for h in range(24) for m in (7, 37)]


def burst(start: datetime, per_minute: list[int], name: str = "RunInstances", source: str = "ec2.amazonaws.com",
          identity: dict[str, Any] = ATTACKER, account: str = ACCOUNT, **fields: Any) -> list[dict[str, Any]]:
    events = []
    for minute, count in enumerate(per_minute):
        for i in range(count):
            events.append(event(start + timedelta(minutes=minute, seconds=i % 60), name, source, identity,
                                account=account, userAgent="evil-agent/1.0", **fields))
    return events


def _events() -> list[dict[str, Any]]:
    history = [DAY - timedelta(days=i) for i in range(8, 0, -1)]  # 8 days before DAY
    events = background([*history, DAY])
    # the call-rate spike: 12 minutes at ~30/min with a one-minute dip at 10:05
    events += burst(at(DAY, 10), [30, 30, 30, 30, 30, 2, 30, 30, 30, 30, 30, 30])
    # the error-rate spike: AssumeRole denied 15 times a minute for 5 minutes, against 1 denial a day before
    for d in history:
        events.append(event(at(d, 12), "AssumeRole", "sts.amazonaws.com", DEPLOYER, read_only=True,
                            error="AccessDenied"))
    events += burst(at(DAY, 14), [15] * 5, "AssumeRole", "sts.amazonaws.com", read_only=True, error="AccessDenied")
    # a low-volume burst against a quiet baseline: 24 errors where there were none (no fixed floor hides it)
    events += burst(at(DAY, 16), [8, 8, 8], "GetObject", "s3.amazonaws.com", read_only=True, error="NoSuchKey")
    # near-misses: a rare API called a few times (under the floor), a daily batch, a burst of reads
    events += burst(at(DAY, 17), [3], "CreateUser", "iam.amazonaws.com", identity=iam_user("admin"))
    for d in [*history, DAY]:
        events += burst(at(d, 2), [40], "UpdateFunctionCode20150331v2", "lambda.amazonaws.com", identity=DEPLOYER)
    events += burst(at(DAY, 18), [50, 50, 50], "DescribeInstances", read_only=True)
    # an account new on DAY, and one with three days of history, both with the same spike
    events += burst(at(DAY, 10), [30] * 5, account=NEW_ACCOUNT)
    events += background([*history[-3:], DAY], account=YOUNG_ACCOUNT)
    events += burst(at(DAY, 10), [30] * 5, account=YOUNG_ACCOUNT)
    # an SSM fleet checking in every half hour, all together for ten minutes on some days: that again is routine
    fleet = assumed_role("fleet-role", "i-0fleet")
    for n, d in enumerate([*history, DAY]):
        events += [event(at(d, h, m), "UpdateInstanceInformation", "ssm.amazonaws.com", fleet, account=FLEET_ACCOUNT)
                   for h in range(24) for m in (0, 30)]
        if n % 2 or d == DAY:
            events += burst(at(d, 15 if d == DAY else 8), [2] * 10, "UpdateInstanceInformation",
                            "ssm.amazonaws.com", identity=fleet, account=FLEET_ACCOUNT)
    # password guessing: one failed console sign-in a day, then 60 in ten minutes (no error code to count)
    events += [console_login(at(d, 9), iam_user("alice"), success=False, account=SIGNIN_ACCOUNT) for d in history]
    events += [console_login(at(DAY, 13, minute, second), iam_user("alice"), success=False, account=SIGNIN_ACCOUNT)
               for minute in range(10) for second in range(0, 60, 10)]
    return events


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lake(tmp_path_factory.mktemp("spikes"), _events())


@pytest.fixture(scope="module")
def result(lake: Path):  # type: ignore[no-untyped-def]
    con = DuckDBEngine(lake)
    try:
        return detect_spikes(str(lake), con, DAY)
    finally:
        con.close()


def _insight(result, insight_type: str, account: str = ACCOUNT,  # type: ignore[no-untyped-def]
             name: str | None = None):
    name = name or ("RunInstances" if insight_type == CALL_RATE else "AssumeRole")
    found = [i for i in result.insights if i.insight_type == insight_type and i.account == account
             and i.eventname == name]
    assert len(found) == 1, [i.row() for i in result.insights]
    return found[0]


# --- pure parts ------------------------------------------------------------------------------------------


def test_runs_merge_across_short_gaps_only() -> None:
    counts = np.array([0, 20, 20, 1, 20, 0, 0, 0, 20, 0])
    assert anomalous_runs(counts, 10, merge_gap=1) == [(1, 5), (8, 9)]
    assert anomalous_runs(counts, 10, merge_gap=0) == [(1, 3), (4, 5), (8, 9)]
    assert anomalous_runs(counts, 10, merge_gap=3) == [(1, 9)]
    assert anomalous_runs(np.zeros(5, dtype=int), 0.5, 2) == []


def test_baseline_counts_quiet_minutes_as_zero() -> None:
    days = {DAY - timedelta(days=i): (48, 48, 1) for i in range(1, 8)}
    model = series_model(SpikeConfig(), CALL_RATE, days, DAY, DAY - timedelta(days=7))
    assert model.baseline_minutes == 10_080
    assert model.mean == pytest.approx(48 / 1440)
    assert model.sd == pytest.approx(max(math.sqrt(48 / 1440 - (48 / 1440) ** 2), math.sqrt(48 / 1440)))
    # the tail decides: 5 calls in a minute at 1/30 a minute have a probability under 1e-9, 4 do not
    assert model.threshold == 4.5
    assert series_model(SpikeConfig(p_value=1e-12), CALL_RATE, days, DAY, DAY - timedelta(days=7)).threshold == 6.5


def test_threshold_rises_above_the_typical_daily_peak() -> None:
    days = {DAY - timedelta(days=i): (40, 1600, 40) for i in range(1, 29)}
    model = series_model(SpikeConfig(), CALL_RATE, days, DAY, DAY - timedelta(days=28))
    assert model.typical_peak == 40
    assert model.threshold >= 1.5 * 40 - 0.5  # a burst as large as every day's is the series' normal shape


def test_standard_deviation_is_never_below_poisson_noise() -> None:
    days = {DAY - timedelta(days=i): (1440 * 5, 1440 * 25, 5) for i in range(1, 8)}  # exactly 5 every minute
    model = series_model(SpikeConfig(), CALL_RATE, days, DAY, DAY - timedelta(days=7))
    assert model.sd == pytest.approx(math.sqrt(5))


def test_busy_series_needs_a_ratio_over_its_mean() -> None:
    days = {DAY - timedelta(days=i): (1440 * 100, 1440 * 100 * 100, 100) for i in range(1, 8)}
    model = series_model(SpikeConfig(min_ratio=3.0, peak_factor=1.0), CALL_RATE, days, DAY,
                         DAY - timedelta(days=7))
    assert model.threshold == pytest.approx(300)


# --- detection on a lake ---------------------------------------------------------------------------------


def test_call_rate_spike_is_one_insight_with_start_and_end(result) -> None:  # type: ignore[no-untyped-def]
    spike = _insight(result, CALL_RATE)
    assert (spike.eventsource, spike.eventname, spike.errorcode) == ("ec2.amazonaws.com", "RunInstances", None)
    assert spike.start == at(DAY, 10) and spike.end == at(DAY, 10, 12)
    assert spike.duration_minutes == 12
    assert spike.calls == 11 * 30 + 2 + 1  # the deployer's 10:07 call is in the window too
    assert spike.insight_average == pytest.approx(333 / 12)
    assert spike.first_minute_calls == 30


def test_baseline_statistics_are_the_seven_days_before_the_start(result) -> None:  # type: ignore[no-untyped-def]
    spike = _insight(result, CALL_RATE)
    assert spike.baseline_duration == 10_080
    assert spike.baseline_calls == 7 * 48
    assert spike.baseline_average == pytest.approx(336 / 10_080)


def test_attributions_rank_the_top_values_for_insight_and_baseline(result) -> None:  # type: ignore[no-untyped-def]
    spike = _insight(result, CALL_RATE)
    arns = spike.attributions["insight"]["userIdentityArn"]
    assert arns[0] == {"value": ATTACKER["arn"], "average": pytest.approx(332 / 12)}
    assert arns[1] == {"value": DEPLOYER["arn"], "average": pytest.approx(1 / 12)}
    assert spike.attributions["insight"]["userAgent"][0]["value"] == "evil-agent/1.0"
    assert spike.attributions["insight"]["errorCode"] == [{"value": "null", "average": pytest.approx(333 / 12)}]
    assert spike.attributions["baseline"]["userIdentityArn"] == [
        {"value": DEPLOYER["arn"], "average": pytest.approx(336 / 10_080)}]
    assert all(len(v) <= 5 for kind in spike.attributions.values() for v in kind.values())


def test_error_rate_spike_is_per_error_code(result) -> None:  # type: ignore[no-untyped-def]
    spike = _insight(result, ERROR_RATE)
    assert (spike.eventname, spike.errorcode) == ("AssumeRole", "AccessDenied")
    assert spike.start == at(DAY, 14) and spike.duration_minutes == 5
    assert spike.baseline_calls == 6  # the denials at 12:00 from 03-04 to 03-09; 03-03 12:00 is before the window
    assert spike.baseline_average == pytest.approx(6 / 10_080)


def test_near_misses_do_not_fire(result) -> None:  # type: ignore[no-untyped-def]
    names = {(i.account, i.eventname) for i in result.insights}
    assert (ACCOUNT, "CreateUser") not in names  # a rare API called 3 times in a minute: under the floor
    assert (ACCOUNT, "UpdateFunctionCode20150331v2") not in names  # the same burst every night
    assert (ACCOUNT, "DescribeInstances") not in names  # reads do not count for the call rate
    assert len([i for i in result.insights if i.account == ACCOUNT]) == 3


def test_low_volume_burst_against_a_quiet_baseline_fires(result) -> None:  # type: ignore[no-untyped-def]
    spike = _insight(result, ERROR_RATE, name="GetObject")
    assert spike.errorcode == "NoSuchKey" and spike.calls == 24 and spike.duration_minutes == 3


def test_a_burst_the_series_makes_on_other_days_is_routine(result) -> None:  # type: ignore[no-untyped-def]
    assert not [i.row() for i in result.insights if i.account == FLEET_ACCOUNT]


def test_failed_console_sign_ins_make_an_error_rate_spike(result) -> None:  # type: ignore[no-untyped-def]
    spike = _insight(result, ERROR_RATE, account=SIGNIN_ACCOUNT, name="ConsoleLogin")
    assert (spike.errorcode, spike.calls, spike.duration_minutes) == ("ConsoleLoginFailure", 60, 10)


def test_an_account_without_history_gets_a_note_and_no_insight(result) -> None:  # type: ignore[no-untyped-def]
    assert not [i for i in result.insights if i.account == NEW_ACCOUNT]
    assert any(NEW_ACCOUNT in note and "no data" in note for note in result.notes)
    assert result.history[NEW_ACCOUNT]["history_days"] == 0


def test_short_history_gives_a_shorter_baseline_and_a_note(result) -> None:  # type: ignore[no-untyped-def]
    spike = _insight(result, CALL_RATE, YOUNG_ACCOUNT)
    assert spike.baseline_duration == 3 * 1440 + 600
    assert spike.model.baseline_minutes == 3 * 1440
    assert any(YOUNG_ACCOUNT in note and "only 3 day(s)" in note for note in result.notes)


def test_thresholds_are_configurable(lake: Path) -> None:
    con = DuckDBEngine(lake)
    try:
        strict = detect_spikes(str(lake), con, DAY, SpikeConfig(min_calls=400, min_errors=400))
        loose = detect_spikes(str(lake), con, DAY, SpikeConfig(min_errors=20))
    finally:
        con.close()
    assert strict.insights == []
    assert (ACCOUNT, "GetObject") in {(i.account, i.eventname) for i in loose.insights}


# --- the Insights records ------------------------------------------------------------------------------


def test_records_are_start_and_end_pairs_in_aws_shape(result) -> None:  # type: ignore[no-untyped-def]
    spike = _insight(result, ERROR_RATE)
    start, end = insight_records(spike)
    assert start["sharedEventID"] == end["sharedEventID"] == spike.insight_id
    assert start["eventID"] != end["eventID"]
    assert (start["insightDetails"]["state"], end["insightDetails"]["state"]) == ("Start", "End")
    assert start["eventTime"] == "2024-03-10T14:00:00Z" and end["eventTime"] == "2024-03-10T14:05:00Z"
    assert start["eventType"] == "AwsCloudTrailInsight" and start["eventCategory"] == "Insight"
    assert (start["recipientAccountId"], start["awsRegion"]) == (ACCOUNT, "us-east-1")
    details = end["insightDetails"]
    assert details["insightType"] == ERROR_RATE and details["errorCode"] == "AccessDenied"
    statistics = details["insightContext"]["statistics"]
    assert statistics["insightDuration"] == 5 and statistics["baselineDuration"] == 10_080
    assert statistics["insight"]["average"] == pytest.approx(15)
    assert [a["attribute"] for a in details["insightContext"]["attributions"]] == [
        "userIdentityArn", "userAgent", "errorCode"]
    assert set(details["insightContext"]["attributions"][0]) == {"attribute", "insight", "baseline"}


def test_records_are_read_back_by_the_lake_as_insights(result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    records = result.records()
    key = (f"AWSLogs/{ACCOUNT}/CloudTrail-Insight/us-east-1/2024/03/10/"
           f"{ACCOUNT}_CloudTrail-Insight_us-east-1_20240310T1500Z_abcdefabcdefabcd.json.gz")
    path = tmp_path / "source" / key
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    ingest(tmp_path / "source", tmp_path / "lake", workers=1)
    rows = run_sql(tmp_path / "lake", "SELECT sharedeventid, json_extract_scalar(insightdetails, '$.state') "
                                      "FROM cloudtrail_insights ORDER BY 1, 2").rows
    assert len(rows) == len(records) == 2 * len(result.insights)
    assert {state for _, state in rows} == {"Start", "End"}


def test_spikes_report_is_plain_data_with_records_and_chart(lake: Path) -> None:
    report = spikes_report(lake, DAY)
    assert len(report["records"]) == 2 * len(report["insights"])
    chart = next(i for i in report["insights"] if i["account"] == ACCOUNT and i["insight_type"] == CALL_RATE)["chart"]
    assert chart["insight_offset"] == 60 and chart["insight_minutes"] == 12
    assert len(chart["counts"]) == 12 + 2 * 60
    assert chart["band_low"] <= chart["baseline_mean"] <= chart["band_high"] < chart["threshold"]


def test_tail_probability_follows_poisson_and_widens_for_bursty_series() -> None:
    from trailsight.report.insights import improbable_count, log_tail

    assert math.exp(log_tail(3, 1.0, 1.0)) == pytest.approx(1 - math.exp(-1) * (1 + 1 + 0.5), rel=1e-9)
    assert improbable_count(1.0, 1.0, math.log(1e-9)) < improbable_count(1.0, 20.0, math.log(1e-9))


def _day_stats(minutes: np.ndarray) -> tuple[int, ...]:
    """A day of per-minute counts as spikes_history_days gives it (windows laid twice, the second shifted)."""
    figures = [int(minutes.sum()), int((minutes * minutes).sum()), int(minutes.max())]
    aligned = {width: minutes.reshape(-1, width).sum(axis=1) for width in (10, 60)}
    shifted = {width: np.roll(minutes, -(width // 2)).reshape(-1, width).sum(axis=1) for width in (10, 60)}
    figures += [int(max(aligned[w].max(), shifted[w].max())) for w in (10, 60)]
    return (*figures, *(int((aligned[w] * aligned[w]).sum()) for w in (10, 60)))


def test_a_window_whose_minutes_burst_together_is_judged_by_its_own_variance() -> None:
    # One call every ten minutes, and on two days of the week 60 more in ten minutes: minute counts look tame,
    # ten-minute counts do not, and only the latter say how surprising such a burst is.
    steady = np.zeros(1440, dtype=np.int64)
    steady[::10] = 1
    bursty = steady.copy()
    bursty[600:610] = 6
    days = {DAY - timedelta(days=i): _day_stats(bursty if i <= 2 else steady) for i in range(1, 8)}
    model = series_model(SpikeConfig(), CALL_RATE, days, DAY, DAY - timedelta(days=7))
    as_independent_minutes = series_model(SpikeConfig(), CALL_RATE, {d: s[:3] for d, s in days.items()}, DAY,
                                          DAY - timedelta(days=7))
    assert as_independent_minutes.window_thresholds[10] < 60 < model.window_thresholds[10]
    # the week's own bursts do not hide one well beyond them
    assert model.window_thresholds[10] < 120


def test_sustained_low_rate_burst_fires_through_a_longer_window() -> None:
    from trailsight.report.insights import anomalous_minutes

    days = {DAY - timedelta(days=i): (14, 14, 1) for i in range(1, 8)}  # about one call every 100 minutes
    model = series_model(SpikeConfig(), CALL_RATE, days, DAY, DAY - timedelta(days=7))
    counts = np.zeros(1440, dtype=np.int64)
    counts[600:720] = 2  # two calls a minute for two hours: never above the one-minute threshold
    assert counts.max() <= model.threshold
    hot = anomalous_minutes(counts, model)
    assert hot[600:720].all() and not hot[:600].any()
    assert anomalous_runs(counts, hot, SpikeConfig().merge_gap_minutes) == [(600, 720)]


def test_error_codes_of_one_api_in_one_incident_are_one_insight() -> None:
    from trailsight.report.insights import Insight, SeriesModel, merge_incidents

    model = SeriesModel(7, 10_080, 0.0, 0.0, 0.0, 4.5)

    def insight(code: str, start: int, end: int, calls: int) -> Insight:
        begin = at(DAY, 10) + timedelta(minutes=start)
        return Insight(code, ERROR_RATE, ACCOUNT, "us-east-1", "ec2.amazonaws.com", "RunInstances", code,
                       begin, at(DAY, 10) + timedelta(minutes=end), end - start, calls, 5, 5, 1.0, 4.5, model)

    merged = merge_incidents([insight("VcpuLimitExceeded", 0, 50, 80), insight("InsufficientInstanceCapacity",
                              60, 90, 20), insight("VcpuLimitExceeded", 300, 310, 30)], 30)
    assert [(i.errorcode, i.duration_minutes, i.calls) for i in merged] == [
        ("VcpuLimitExceeded", 90, 100), ("VcpuLimitExceeded", 10, 30)]
    assert merged[0].error_codes == ["InsufficientInstanceCapacity", "VcpuLimitExceeded"]
