"""API spikes found the way CloudTrail Insights reports them, computed from the lake's own history.

What is counted (as AWS documents it): ApiCallRateInsight counts *write* management API calls per minute;
ApiErrorRateInsight counts management API calls that returned an error code, per minute and per error code.
Both are kept per account, region, eventSource and eventName. Quiet minutes count as zero: a baseline
average is calls divided by minutes in the window, not by minutes that had calls.

How a minute of day D is judged (AWS does not publish its model; this is an explainable approximation):

- **baseline**: the per-minute mean and standard deviation of the series over the `baseline_days` (7) days
  before D, zeros included (10,080 minutes when the lake has a full week). The standard deviation is never
  taken below sqrt(mean): per-minute counts are at least as noisy as a Poisson process, and a series that was
  perfectly flat in the baseline week must not turn every small wobble into a spike.
- **history**: up to `history_days` (28) days before D, the same span AWS retrains on. It gives the *typical
  daily peak* of each window width: the median, over those days, of each day's busiest minute, 10 and 60
  minutes. A window must exceed `peak_factor` times it, so a burst that happens every day (a nightly job, a
  morning deploy) is the series' normal shape and not an anomaly, while a one-off incident earlier in the
  history moves the median little.
- **threshold**: how improbable is a count given the series' own baseline? Counts in a window of w minutes
  are taken as Poisson with mean w x mean, or negative binomial when the series is burstier than Poisson. The
  variance of a w-minute window is its own, measured over the baseline, and never below w x the per-minute
  variance: the minutes of a burst are not independent (an SSM fleet checks in together for ten minutes on
  some days), and taking them as independent made such a fleet fire on 2 of 22 ordinary days of independently
  generated traffic. A window is anomalous when its tail probability is below `p_value` (1e-9: an organisation
  tests some 2,000 series x 1,440 minutes x three widths a day, so an exact model would give about one false
  alarm in a hundred days; on those 22 days with five injected incidents, 1e-6, 1e-9 and 1e-12 gave the same
  result, no alarm and every burst found, and 1e-9 keeps a bursty series' threshold within reach of an
  incident). Windows of 1, 10 and 60 minutes (`windows`) catch both a sharp spike and a low but sustained
  burst (two calls a minute for two hours where there is one every hour and a half) that no one-minute
  threshold sees. A series never seen in the baseline is taken as one call in it. Guards remain: a window must
  hold at least `min_calls` (call rate) or `min_errors` (error rate), 5 by default, and exceed `min_ratio` (3)
  x its mean for one minute, `window_min_ratio` (10) x its mean for longer windows (an hour of a busy
  afternoon is 2-4x the daily average; without this guard the 60-minute window fired on the working-hours
  swell of steady traffic on 16 of 22 ordinary days). Inside an anomalous window only the minutes busier than
  usual belong to the insight.
- **failed console sign-ins** carry no error code (`responseElements.ConsoleLogin` says `Failure`): they count
  as errors of `signin:ConsoleLogin` under the code `ConsoleLoginFailure`, never as calls, so password guessing
  is an error-rate insight.
- **merging**: anomalous minutes separated by at most `merge_gap_minutes` (30) quiet minutes form one insight,
  and the error-rate insights of one API with different error codes within that gap are merged into one (named
  after the code with the most calls, the others in `error_codes`): one insight per account, region, API and
  type per incident, as a reader counts incidents.

Less history than asked: the baseline uses the days that exist (at least `min_history_days`), its minutes
are reported as `baselineDuration`, and the report carries a note per account. With no earlier day in the
lake for an account, nothing can be judged and no spike is reported for it (the note says so).

The statistics of each insight follow AWS: `baseline.average` is the per-minute average over the 7 days
before the insight starts (clipped to the history that exists), `insight.average` the per-minute average
over the insight (the first minute for the Start record), `insightDuration` and `baselineDuration` in
minutes, and up to five attributions per attribute (userIdentityArn, userAgent, errorCode), each with its
per-minute average, for the insight and for the baseline.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from trailsight.lake.layout import lake_partitions
from trailsight.query.engine import Engine
from trailsight.report.queries import run_report_sql
from trailsight.storage.store import Storage, as_storage

CALL_RATE = "ApiCallRateInsight"
ERROR_RATE = "ApiErrorRateInsight"
INSIGHT_TYPES = (CALL_RATE, ERROR_RATE)
MINUTES_PER_DAY = 1440
ATTRIBUTES = ("userIdentityArn", "userAgent", "errorCode")
ATTRIBUTION_LIMIT = 5
INSIGHT_EVENT_VERSION = "1.08"
_NAMESPACE = uuid.UUID("6f6d1c1e-3d5e-4c53-9f4e-1e8a7d2b7c11")

SeriesKey = tuple[str, str, str, str, str, str]
"""(insight type, account, region, eventSource, eventName, error code or '' for the call rate)"""


@dataclass(frozen=True)
class SpikeConfig:
    """Thresholds and noise guards of the detector; see the module docstring for the reasoning."""

    baseline_days: int = 7
    history_days: int = 28
    min_history_days: int = 1
    p_value: float = 1e-9
    windows: tuple[int, ...] = (1, 10, 60)
    min_calls: int = 5
    min_errors: int = 5
    min_ratio: float = 3.0
    window_min_ratio: float = 10.0  # windows longer than a minute: over the hours of a day rates vary 2-4x
    peak_factor: float = 1.5
    merge_gap_minutes: int = 30
    chart_margin_minutes: int = 60

    def floor(self, insight_type: str) -> int:
        return self.min_calls if insight_type == CALL_RATE else self.min_errors


@dataclass
class SeriesModel:
    """What a series' history says is normal, and the count a minute must exceed to be anomalous."""

    history_days: int
    baseline_minutes: int
    mean: float
    sd: float
    typical_peak: float
    threshold: float  # per minute
    window_thresholds: dict[int, float] = field(default_factory=dict)  # calls in w minutes, for w > 1


@dataclass
class Insight:
    """One merged run of anomalous minutes of one series."""

    insight_id: str
    insight_type: str
    account: str
    region: str
    eventsource: str
    eventname: str
    errorcode: str | None
    start: datetime
    end: datetime
    duration_minutes: int
    calls: int
    peak_minute_calls: int
    first_minute_calls: int
    insight_average: float
    threshold: float
    model: SeriesModel
    baseline_average: float = 0.0
    baseline_duration: int = 0
    baseline_calls: int = 0
    attributions: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    chart: dict[str, Any] = field(default_factory=dict)
    error_codes: list[str] = field(default_factory=list)  # when codes of one API were merged into one insight

    @property
    def key(self) -> SeriesKey:
        return (self.insight_type, self.account, self.region, self.eventsource, self.eventname, self.errorcode or "")

    def row(self) -> dict[str, Any]:
        """The insight as one flat table row."""
        top = self.attributions.get("insight", {})

        def first(attribute: str) -> str | None:
            """The top value; "null" (AWS's attribution value for calls without one) is no value in a table."""
            values = top.get(attribute) or []
            value = values[0]["value"] if values else None
            return None if value == "null" else value

        return {
            "insight_id": self.insight_id,
            "insight_type": self.insight_type,
            "account": self.account,
            "region": self.region,
            "eventsource": self.eventsource,
            "eventname": self.eventname,
            "errorcode": self.errorcode,
            "start": self.start,
            "end": self.end,
            "duration_minutes": self.duration_minutes,
            "calls": self.calls,
            "insight_average": round(self.insight_average, 4),
            "peak_minute_calls": self.peak_minute_calls,
            "baseline_average": round(self.baseline_average, 6),
            "baseline_duration": self.baseline_duration,
            "threshold": round(self.threshold, 3),
            "top_principal": first("userIdentityArn"),
            "top_user_agent": first("userAgent"),
            "top_error_code": first("errorCode"),
            "error_codes": self.error_codes or ([self.errorcode] if self.errorcode else []),
        }


@dataclass
class SpikeResult:
    """The spike report for one day: insights, what history was available, and notes for the reader."""

    day: date
    config: SpikeConfig
    insights: list[Insight]
    history: dict[str, dict[str, Any]]
    notes: list[str]
    series_tested: int
    candidates: int

    def records(self) -> list[dict[str, Any]]:
        """CloudTrail Insights records (a Start and an End per insight), as AWS writes them."""
        return [record for insight in self.insights for record in insight_records(insight)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "config": asdict(self.config),
            "history": self.history,
            "notes": self.notes,
            "series_tested": self.series_tested,
            "candidates": self.candidates,
            "insights": [{**insight.row(), "model": asdict(insight.model), "attributions": insight.attributions,
                          "chart": insight.chart} for insight in self.insights],
        }


# --- the pure parts: models, thresholds, runs ----------------------------------------------------------


def series_model(config: SpikeConfig, insight_type: str, days: dict[date, DayStats], day: date,
                 history_start: date) -> SeriesModel:
    """Normal behaviour of one series from per-day (calls, sum of squared minute counts, busiest minute).

    `history_start` is the first day the account has data (clipped to `history_days`); days without a row
    in between were quiet (zero calls).
    """
    history = [history_start + timedelta(days=i) for i in range((day - history_start).days)]
    baseline = [d for d in history if d >= day - timedelta(days=config.baseline_days)]
    minutes = len(baseline) * MINUTES_PER_DAY
    total = sum(days.get(d, (0, 0, 0))[0] for d in baseline)
    squares = sum(days.get(d, (0, 0, 0))[1] for d in baseline)
    mean = total / minutes if minutes else 0.0
    variance = max(squares / minutes - mean * mean, 0.0) if minutes else 0.0
    sd = max(math.sqrt(variance), math.sqrt(mean))
    typical_peak = _typical_peak(days, history, 1) or 0.0
    # A series never seen in the baseline is taken as one call in it: zero would make any call infinitely rare.
    rate = max(mean, 1.0 / minutes) if minutes else 1.0
    spread = max(sd * sd, rate)
    floor = config.floor(insight_type)
    thresholds = {}
    for width in sorted(set(config.windows) | {1}):
        # Minutes of a burst are not independent (a fleet checks in together): a window's variance is its own,
        # measured, when the history gives it, and never below that of independent minutes.
        window_spread = max(width * spread, _window_variance(days, baseline, width, mean) or 0.0)
        tail = improbable_count(width * rate, window_spread, math.log(config.p_value))
        ratio = config.min_ratio if width == 1 else config.window_min_ratio
        window_peak = _typical_peak(days, history, width)
        if window_peak is None:
            window_peak = typical_peak * math.sqrt(width)
        thresholds[width] = max(tail - 0.5, ratio * mean * width, floor - 0.5, config.peak_factor * window_peak)
    return SeriesModel(len(history), minutes, mean, sd, typical_peak, thresholds.pop(1), thresholds)


HISTORY_WINDOW_WIDTHS = (10, 60)
"""The windows whose busiest count per day `spikes_history_days` gives, after the busiest minute."""
DayStats = tuple[int, ...]
"""One day of a series: (calls, sum of squared minute counts, busiest minute, then for each of
HISTORY_WINDOW_WIDTHS its busiest window, then for each the sum of squared counts of consecutive windows); the
window figures may be missing."""


def _window_figure(days: dict[date, DayStats], history: list[date], position: int) -> list[int] | None:
    """One figure of each day (0 for a quiet day), or None when the days do not give it."""
    figures = []
    for day in history:
        if day not in days:
            figures.append(0)
        elif len(days[day]) > position:
            figures.append(days[day][position])
        else:
            return None
    return figures


def _typical_peak(days: dict[date, DayStats], history: list[date], width: int) -> float | None:
    """The median over the history of each day's busiest `width` minutes, or None when the days do not say."""
    if not history or (width != 1 and width not in HISTORY_WINDOW_WIDTHS):
        return None
    peaks = _window_figure(days, history, 2 if width == 1 else 3 + HISTORY_WINDOW_WIDTHS.index(width))
    return None if peaks is None else float(statistics.median(peaks))


def _window_variance(days: dict[date, DayStats], baseline: list[date], width: int, mean: float) -> float | None:
    """The variance of consecutive `width`-minute counts over the baseline, or None when the days do not say."""
    if not baseline or width not in HISTORY_WINDOW_WIDTHS:
        return None
    squares = _window_figure(days, baseline, 3 + len(HISTORY_WINDOW_WIDTHS) + HISTORY_WINDOW_WIDTHS.index(width))
    if squares is None:
        return None
    windows = len(baseline) * (MINUTES_PER_DAY // width)
    return max(sum(squares) / windows - (mean * width) ** 2, 0.0)


def log_tail(count: int, mean: float, variance: float) -> float:
    """log P(X >= count) for counts with this mean and variance: Poisson, or negative binomial when the
    variance exceeds the mean (bursty series). Summed term by term from `count` up; `count` above the mean."""
    if count <= 0:
        return 0.0
    if variance <= mean * 1.000001:
        log_pmf = count * math.log(mean) - mean - math.lgamma(count + 1)

        def ratio(k: int) -> float:
            return mean / (k + 1)
    else:
        size = mean * mean / (variance - mean)
        success = size / (size + mean)
        log_pmf = (math.lgamma(count + size) - math.lgamma(size) - math.lgamma(count + 1)
                   + size * math.log(success) + count * math.log1p(-success))

        def ratio(k: int) -> float:
            return (k + size) / (k + 1) * (1 - success)
    total, term, k = 1.0, 1.0, count
    for _ in range(10_000):  # terms relative to pmf(count); they shrink geometrically above the mean
        term *= ratio(k)
        k += 1
        total += term
        if term < 1e-12 * total:
            break
    return log_pmf + math.log(total)


def improbable_count(mean: float, variance: float, log_p: float) -> int:
    """The smallest count whose tail probability is below exp(log_p)."""
    low = max(1, math.ceil(mean))
    if log_tail(low, mean, variance) < log_p:
        return low
    high = low * 2 + 1
    while log_tail(high, mean, variance) >= log_p:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if log_tail(middle, mean, variance) < log_p:
            high = middle
        else:
            low = middle
    return high


def anomalous_minutes(counts: np.ndarray, model: SeriesModel) -> np.ndarray:
    """Per minute: does it exceed the one-minute threshold, or belong to a window of w minutes whose calls
    exceed that window's threshold (a low but sustained burst)? Only minutes with calls are marked."""
    hot = counts > model.threshold
    # Inside a hot window, only minutes busier than usual belong to the burst (not a routine call beside it).
    busy = counts > (max(1.0, model.mean * 3.0) if model.mean > 0 else 0)
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    for width, threshold in model.window_thresholds.items():
        if width > len(counts):
            continue
        sums = cumulative[width:] - cumulative[:-width]  # sums[i] = calls in minutes [i, i + width)
        starts = np.flatnonzero(sums > threshold)
        if starts.size:
            covered = np.zeros(len(counts) + 1, dtype=np.int64)
            np.add.at(covered, starts, 1)
            np.add.at(covered, starts + width, -1)
            hot |= (np.cumsum(covered)[:-1] > 0) & busy
    return hot


def anomalous_runs(counts: np.ndarray, threshold: float | np.ndarray, merge_gap: int) -> list[tuple[int, int]]:
    """[start, end) minute ranges where counts exceed `threshold` (or where `threshold` is a boolean mask of
    anomalous minutes), runs closer than `merge_gap` merged.

    >>> anomalous_runs(np.array([0, 9, 9, 0, 0, 9, 0, 0, 0, 9]), 5, 2)
    [(1, 6), (9, 10)]
    """
    hot = np.flatnonzero(threshold if isinstance(threshold, np.ndarray) else counts > threshold)
    runs: list[tuple[int, int]] = []
    for minute in hot.tolist():
        if runs and minute - runs[-1][1] <= merge_gap:
            runs[-1] = (runs[-1][0], minute + 1)
        else:
            runs.append((minute, minute + 1))
    return runs


def insight_id(key: SeriesKey, start: datetime) -> str:
    """A stable sharedEventID: the same lake and day give the same ids on every run."""
    return str(uuid.uuid5(_NAMESPACE, "|".join([*key, start.isoformat()])))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def insight_records(insight: Insight) -> list[dict[str, Any]]:
    """The Start and End records of an insight in the shape CloudTrail writes to CloudTrail-Insight files."""
    records = []
    for state in ("Start", "End"):
        averages = insight.first_minute_calls if state == "Start" else insight.insight_average
        details: dict[str, Any] = {
            "state": state,
            "eventSource": insight.eventsource,
            "eventName": insight.eventname,
            "insightType": insight.insight_type,
        }
        if insight.insight_type == ERROR_RATE:
            details["errorCode"] = insight.errorcode
        details["insightContext"] = {
            "statistics": {
                "baseline": {"average": round(insight.baseline_average, 10)},
                "insight": {"average": round(float(averages), 10)},
                "insightDuration": insight.duration_minutes,
                "baselineDuration": insight.baseline_duration,
            },
            "attributions": [
                {
                    "attribute": attribute,
                    "insight": insight.attributions.get("insight", {}).get(attribute, []),
                    "baseline": insight.attributions.get("baseline", {}).get(attribute, []),
                }
                for attribute in ATTRIBUTES
            ],
        }
        moment = insight.start if state == "Start" else insight.end
        records.append({
            "eventVersion": INSIGHT_EVENT_VERSION,
            "eventTime": _iso(moment),
            "awsRegion": insight.region,
            "eventID": str(uuid.uuid5(_NAMESPACE, f"{insight.insight_id}|{state}")),
            "eventType": "AwsCloudTrailInsight",
            "recipientAccountId": insight.account,
            "sharedEventID": insight.insight_id,
            "insightDetails": details,
            "eventCategory": "Insight",
        })
    return records


# --- reading the lake ----------------------------------------------------------------------------------


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def account_history(lake: Storage, day: date, history_days: int) -> dict[str, date]:
    """First day with data per account within the `history_days` before `day`, from the lake's folders."""
    first: dict[str, date] = {}
    for _, folder_day, account in lake_partitions(lake, start=day - timedelta(days=history_days),
                                                     end=day - timedelta(days=1)):
        first.setdefault(account, folder_day)
    return first


def _fetch(con: Engine, name: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in run_report_sql(con, name, **parameters)]


_SERIES_SCHEMA = pa.schema([("insight_type", pa.string()), ("account", pa.string()), ("region", pa.string()),
                            ("eventsource", pa.string()), ("eventname", pa.string()), ("errorcode", pa.string())])
_WINDOW_SCHEMA = pa.schema([("insight_id", pa.string()), ("window_kind", pa.string()), *_SERIES_SCHEMA,
                            ("window_start", pa.timestamp("us", tz="UTC")),
                            ("window_end", pa.timestamp("us", tz="UTC"))])


def _table(schema: pa.Schema, rows: Iterable[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) or [[] for _ in schema]
    return pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, schema, strict=True)],
                                schema=schema)


def _history_note(day: date, days: int, accounts: list[str], config: SpikeConfig) -> str:
    """One line for every account with the same short history (a new lake has it for all of them)."""
    which = f"account {accounts[0]}" if len(accounts) == 1 else f"{len(accounts)} accounts ({', '.join(accounts)})"
    if days < config.min_history_days:
        return (f"{which}: no data in the lake before {day}; spikes need at least {config.min_history_days} earlier "
                "day(s), so none are reported")
    return (f"{which}: only {days} day(s) of history before {day} (a full baseline is {config.baseline_days}); "
            f"baselines average over {days * MINUTES_PER_DAY} minutes")


def detect_spikes(lake: str | Storage, con: Engine, day: date,
                  config: SpikeConfig | None = None) -> SpikeResult:
    """Find the day's Insights-style spikes; `con` is an engine over `lake` (`query.engine.open_engine`)."""
    config = config or SpikeConfig()
    lake = as_storage(lake)
    midnight = _midnight(day)

    history_start = day - timedelta(days=config.history_days)
    con.use_derived("insight_minutes", day, day)  # the history only when a series is a candidate
    counts: dict[SeriesKey, np.ndarray] = {}
    for insight_type, account, region, source, name, code, minute, calls in _fetch(
            con, "spikes_day_minutes", {"day": day}):
        key = (insight_type, account, region, source, name, code or "")
        series = counts.get(key)
        if series is None:
            series = counts[key] = np.zeros(MINUTES_PER_DAY, dtype=np.int64)
        series[int((minute - midnight).total_seconds()) // 60] += calls

    first_days = account_history(lake, day, config.history_days)
    history: dict[str, dict[str, Any]] = {}
    short: dict[int, list[str]] = {}
    for account in sorted({key[1] for key in counts}):
        first_day = first_days.get(account)
        days = (day - first_day).days if first_day else 0
        history[account] = {"first_day": first_day, "history_days": days,
                            "baseline_days": min(days, config.baseline_days)}
        if days < config.baseline_days:
            short.setdefault(days, []).append(account)
    notes = [_history_note(day, days, accounts, config) for days, accounts in sorted(short.items())]

    candidates = [key for key, series in counts.items()
                  if series.sum() >= config.floor(key[0])
                  and (day - first_days.get(key[1], day)).days >= config.min_history_days]
    per_day: dict[SeriesKey, dict[date, DayStats]] = {key: {} for key in candidates}
    if candidates:
        con.use_derived("insight_minutes", history_start, day)
        con.register("spike_series", _table(_SERIES_SCHEMA, candidates))
        try:
            for account, region in sorted({(key[1], key[2]) for key in candidates}):
                for row in _fetch(con, "spikes_history_days", {"history_start": history_start, "day": day,
                                                               "account": account, "region": region}):
                    series_key: SeriesKey = (row[0], row[1], row[2], row[3], row[4], row[5] or "")
                    per_day[series_key][row[6]] = tuple(int(value or 0) for value in row[7:])
        finally:
            con.unregister("spike_series")

    insights: list[Insight] = []
    for key in sorted(candidates):
        first_day = max(first_days[key[1]], day - timedelta(days=config.history_days))
        model = series_model(config, key[0], per_day[key], day, first_day)
        series = counts[key]
        for start, end in anomalous_runs(series, anomalous_minutes(series, model), config.merge_gap_minutes):
            window = series[start:end]
            begin = midnight + timedelta(minutes=start)
            insights.append(Insight(
                insight_id=insight_id(key, begin),
                insight_type=key[0], account=key[1], region=key[2], eventsource=key[3], eventname=key[4],
                errorcode=key[5] or None,
                start=begin, end=midnight + timedelta(minutes=end), duration_minutes=end - start,
                calls=int(window.sum()), peak_minute_calls=int(window.max()), first_minute_calls=int(window[0]),
                insight_average=float(window.mean()), threshold=model.threshold, model=model,
                chart=_chart(series, start, end, model, midnight, config.chart_margin_minutes),
            ))
    insights = merge_incidents(insights, config.merge_gap_minutes)
    _attribute(con, insights, first_days, config)
    return SpikeResult(day, config, insights, history, notes, len(counts), len(candidates))


def merge_incidents(insights: list[Insight], gap_minutes: int) -> list[Insight]:
    """One insight per account, region, API and type per incident: error-rate insights of one API with
    different error codes, within `gap_minutes` of each other, become one, named after the code with the most
    calls (the others are listed in `error_codes`)."""
    groups: dict[tuple[str, str, str, str, str], list[Insight]] = {}
    for insight in insights:
        groups.setdefault(insight.key[:5], []).append(insight)
    merged: list[Insight] = []
    for members in groups.values():
        members.sort(key=lambda i: i.start)
        runs: list[list[Insight]] = []
        for insight in members:
            if runs and insight.start <= max(i.end for i in runs[-1]) + timedelta(minutes=gap_minutes):
                runs[-1].append(insight)
            else:
                runs.append([insight])
        for run in runs:
            main = max(run, key=lambda i: (i.calls, i.start))
            if len(run) > 1:
                main.error_codes = sorted({i.errorcode for i in run if i.errorcode})
                main.start, main.end = min(i.start for i in run), max(i.end for i in run)
                main.duration_minutes = int((main.end - main.start).total_seconds() // 60)
                main.calls = sum(i.calls for i in run)
                main.peak_minute_calls = max(i.peak_minute_calls for i in run)
                main.first_minute_calls = min(run, key=lambda i: i.start).first_minute_calls
                main.insight_average = main.calls / main.duration_minutes
                main.insight_id = insight_id(main.key, main.start)
            merged.append(main)
    return sorted(merged, key=lambda i: (i.key, i.start))


def _chart(series: np.ndarray, start: int, end: int, model: SeriesModel, midnight: datetime,
           margin: int) -> dict[str, Any]:
    """Per-minute counts around the insight with the baseline band, for drawing."""
    first = max(0, start - margin)
    last = min(MINUTES_PER_DAY, end + margin)
    return {
        "first_minute": midnight + timedelta(minutes=first),
        "counts": series[first:last].astype(int).tolist(),
        "insight_offset": start - first,
        "insight_minutes": end - start,
        "baseline_mean": round(model.mean, 6),
        "band_low": round(max(0.0, model.mean - model.sd), 6),
        "band_high": round(model.mean + model.sd, 6),
        "threshold": round(model.threshold, 6),
    }


def _attribute(con: Engine, insights: list[Insight], first_days: dict[str, date],
               config: SpikeConfig) -> None:
    """Fill baseline statistics and the top-5 attributions of each insight, in one query for all of them."""
    if not insights:
        return
    windows = []
    earliest = min(insight.start for insight in insights).date()
    for insight in insights:
        history_floor = _midnight(max(first_days[insight.account], insight.start.date() - timedelta(
            days=config.history_days)))
        baseline_start = max(insight.start - timedelta(days=config.baseline_days), history_floor)
        insight.baseline_duration = int((insight.start - baseline_start).total_seconds() // 60)
        earliest = min(earliest, baseline_start.date())
        for kind, begin, end in (("insight", insight.start, insight.end), ("baseline", baseline_start, insight.start)):
            windows.append((insight.insight_id, kind, *insight.key, begin, end))
    last_day = max(insight.end - timedelta(microseconds=1) for insight in insights).date()
    con.register("spike_windows", _table(_WINDOW_SCHEMA, windows))
    rows: list[tuple[Any, ...]] = []
    try:
        for account, region in sorted({(insight.account, insight.region) for insight in insights}):
            rows += _fetch(con, "spikes_attributions",
                           {"first_day": earliest, "last_day": last_day, "account": account, "region": region})
    finally:
        con.unregister("spike_windows")
    by_id = {insight.insight_id: insight for insight in insights}
    totals: dict[tuple[str, str], int] = {}
    for insight_key, kind, attribute, value, calls, _position, window_calls in rows:
        insight = by_id[insight_key]
        minutes = insight.duration_minutes if kind == "insight" else insight.baseline_duration
        entries = insight.attributions.setdefault(kind, {}).setdefault(attribute, [])
        entries.append({"value": value, "average": round(calls / minutes, 10) if minutes else 0.0})
        totals[(insight_key, kind)] = int(window_calls)
    for insight in insights:
        insight.baseline_calls = totals.get((insight.insight_id, "baseline"), 0)
        insight.baseline_average = insight.baseline_calls / insight.baseline_duration if insight.baseline_duration \
            else 0.0
        for kind in ("insight", "baseline"):
            for attribute in ATTRIBUTES:
                insight.attributions.setdefault(kind, {}).setdefault(attribute, [])
