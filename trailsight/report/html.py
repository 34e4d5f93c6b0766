"""The daily report as one self-contained HTML page (inline CSS and SVG, no script, no network) and as Markdown.

The page is meant to be looked at: headline numbers first, then the day's rhythm (calls per hour), who
called, what failed, each spike drawn against its baseline band, and findings by severity. Everything
needed to draw it is in the file, so it opens the same from a mail attachment, an S3 bucket or offline.
"""

from __future__ import annotations

import html
import math
from datetime import date, datetime, timedelta
from typing import Any

from trailsight.report.severity import SEVERITIES

SEVERITY_COLORS = {"critical": "#7f1d1d", "high": "#c2410c", "medium": "#b45309", "low": "#4b5563"}
READ_COLOR, WRITE_COLOR, FAIL_COLOR, LINE_COLOR = "#93c5fd", "#2563eb", "#dc2626", "#111827"
BAND_COLOR, BAND_TEXT, BAND_MIN_PX = "#3b82f6", "#1d4ed8", 8
FINDING_COLOR = "#c2410c"
QUERY_COLUMNS = "eventtime, eventname, principal, sourceipaddress, error_code, requestparameters"
FAMILY_COLORS = {"access_denied": "#dc2626", "authentication": "#9f1239", "throttling": "#d97706",
                 "not_found": "#6b7280", "conflict": "#9ca3af", "limits": "#a16207", "invalid_request": "#0891b2",
                 "service_error": "#7c3aed", "dry_run": "#d1d5db", "other": "#4b5563"}

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827; margin: 0;
       background: #f3f4f6; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
header h1 { font-size: 24px; margin: 0 0 4px; }
header p { margin: 0; color: #4b5563; }
section { background: #fff; border-radius: 10px; padding: 18px 20px; margin: 18px 0;
          box-shadow: 0 1px 2px rgba(0,0,0,.06); }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(118px, 1fr)); gap: 12px; }
.card { background: #fff; border-radius: 10px; padding: 14px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
.card .value { font-size: 26px; font-weight: 650; white-space: nowrap; }
.card .label { color: #4b5563; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card.alert .value { color: #b91c1c; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e5e7eb; vertical-align: top;
         overflow-wrap: anywhere; }
th { color: #374151; font-weight: 600; background: #f9fafb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nowrap { white-space: nowrap; overflow-wrap: normal; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; word-break: break-all; }
.muted { color: #6b7280; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; color: #fff; font-size: 12px;
         font-weight: 600; }
.bar { display: inline-block; height: 10px; border-radius: 2px; vertical-align: middle; }
.legend span { margin-right: 14px; font-size: 12px; color: #374151; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.grid2 > div { min-width: 0; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
.card small { font-size: 15px; }
.spike { border-top: 1px solid #e5e7eb; padding-top: 12px; margin-top: 12px; }
.spike:first-of-type { border-top: 0; margin-top: 0; }
details { border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 12px; margin: 8px 0; }
summary { cursor: pointer; }
p, summary, li, h3 { overflow-wrap: anywhere; }
.notes li { color: #92400e; }
svg.chart { display: block; width: 100%; height: auto; }
.scroll { overflow-x: auto; }
.scroll td:first-child { min-width: 9em; }
.scroll > svg.chart { min-width: 620px; }
.trend { display: grid; grid-template-columns: repeat(3, 1fr); gap: 18px; }
.trend svg.chart { min-width: 0; }
.nowrap, .account { white-space: nowrap; overflow-wrap: normal; }
pre.query { background: #f9fafb; border: 1px solid #e5e7eb; border-radius: 6px; padding: 8px 10px; margin: 6px 0;
            white-space: pre-wrap; overflow-wrap: anywhere; font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
@media (max-width: 700px) { main { padding: 12px; } section { padding: 14px 12px; }
  .trend { grid-template-columns: 1fr; } .card .value { font-size: 22px; }
  .scroll th, .scroll td { overflow-wrap: break-word; } .scroll .mono { word-break: normal; }
  .scroll td:first-child { min-width: 12em; } .scroll td:first-child .mono { word-break: break-all; } }
svg text { font: 11px system-ui, sans-serif; fill: #374151; }
footer { color: #6b7280; font-size: 12px; text-align: center; padding: 12px; }
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return esc(value)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%H:%M:%S")
    return esc(value)


def _axis(value: float) -> tuple[float, float]:
    """(top, step) of a round axis at or above `value` with at most five steps of 1, 2 or 5 x 10^k.

    >>> _axis(23)
    (25.0, 5.0)
    """
    if value <= 0:
        return 1.0, 0.25
    step = 10 ** math.floor(math.log10(value / 5))
    for factor in (1, 2, 5, 10):
        if value / (step * factor) <= 5:
            step *= factor
            break
    return float(math.ceil(value / step) * step), float(step)


def _ticks(top: float, step: float) -> list[float]:
    return [step * i for i in range(round(top / step) + 1)]


# --- charts ----------------------------------------------------------------------------------------------


def calls_per_hour_svg(hours: list[dict[str, Any]]) -> str:
    """Stacked bars of reads and writes per UTC hour with failed calls as a line."""
    width, height, left, bottom, top = 880, 240, 52, 28, 12
    plot_w, plot_h = width - left - 10, height - bottom - top
    top_value, step = _axis(max((h["calls"] for h in hours), default=0))
    slot = plot_w / 24
    parts = [f'<svg class="chart" data-chart="calls-per-hour" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Calls per hour, reads and writes stacked, failed calls as a line">'
             "<title>Calls per hour (UTC)</title>"]
    for value in _ticks(top_value, step):
        y = top + plot_h - plot_h * value / top_value
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:,.0f}</text>')
    points = []
    for hour in hours:
        x = left + hour["hour"] * slot + slot * 0.12
        bar_w = slot * 0.76
        reads_h = plot_h * hour["reads"] / top_value
        writes_h = plot_h * hour["writes"] / top_value
        base = top + plot_h
        parts.append(f'<rect class="bar-reads" x="{x:.1f}" y="{base - reads_h:.1f}" width="{bar_w:.1f}" '
                     f'height="{reads_h:.1f}" fill="{READ_COLOR}"><title>{hour["hour"]:02d}:00 reads '
                     f'{hour["reads"]:,}</title></rect>')
        parts.append(f'<rect class="bar-writes" x="{x:.1f}" y="{base - reads_h - writes_h:.1f}" '
                     f'width="{bar_w:.1f}" height="{writes_h:.1f}" fill="{WRITE_COLOR}"><title>{hour["hour"]:02d}:00 '
                     f'writes {hour["writes"]:,}</title></rect>')
        points.append((x + bar_w / 2, base - plot_h * hour["failed"] / top_value, hour))
        if hour["hour"] % 2 == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - 10}" text-anchor="middle">'
                         f'{hour["hour"]:02d}</text>')
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
    parts.append(f'<polyline class="line-failed" points="{path}" fill="none" stroke="{FAIL_COLOR}" '
                 'stroke-width="2"/>')
    for x, y, hour in points:
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{FAIL_COLOR}"><title>{hour["hour"]:02d}:00 '
                     f'failed {hour["failed"]:,}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def hbar_svg(name: str, label: str, items: list[tuple[str, float, str]], value_format: str = "{:,.0f}") -> str:
    """Horizontal bars: (label, value, color) per row."""
    row_h, left, width = 22, 220, 880
    height = row_h * len(items) + 8
    top_value = max((v for _, v, _ in items), default=0) or 1
    parts = [f'<svg class="chart" data-chart="{esc(name)}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{esc(label)}"><title>{esc(label)}</title>']
    for i, (text, value, color) in enumerate(items):
        y = 4 + i * row_h
        bar_w = (width - left - 90) * value / top_value
        short = text if len(text) <= 34 else "…" + text[-33:]
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{esc(short)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{max(bar_w, 1):.1f}" height="{row_h - 8}" rx="2" '
                     f'fill="{color}"><title>{esc(text)}: {value_format.format(value)}</title></rect>')
        parts.append(f'<text x="{left + bar_w + 6:.1f}" y="{y + 14}">{value_format.format(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def spike_svg(insight: dict[str, Any]) -> str:
    """Per-minute counts around a spike over the baseline band (mean ± sd), threshold dashed, spike shaded."""
    chart = insight["chart"]
    counts = chart["counts"]
    width, height, left, bottom, top = 880, 200, 52, 26, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    top_value, step = _axis(max([*counts, chart["threshold"], chart["band_high"], 1]))
    n = max(len(counts), 2)

    def x_of(i: float) -> float:
        return left + plot_w * i / (n - 1)

    def y_of(v: float) -> float:
        return top + plot_h - plot_h * v / top_value

    first: datetime = chart["first_minute"]
    parts = [f'<svg class="chart" data-chart="spike" data-insight="{esc(insight["insight_id"])}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="Calls per minute against the baseline band">'
             f"<title>{esc(insight['eventname'])} per minute against its baseline</title>"]
    for value in _ticks(top_value, step):
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y_of(value):.1f}" y2="{y_of(value):.1f}" '
                     'stroke="#f3f4f6"/>')
        parts.append(f'<text x="{left - 6}" y="{y_of(value) + 4:.1f}" text-anchor="end">{value:,.0f}</text>')
    start = chart["insight_offset"]
    end = start + chart["insight_minutes"] - 1
    parts.append(f'<rect class="insight-window" x="{x_of(start):.1f}" y="{top}" '
                 f'width="{max(x_of(end) - x_of(start), 2):.1f}" height="{plot_h}" fill="#fee2e2"/>')
    # A quiet baseline (a few calls a day) is a sliver at this scale: drawn at least BAND_MIN_PX tall, labelled.
    band_top, band_bottom = y_of(chart["band_high"]), y_of(chart["band_low"])
    band_top = min(band_top, band_bottom - BAND_MIN_PX)
    parts.append(f'<rect class="baseline-band" x="{left}" y="{band_top:.1f}" width="{plot_w}" '
                 f'height="{band_bottom - band_top:.1f}" fill="{BAND_COLOR}" opacity="0.55">'
                 f'<title>baseline band {chart["band_low"]:.3f} to {chart["band_high"]:.3f} per minute</title></rect>')
    parts.append(f'<text class="baseline-label" x="{width - 12}" y="{band_top - 4:.1f}" text-anchor="end" '
                 f'fill="{BAND_TEXT}">baseline {chart["baseline_mean"]:.3g}/min</text>')
    parts.append(f'<line class="baseline-mean" x1="{left}" x2="{width - 10}" y1="{y_of(chart["baseline_mean"]):.1f}" '
                 f'y2="{y_of(chart["baseline_mean"]):.1f}" stroke="#2563eb" stroke-width="1"/>')
    parts.append(f'<line class="threshold" x1="{left}" x2="{width - 10}" y1="{y_of(chart["threshold"]):.1f}" '
                 f'y2="{y_of(chart["threshold"]):.1f}" stroke="#9ca3af" stroke-dasharray="5 4">'
                 f'<title>threshold {chart["threshold"]:.1f}</title></line>')
    path = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(counts))
    parts.append(f'<polyline class="counts" points="{path}" fill="none" stroke="{LINE_COLOR}" stroke-width="1.5"/>')
    step = max(1, n // 8)
    for i in range(0, n, step):
        label = (first + timedelta(minutes=i)).strftime("%H:%M")
        parts.append(f'<text x="{x_of(i):.1f}" y="{height - 8}" text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- sections --------------------------------------------------------------------------------------------


def _card(label: str, value: str, alert: bool = False) -> str:
    return (f'<div class="card{" alert" if alert else ""}"><div class="value">{value}</div>'
            f'<div class="label">{esc(label)}</div></div>')


NOWRAP = {"principal_type", "first_seen", "last_seen", "error_rate", "eventTime", "family", "region", "account",
          "day"}


def _table(columns: list[tuple[str, str]], rows: list[dict[str, Any]], numeric: set[str] | None = None,
           formats: dict[str, Any] | None = None) -> str:
    numeric = numeric or set()
    formats = formats or {}

    def css(key: str) -> str:
        return "num" if key in numeric else "nowrap" if key in NOWRAP else ""

    head = "".join(f'<th class="{css(key)}">{esc(title)}</th>' for key, title in columns)
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key)
            text = formats[key](value) if key in formats else (_num(value) if key in numeric else esc(value))
            cells.append(f'<td class="{css(key)}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(columns)}" class="muted">nothing on this day</td></tr>')
    rows_html = "".join(body)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table></div>'


def _short(value: Any, limit: int = 140) -> str:
    text = "" if value is None else str(value)
    return esc(text if len(text) <= limit else text[:limit] + "…")


def _mono(value: Any) -> str:
    return f'<span class="mono">{esc(value)}</span>'


def _list(values: list[Any] | None, limit: int = 5) -> str:
    values = values or []
    text = ", ".join(str(v) for v in values[:limit])
    more = f" +{len(values) - limit}" if len(values) > limit else ""
    return f'<span class="mono">{esc(text)}</span><span class="muted">{more}</span>'


def headline_section(results: dict[str, Any]) -> str:
    headline = results["summary"]["headline"]
    cards = [
        _card("events", _num(headline["events"])),
        _card("failed calls", f'{_num(headline["failed"])} <small class="muted">'
                              f'{_pct(headline["failed_rate"])}</small>'),
        _card("writes", _num(headline["writes"])),
        _card("principals", _num(headline["principals"])),
        _card("accounts / regions", f'{headline["accounts"]} / {headline["regions"]}'),
        _card("root events", _num(headline["root_events"]), alert=bool(headline["root_events"])),
    ]
    if "spikes" in results:
        cards.append(_card("API spikes", _num(len(results["spikes"]["insights"])),
                           alert=bool(results["spikes"]["insights"])))
    if "security" in results:
        severity = results["security"]["by_severity"]
        urgent = severity.get("critical", 0) + severity.get("high", 0)
        cards.append(_card("critical + high findings", _num(urgent), alert=bool(urgent)))
    return f'<div class="cards">{"".join(cards)}</div>'


def trend_svg(name: str, label: str, trend: list[dict[str, Any]], color: str) -> str:
    """Seven bars, one per day, the report's own day darker; a day without a recorded value gets a dash."""
    width, height, bottom, top = 300, 160, 34, 34
    plot_h = height - bottom - top
    values = [row[name] for row in trend]
    top_value = max([v for v in values if v is not None] + [1])
    slot = width / len(trend)
    parts = [f'<svg class="chart" data-chart="trend-{esc(name)}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{esc(label)} per day"><title>{esc(label)} per day</title>'
             f'<text x="0" y="13" font-weight="600">{esc(label)}</text>']
    for index, (row, value) in enumerate(zip(trend, values, strict=True)):
        x = index * slot + slot * 0.15
        bar_w = slot * 0.7
        day = row["day"] if isinstance(row["day"], date) else date.fromisoformat(str(row["day"]))
        today = index == len(trend) - 1
        if value is None:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h:.1f}" text-anchor="middle" '
                         'fill="#9ca3af">-<title>not recorded</title></text>')
        else:
            bar_h = max(plot_h * value / top_value, 1)
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar_w:.1f}" height="{bar_h:.1f}" '
                         f'fill="{color}" opacity="{1 if today else 0.45}"><title>{day}: {value:,}</title></rect>')
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - bar_h - 3:.1f}" text-anchor="middle">'
                         f'{_compact(value)}</text>')
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - 18}" text-anchor="middle">{day:%a}</text>'
                     f'<text x="{x + bar_w / 2:.1f}" y="{height - 5}" text-anchor="middle">{day:%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _compact(value: int) -> str:
    """`12,345` as `12k`: bar labels must stay narrower than their bar.

    >>> _compact(12_345), _compact(950)
    ('12k', '950')
    """
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1_000:
        return f"{value / 1000:.1f}k"
    return str(value)


def trend_section(summary: dict[str, Any]) -> str:
    trend = summary.get("trend") or []
    if not trend:
        return ""
    panels = "".join(f"<div>{trend_svg(name, label, trend, color)}</div>" for name, label, color in (
        ("events", "Events", WRITE_COLOR), ("failed", "Failed calls", FAIL_COLOR),
        ("findings", "Findings", FINDING_COLOR)))
    return (f'<section id="trend"><h2>The last {len(trend)} days</h2><div class="trend">{panels}</div>'
            '<p class="muted">Findings of earlier days as the daily job recorded them; - where it did not run.</p>'
            "</section>")


def breakdown_section(summary: dict[str, Any]) -> str:
    counts = {"events", "failed", "writes", "root_events", "principals", "regions", "accounts", "findings"}
    common = [("events", "events"), ("failed", "failed"), ("writes", "writes"), ("root_events", "root events"),
              ("principals", "principals")]
    accounts = summary.get("by_account") or []
    findings = [("findings", "findings")] if accounts and "findings" in accounts[0] else []
    by_account = _table([("account", "account"), *common, ("regions", "regions"), *findings], accounts, counts,
                        {"account": _mono})
    by_region = _table([("region", "region"), *common, ("accounts", "accounts")], summary.get("by_region") or [],
                       counts)
    return (f'<section id="breakdown"><h2>Per account and per region</h2><div class="grid2">'
            f'<div><h3>Accounts</h3>{by_account}</div><div><h3>Regions</h3>{by_region}</div></div></section>')


def finding_query(finding: dict[str, Any], day: date, lake: str | None) -> str:
    """The SQL (and the command) that lists the events a finding names, to look further in the lake."""
    ids = [e["eventID"] for e in finding.get("events", []) if e.get("eventID")]
    if not ids:
        return ""
    listed = ", ".join(f"'{i}'" for i in ids)
    sql = (f"SELECT {QUERY_COLUMNS} FROM cloudtrail_calls WHERE event_date = DATE '{day}' AND eventid IN "
           f"({listed}) ORDER BY eventtime")
    shown = "" if len(ids) >= (finding.get("count") or 0) else f" (the {len(ids)} events listed of {finding['count']})"
    command = f'trailsight sql --lake {lake} --format line "{sql}"' if lake else sql
    return f'<details class="query"><summary>Query its events{esc(shown)}</summary><pre class="query">' \
           f'{esc(command)}</pre></details>'


def activity_section(results: dict[str, Any]) -> str:
    legend = (f'<div class="legend"><span><i style="background:{READ_COLOR}"></i>reads</span>'
              f'<span><i style="background:{WRITE_COLOR}"></i>writes</span>'
              f'<span><i style="background:{FAIL_COLOR}"></i>failed</span></div>')
    return (f'<section id="activity"><h2>Calls per hour (UTC)</h2>{legend}'
            f'<div class="scroll">{calls_per_hour_svg(results["summary"]["calls_per_hour"])}</div></section>')


def callers_section(data: dict[str, Any]) -> str:
    principals = data["principals"][:15]
    bars = hbar_svg("top-callers", "Calls per principal",
                    [(p["principal"], p["calls"], WRITE_COLOR) for p in principals[:10]])
    table = _table(
        [("principal", "principal"), ("principal_type", "type"), ("calls", "calls"), ("apis", "APIs"),
         ("errors", "errors"), ("error_rate", "error rate"), ("writes", "writes"), ("region_list", "regions"),
         ("source_ips", "source IPs"), ("session_names", "sessions"), ("first_seen", "first"),
         ("last_seen", "last")],
        principals, {"calls", "apis", "errors", "writes", "source_ips"},
        {"principal": _mono, "error_rate": _pct, "region_list": _list, "session_names": lambda v: _list(v, 3),
         "first_seen": _time, "last_seen": _time})
    apis = _table([("eventsource", "source"), ("eventname", "API"), ("calls", "calls"), ("principals", "principals"),
                   ("errors", "errors")], data["apis"][:10], {"calls", "principals", "errors"})
    ips = _table([("source_ip", "source"), ("calls", "calls"), ("principals", "principals"), ("errors", "errors")],
                 data["source_ips"][:10], {"calls", "principals", "errors"}, {"source_ip": _mono})
    split = _table([("principal_type", "identity type"), ("calls", "calls"), ("reads", "reads"),
                    ("writes", "writes"), ("errors", "errors"), ("principals", "principals")],
                   data["read_write"], {"calls", "reads", "writes", "errors", "principals"})
    return (f'<section id="top-callers"><h2>Top callers</h2><div class="scroll">{bars}</div>{table}'
            f'<div class="grid2"><div><h3>Top APIs</h3>{apis}</div><div><h3>Top source IPs</h3>{ips}</div></div>'
            f'<h3>Reads and writes by identity type</h3>{split}</section>')


def failures_section(data: dict[str, Any]) -> str:
    groups = data["groups"]
    intro = (f'<p>{_num(data["failures"])} failed calls: <b>{_num(groups["denied"])}</b> denied or failed '
             f'authentication, {_num(groups["noise"])} throttling, not-found and conflict noise, '
             f'{_num(groups["other"])} other.</p>')
    bars = hbar_svg("failure-families", "Failures by family",
                    [(family, count, FAMILY_COLORS.get(family, "#4b5563"))
                     for family, count in data["families"].items()])
    codes = _table([("error_code", "error code"), ("family", "family"), ("failures", "failures"),
                    ("principals", "principals"), ("apis", "APIs"), ("sample_message", "sample message")],
                   data["by_error_code"][:15], {"failures", "principals", "apis"},
                   {"error_code": _mono, "sample_message": _short})
    denied = [p for p in data["by_principal"] if p["denied"]][:10]
    principals = _table([("principal", "principal"), ("failures", "failures"), ("denied", "denied"),
                         ("denied_apis", "denied APIs"), ("throttled", "throttled"), ("not_found", "not found")],
                        denied, {"failures", "denied", "denied_apis", "throttled", "not_found"},
                        {"principal": _mono})
    new = _table([("eventsource", "source"), ("eventname", "API"), ("error_code", "error code"),
                  ("family", "family"), ("failures", "failures"), ("new_error_code", "code never seen")],
                 data["new_kinds"][:15], {"failures"}, {"new_error_code": lambda v: "yes" if v else ""})
    return (f'<section id="failures"><h2>Failed API calls</h2>{intro}<div class="scroll">{bars}</div>'
            f'<h3>By error code</h3>{codes}'
            f'<h3>Principals with denied calls</h3>{principals}'
            f'<h3>New kinds of failure (not seen since {esc(data["new_kinds_since"])})</h3>{new}</section>')


def spikes_section(data: dict[str, Any]) -> str:
    notes = "".join(f"<li>{esc(n)}</li>" for n in data["notes"])
    parts = [f'<section id="spikes"><h2>API spikes (CloudTrail Insights style)</h2>'
             f'<p class="muted">{data["series_tested"]:,} series tested, {data["candidates"]:,} busy enough to '
             f'judge. Blue band: baseline mean ± one standard deviation; dashed: threshold; red: the insight.</p>']
    if notes:
        parts.append(f'<ul class="notes">{notes}</ul>')
    if not data["insights"]:
        parts.append('<p class="muted">No spike on this day.</p>')
    for insight in data["insights"]:
        code = f' <span class="mono">{esc(insight["errorcode"])}</span>' if insight["errorcode"] else ""
        top = insight["attributions"].get("insight", {})
        who = ", ".join(f'{esc(a["value"])} ({a["average"]:.2f}/min)' for a in top.get("userIdentityArn", [])[:3])
        parts.append(
            f'<div class="spike"><h3>{esc(insight["insight_type"])}: {esc(insight["eventsource"])} '
            f'{esc(insight["eventname"])}{code}</h3>'
            f'<p>Account {esc(insight["account"])}, {esc(insight["region"])}, {_time(insight["start"])} to '
            f'{_time(insight["end"])} UTC ({insight["duration_minutes"]} min): '
            f'<b>{insight["insight_average"]:.2f}</b> per minute against a baseline of '
            f'{insight["baseline_average"]:.4f} over {insight["baseline_duration"]:,} minutes; peak '
            f'{insight["peak_minute_calls"]:,} in one minute.</p><div class="scroll">{spike_svg(insight)}</div>'
            f'<p class="muted">Top callers: <span class="mono">{who or "n/a"}</span></p></div>')
    parts.append("</section>")
    return "".join(parts)


def _finding_events(finding: dict[str, Any]) -> str:
    return _table([("eventTime", "time"), ("eventName", "API"), ("region", "region"),
                   ("sourceIPAddress", "source"), ("detail", "detail"), ("eventID", "event ID")],
                  finding["events"][:20], formats={"eventTime": _time, "eventID": _mono})


def _needs_attention(finding: dict[str, Any]) -> bool:
    """New and high or critical, or far above the principal's own history (see trailsight.report.triage)."""
    return bool((finding.get("new") and finding["severity"] in ("critical", "high"))
                or (finding.get("magnitude") or {}).get("ratio", 0) >= 10)


def _finding_labels(finding: dict[str, Any]) -> str:
    labels = []
    if finding.get("cis"):
        labels.append(f'CIS {esc(finding["cis"]["v1.4-v5.0"])}')
    if finding.get("technique"):
        labels.append(f'ATT&amp;CK {esc(finding["technique"])}')
    labels.append("<b>new</b>" if finding.get("new") else "routine")
    magnitude = finding.get("magnitude") or {}
    if magnitude.get("ratio", 0) >= 10:
        labels.append(f'{magnitude["ratio"]:,.0f}x the usual {magnitude["usual_per_day"]:g}/day')
    return " · ".join(labels)


def _finding_detail(finding: dict[str, Any], opened: bool, day: date | None, lake: str | None) -> str:
    level = finding["severity"]
    return (f'<details{" open" if opened else ""}><summary><span class="badge" '
            f'style="background:{SEVERITY_COLORS[level]}">{esc(level)}</span> <b>{esc(finding["title"])}</b> · '
            f'{_finding_labels(finding)} · <span class="account">{esc(finding["account"])}</span> · '
            f'{_mono(finding["principal"] or "")} · {finding["count"]} event(s)</summary><p>{esc(finding["why"])}</p>'
            f'{_finding_events(finding)}{finding_query(finding, day, lake) if day else ""}</details>')


def incidents_section(incidents: list[dict[str, Any]]) -> str:
    """One story per principal: its findings and spikes of the day on one timeline (trailsight.report.incidents)."""
    parts = ['<section id="incidents"><h2>Incidents</h2><p class="muted">Findings and spikes of one principal, '
             'on one timeline; incidents with something new or several high findings.</p>']
    for incident in incidents:
        level = incident["severity"]
        rows = [{"time": i["time"], "kind": i["kind"], "what": i["what"], "severity": i["severity"],
                 "new": "new" if i["new"] else "routine", "count": i["count"], "technique": i["technique"] or "",
                 "why": i["why"]} for i in incident["timeline"]]
        table = _table([("time", "time"), ("kind", "kind"), ("what", "what"), ("severity", "severity"),
                        ("new", "new?"), ("count", "events"), ("technique", "ATT&CK"), ("why", "why")],
                       rows, {"count"}, {"time": _time})
        techniques = ", ".join(incident["techniques"])
        parts.append(f'<details{" open" if incident["new"] else ""}><summary><span class="badge" '
                     f'style="background:{SEVERITY_COLORS[level]}">{esc(level)}</span> '
                     f'{_mono(incident["principal"])} · {esc(incident["account"])} · {_time(incident["first_seen"])}'
                     f' to {_time(incident["last_seen"])} · {incident["findings"]} finding(s), {incident["spikes"]} '
                     f'spike(s){" · " + esc(techniques) if techniques else ""}</summary>{table}</details>')
    if not incidents:
        parts.append('<p class="muted">No incident on this day.</p>')
    parts.append("</section>")
    return "".join(parts)


def findings_section(data: dict[str, Any], day: date | None = None, lake: str | None = None) -> str:
    """New and high-magnitude findings first, opened; then the rest: critical and high one by one, medium and
    low grouped per control, closed; suppressed findings last, with their reason."""
    severity = data["by_severity"]
    chips = " ".join(f'<span class="badge" style="background:{SEVERITY_COLORS[s]}">{esc(s)} {severity[s]}</span>'
                     for s in SEVERITIES)
    new = data.get("new_by_severity") or {}
    parts = [f'<section id="findings"><h2>Security findings</h2><p>{chips}</p>']
    if new:
        parts.append(f'<p class="muted">New (not seen for the account and principal in the week before): '
                     f'{", ".join(f"{n} {s}" for s, n in new.items())}.</p>')
    for note in data["notes"]:
        parts.append(f'<p class="muted">{esc(note)}</p>')
    attention = [f for f in data["findings"] if _needs_attention(f)]
    if attention:
        parts.append(f'<h3>Needs attention: {len(attention)} new or far above usual</h3>')
        parts += [_finding_detail(f, opened=True, day=day, lake=lake) for f in attention]
    rest = [f for f in data["findings"] if not _needs_attention(f)]
    for level in SEVERITIES:
        items = [f for f in rest if f["severity"] == level]
        if not items:
            continue
        parts.append(f'<h3><span class="badge" style="background:{SEVERITY_COLORS[level]}">{esc(level)}</span> '
                     f'{len(items)} finding(s)</h3>')
        if level in ("critical", "high"):
            parts += [_finding_detail(f, opened=False, day=day, lake=lake) for f in items]
            continue
        by_control: dict[str, list[dict[str, Any]]] = {}
        for finding in items:
            by_control.setdefault(finding["title"], []).append(finding)
        for title, group in sorted(by_control.items(), key=lambda kv: -sum(f["count"] for f in kv[1])):
            cis = f' · CIS {esc(group[0]["cis"]["v1.4-v5.0"])}' if group[0].get("cis") else ""
            rows = [{"account": f["account"], "principal": f["principal"], "count": f["count"],
                     "new": "new" if f.get("new") else "routine",
                     "first_seen": f["first_seen"], "last_seen": f["last_seen"],
                     "example": f["events"][0]["detail"] if f["events"] and "detail" in f["events"][0] else ""}
                    for f in sorted(group, key=lambda f: -f["count"])]
            table = _table([("account", "account"), ("principal", "principal"), ("count", "events"),
                            ("new", "new?"), ("first_seen", "first"), ("last_seen", "last"),
                            ("example", "example")],
                           rows, {"count"}, {"principal": _mono, "first_seen": _time, "last_seen": _time})
            group_events = {"events": [e for f in group for e in f["events"]], "count": sum(f["count"] for f in group)}
            table += finding_query(group_events, day, lake) if day else ""
            parts.append(f'<details><summary><b>{esc(title)}</b>{cis} · {len(group)} principal(s) · '
                         f'{sum(f["count"] for f in group):,} event(s)</summary><p class="muted">'
                         f'{esc(group[0]["why"].split(". Rule: ")[-1])}</p>{table}</details>')
    if not data["findings"]:
        parts.append('<p class="muted">No finding on this day.</p>')
    if data.get("suppressed"):
        table = _table([("control", "detection"), ("account", "account"), ("principal", "principal"),
                        ("count", "events"), ("reason", "reason"), ("expires", "until")],
                       data["suppressed"], {"count"}, {"principal": _mono})
        parts.append(f'<details><summary>{len(data["suppressed"])} suppressed finding(s)</summary>{table}</details>')
    parts.append("</section>")
    return "".join(parts)


def integrity_section(data: dict[str, Any]) -> str:
    """Digest verification of the day's raw log files, when the report was given the source."""
    verdict = "all intact" if data["ok"] else f"{len(data['problems'])} problem(s)"
    signatures = (f'{_num(data["signatures_valid"])} of {_num(data["signatures_checked"])} valid'
                  if data["signatures_checked"] else "not checked (no CloudTrail public keys given)")
    parts = [f'<section><h2>Log file integrity (CloudTrail digests): {esc(verdict)}</h2><p>'
             f'{_num(data["digests"])} digests in {_num(data["chains"])} chains; {_num(data["log_files_valid"])} of '
             f'{_num(data["log_files_listed"])} listed log files intact; signatures: {signatures}.</p>']
    if data["problems"]:
        parts.append(_table([("kind", "problem"), ("key", "object"), ("detail", "detail")], data["problems"][:50]))
    parts.append("</section>")
    return "".join(parts)


def render_html(day: date, results: dict[str, dict[str, Any]], summary: Any) -> str:
    """The whole page; `results` maps report names to their data as `run_reports` returns it."""
    sections = [trend_section(results["summary"]), activity_section(results), breakdown_section(results["summary"])]
    if "top_callers" in results:
        sections.append(callers_section(results["top_callers"]))
    if "failed_calls" in results:
        sections.append(failures_section(results["failed_calls"]))
    if "spikes" in results:
        sections.append(spikes_section(results["spikes"]))
    if "security" in results:
        sections.append(incidents_section(results["security"].get("incidents", [])))
        sections.append(findings_section(results["security"], day, results["summary"].get("lake")))
    if "integrity" in results:
        sections.append(integrity_section(results["integrity"]))
    warnings = "".join(f"<li>{esc(w)}</li>" for w in getattr(summary, "warnings", []))
    seconds = getattr(summary, "seconds", {})
    timing = ", ".join(f"{name} {s:.2f} s" for name, s in seconds.items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">"
        f"<title>CloudTrail daily report {esc(day)}</title><style>{CSS}</style></head><body><main>"
        f"<header><h1>CloudTrail daily report · {esc(day)}</h1><p>UTC day · reports: "
        f"{esc(', '.join(results))}</p></header>"
        + (f'<section><ul class="notes">{warnings}</ul></section>' if warnings else "")
        + headline_section(results) + "".join(sections)
        + f"<footer>trailsight · generated from the lake with DuckDB · {esc(timing)}</footer></main></body></html>\n"
    )


# --- Markdown --------------------------------------------------------------------------------------------


def _md_cell(value: Any, key: str = "") -> str:
    if key.endswith("_rate") and isinstance(value, float):
        text = _pct(value)  # as the HTML page shows rates
    elif isinstance(value, float):
        text = f"{value:,.4f}".rstrip("0").rstrip(".")
    elif isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, datetime):
        text = value.strftime("%H:%M:%S")
    elif isinstance(value, list):
        text = ", ".join(str(v) for v in value[:5]) + (f" +{len(value) - 5}" if len(value) > 5 else "")
    else:
        text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["_nothing on this day_", ""]
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_md_cell(row.get(key), key) for key, _ in columns) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(day: date, results: dict[str, dict[str, Any]], summary: Any) -> str:
    """A short summary for chat, mail or a ticket; the details are in the JSON and CSV files."""
    headline = results["summary"]["headline"]
    lines = [f"# CloudTrail daily report {day}", ""]
    for warning in getattr(summary, "warnings", []):
        lines.append(f"> {warning}")
    if getattr(summary, "warnings", []):
        lines.append("")
    lines += [
        f"- **{headline['events']:,}** events, **{headline['failed']:,}** failed ({_pct(headline['failed_rate'])}), "
        f"{headline['writes']:,} writes",
        f"- {headline['principals']:,} principals, {headline['accounts']} accounts, {headline['regions']} regions, "
        f"{headline['source_ips']:,} source IPs, {headline['root_events']:,} root events",
    ]
    if "spikes" in results:
        lines.append(f"- {len(results['spikes']['insights'])} API spike(s)")
    if "security" in results:
        severity = results["security"]["by_severity"]
        lines.append("- findings: " + ", ".join(f"{n} {s}" for s, n in severity.items()))
    lines.append("")
    if "top_callers" in results:
        lines += ["## Top callers", ""]
        lines += _md_table([("principal", "principal"), ("principal_type", "type"), ("calls", "calls"),
                            ("apis", "APIs"), ("errors", "errors"), ("error_rate", "error rate")],
                           results["top_callers"]["principals"][:10])
    if "failed_calls" in results:
        data = results["failed_calls"]
        lines += ["## Failed calls", "", f"{data['failures']:,} failures: {data['groups']['denied']:,} denied, "
                  f"{data['groups']['noise']:,} noise, {data['groups']['other']:,} other.", ""]
        lines += _md_table([("error_code", "error code"), ("family", "family"), ("failures", "failures"),
                            ("principals", "principals")], data["by_error_code"][:10])
        if data["new_kinds"]:
            lines += ["### New kinds of failure", ""]
            lines += _md_table([("eventsource", "source"), ("eventname", "API"), ("error_code", "error code"),
                                ("failures", "failures")], data["new_kinds"][:10])
    if "spikes" in results:
        lines += ["## API spikes", ""]
        lines += [f"> {note}" for note in results["spikes"]["notes"]]
        lines += _md_table([("insight_type", "type"), ("account", "account"), ("region", "region"),
                            ("eventname", "API"), ("errorcode", "error"), ("start", "start"),
                            ("duration_minutes", "minutes"), ("insight_average", "per min"),
                            ("baseline_average", "baseline/min"), ("top_principal", "top principal")],
                           results["spikes"]["insights"])
    if "security" in results:
        lines += ["## Security findings", ""]
        lines += _md_table([("severity", "severity"), ("title", "control"), ("account", "account"),
                            ("principal", "principal"), ("count", "events")], results["security"]["table"][:30])
    if "integrity" in results:
        data = results["integrity"]
        lines += ["## Log file integrity", "", f"{data['log_files_valid']:,} of {data['log_files_listed']:,} listed "
                  f"log files intact in {data['digests']:,} digests; {len(data['problems'])} problem(s).", ""]
        lines += _md_table([("kind", "problem"), ("key", "object"), ("detail", "detail")], data["problems"][:20])
    return "\n".join(lines).rstrip() + "\n"
